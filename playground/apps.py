from __future__ import annotations

from django.apps import AppConfig


class PlaygroundConfig(AppConfig):
    name = "playground"
    verbose_name = "Playground and jobs"

    def ready(self) -> None:
        from playground import (
            connections,  # noqa: F401  (recycles workers' DB connections)
            tracing,  # noqa: F401  (connects the worker's log context)
        )
