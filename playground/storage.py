"""Where uploads live: the storage named ``jobs`` in ``settings.STORAGES``.

The web process writes an upload and a worker, maybe on another machine, reads it back, so
every access goes through Django's storage API by the name kept in ``Job.image_name``;
nothing here builds a path. One machine: files under ``VITRINE_JOB_STORAGE``. Several:
an S3-compatible bucket (``VITRINE_STORAGE=s3``, see ``config/settings/env.py``).
"""

from __future__ import annotations

import contextlib
import logging
import os
from functools import cached_property

from django.conf import settings
from django.core.files.base import ContentFile, File
from django.core.files.storage import FileSystemStorage, Storage, storages

JOBS = "jobs"
STORAGE_DOWN = "The image storage is unavailable; try again in a minute."
logger = logging.getLogger(__name__)


class StorageUnavailable(Exception):
    """The storage did not answer (network, credentials, outage): worth another attempt."""


class LocalJobStorage(FileSystemStorage):
    """The single-machine default: files under ``VITRINE_JOB_STORAGE``.

    The location is read from the setting when first used and again after it changes, the
    way Django's own FileSystemStorage follows MEDIA_ROOT, so a test can point the uploads
    at a temporary directory with ``settings.VITRINE_JOB_STORAGE = tmp_path``.
    """

    @cached_property
    def base_location(self):
        return self._value_or_setting(self._location, settings.VITRINE_JOB_STORAGE)

    def _clear_cached_properties(self, setting, **kwargs):
        super()._clear_cached_properties(setting, **kwargs)
        if setting == "VITRINE_JOB_STORAGE":
            self.__dict__.pop("base_location", None)
            self.__dict__.pop("location", None)

    def _save(self, name, content):
        try:
            return super()._save(name, content)
        except OSError as exc:
            # A full disk (ENOSPC) or a size limit mid-write: Django leaves the file it
            # created, empty or half written, and no row will ever name it, so retention
            # never deletes it and it keeps the disk full. Storage.save gave this name as
            # free and upload names are fresh uuids, so the file here is this call's own.
            if not isinstance(exc, FileExistsError):
                with contextlib.suppress(OSError):
                    os.remove(self.path(name))
            raise


def job_storage() -> Storage:
    """The configured backend, looked up on each call: Django rebuilds it when STORAGES
    changes (tests), so a module-level reference would go stale."""
    return storages[JOBS]


def upload_save(*, name: str, content: bytes) -> str:
    """Store an upload; returns the name to keep (the backend may change it).
    ``StorageUnavailable`` when the storage failed."""
    try:
        return job_storage().save(name, ContentFile(content))
    except Exception as exc:  # OSError locally; botocore's own tree on S3
        raise StorageUnavailable(f"{type(exc).__name__}: {exc}") from exc


def upload_open(name: str) -> File:
    """The upload, open for reading (the caller closes it). ``FileNotFoundError`` when it is
    gone (purged, or never stored here); ``StorageUnavailable`` when the storage failed."""
    if not name:
        raise FileNotFoundError("The job has no upload any more.")
    try:
        return job_storage().open(name, "rb")
    except FileNotFoundError:
        raise
    except Exception as exc:  # botocore raises its own tree (ClientError, BotoCoreError)
        raise StorageUnavailable(f"{type(exc).__name__}: {exc}") from exc


def upload_read(name: str) -> bytes:
    """The upload's bytes; the errors of ``upload_open``."""
    handle = upload_open(name)
    try:
        return handle.read()
    except Exception as exc:
        raise StorageUnavailable(f"{type(exc).__name__}: {exc}") from exc
    finally:
        handle.close()


def upload_delete(name: str) -> None:
    """Delete an upload; deleting one that is already gone is not an error (both backends)."""
    if name:
        job_storage().delete(name)


def upload_discard(name: str) -> None:
    """Best-effort delete of an upload whose job row rolled back: a storage failure here
    must not replace the caller's own error, and leaves one orphaned object at worst."""
    try:
        upload_delete(name)
    except Exception:
        logger.warning("could not delete the orphaned upload %s", name, exc_info=True)
