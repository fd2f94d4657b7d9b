"""The runtime's error types. The HTTP API maps ``code`` to a status; the texts are constants."""

from __future__ import annotations

# ImageError codes (the API answers 415, 413 and 400 respectively).
UNSUPPORTED_FORMAT = "unsupported_format"
IMAGE_TOO_LARGE = "image_too_large"
CORRUPT_IMAGE = "corrupt_image"
# The image decodes but the model's processor cannot use it (400): a side too short, or so
# thin that resizing it for the model leaves a side under the model's minimum.
IMAGE_TOO_SMALL = "image_too_small"
IMAGE_ASPECT_UNSUPPORTED = "image_aspect_unsupported"
# WeightsNotInstalled's code (the API answers 503).
WEIGHTS_NOT_INSTALLED = "weights_not_installed"


class DetectorRuntimeError(Exception):
    """Base of the runtime's expected failures: a stable ``code`` and a human ``message``."""

    code = "runtime_error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        return self.message


class ImageError(DetectorRuntimeError):
    """The uploaded bytes are not an image we accept: ``code`` says why."""

    code = CORRUPT_IMAGE


class WeightsNotInstalled(DetectorRuntimeError):
    """The checkpoint's files are not on this machine (and downloading is off or failed)."""

    code = WEIGHTS_NOT_INSTALLED
