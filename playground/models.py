from __future__ import annotations

from django.db import models


class WorkerHeartbeat(models.Model):
    """Written by the ``health_ping`` task: proof that a worker took a message and ran it."""

    token = models.CharField(max_length=64, unique=True)
    hostname = models.CharField(max_length=200)
    pid = models.PositiveIntegerField()
    seen_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-seen_at"]

    def __str__(self) -> str:
        return f"{self.hostname} at {self.seen_at:%Y-%m-%d %H:%M:%S}"
