from __future__ import annotations

from django.apps import AppConfig


class PlaygroundConfig(AppConfig):
    name = "playground"
    verbose_name = "Playground and jobs"

    def ready(self) -> None:
        from django.contrib.auth.signals import user_logged_in

        from catalog.models import checkpoint_changed
        from playground import (
            connections,  # noqa: F401  (recycles workers' DB connections)
            tracing,  # noqa: F401  (connects the worker's log context)
        )
        from playground.idempotency import cached_calls_forget_queued
        from playground.selectors import session_runs_adopt

        user_logged_in.connect(session_runs_adopt, dispatch_uid="playground.session_runs_adopt")
        checkpoint_changed.connect(
            cached_calls_forget_queued, dispatch_uid="playground.cached_calls_forget_queued"
        )
