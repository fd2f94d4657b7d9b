"""Worker-side tracing: a detection task's log lines carry its job's id and request id.

django-structlog's Celery receiver clears the context at each task start, binds the task id
and the context of the request that enqueued it (carried in the message headers); this adds
``job_id`` and the job row's ``request_id``, which hold for re-deliveries and reaper
re-queues too, where no request enqueued the message. The context is cleared at task end,
so nothing leaks into the next task or the worker's own lines.
"""

from __future__ import annotations

import structlog
from celery.signals import task_postrun
from django.dispatch import receiver
from django_structlog.celery.signals import bind_extra_task_metadata

JOB_TASKS = {"playground.run_detection"}
# A job's message carries its row's request id (playground.tasks.job_message), so binding it
# costs no query before the claim; a message sent before it did is looked up in the row.
REQUEST_ID_HEADER = "vitrine_request_id"


# django.dispatch's receiver(): Signal.connect used as a decorator returns None, so the
# function was left to its weak reference alone and collected: in a worker started by the
# celery command, task_started and the model's lines had no job_id.
@receiver(bind_extra_task_metadata, dispatch_uid="vitrine-bind-job")
def bind_job(sender, task, logger, **kwargs) -> None:
    if task.name not in JOB_TASKS or not task.request.args:
        return
    job_id = str(task.request.args[0])
    context = {"job_id": job_id}
    request_id = getattr(task.request, REQUEST_ID_HEADER, None)
    if request_id is None:
        request_id = _row_request_id(job_id)
    if request_id:
        context["request_id"] = request_id
    structlog.contextvars.bind_contextvars(**context)


def _row_request_id(job_id: str) -> str | None:
    from django.core.exceptions import ValidationError

    from playground.models import Job

    try:
        return Job.objects.filter(pk=job_id).values_list("request_id", flat=True).first()
    except ValidationError:  # not a UUID: the task itself will find no job
        return None


@task_postrun.connect
def clear_context(**kwargs) -> None:
    structlog.contextvars.clear_contextvars()
