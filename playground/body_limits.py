"""How big a request body the inference API and the try page take, and the refusals' texts.

An image is at most ``VITRINE_MAX_UPLOAD_BYTES`` (20 MiB). Sent raw, the body is the image;
sent as base64 in JSON (Hugging Face's ``{"inputs": ...}``), in a form field or as a
multipart file, the body may be up to the base64 length of that image plus
``ENVELOPE_SLACK`` for the envelope, so every way of sending a 20 MiB image works and
nothing bigger is read. ``playground.middleware`` checks ``Content-Length`` against these
limits before the body is read and cuts streamed bodies at them.
"""

from __future__ import annotations

from django.conf import settings

from catalog import errors
from playground.flavours import CLOUDFLARE, HF

# Room for the JSON keys and parameters, multipart boundaries and part headers.
ENVELOPE_SLACK = 64 * 1024
# Deepest JSON nesting the API parses: {"inputs": ..., "parameters": {...}} needs 2.
MAX_JSON_DEPTH = 32
# Methods whose bodies are limited (GET and friends carry none that we read).
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})

BODY_TOO_LARGE = (
    "The request body is {size:,} bytes; the limit is {limit:,} bytes (an image of at most "
    "{max_image:,} bytes, raw, as a multipart file or as base64 in JSON)."
)
# The same 413 on the drop-in routes, naming only what each takes (flavour_messages).
BODY_TOO_LARGE_HF = (
    "The request body is {size:,} bytes; the limit is {limit:,} bytes. This route takes an "
    "image of at most {max_image:,} bytes as the raw request body, or as base64 in JSON "
    '{{"inputs": ...}}.'
)
BODY_TOO_LARGE_CLOUDFLARE = (
    "The request body is {size:,} bytes; the limit is {limit:,} bytes. This route takes an "
    "image of at most {max_image:,} bytes as the raw request body; as JSON "
    '{{"image": [0-255, ...]}} about {array_image} fits in that limit: send bigger images '
    "raw."
)
UPLOAD_TOO_LARGE = "The upload is {size:,} bytes; the limit is {limit:,} bytes."
BODY_CUT = "The request body is over the limit of {limit:,} bytes."
UPLOAD_CUT = "The upload is over the limit of {limit:,} bytes."
BAD_CONTENT_LENGTH = "The Content-Length header is not a byte count."
JSON_TOO_DEEP = "The JSON body is nested deeper than {depth} levels."
INVALID_JSON = "The body is not valid JSON: {reason}"
JSON_IS_IMAGE = (
    "The body is a {format} image, not JSON: send it as it is with Content-Type: {media_type} "
    "(the image is the request body), not application/json."
)
JSON_IS_OTHER_FILE = (
    "The body is a {format} file, not JSON, and not an image Vitrine reads: send a JPEG, PNG, "
    "WebP or GIF image."
)
INVALID_MULTIPART = (
    "The multipart body could not be read ({reason}); send the image as a multipart "
    "'image' file with a boundary in the Content-Type header, or as raw bytes."
)
MULTIPART_CUT = (
    "The multipart body ends before its closing boundary: the upload was cut off. Send it again."
)
TOO_MANY_FIELDS = "The form has too many fields; send one 'image' file."
TOO_MANY_PARAMETERS = "The query string has more than {limit:,} parameters."
FIELD_TOO_LARGE = (
    "A form field is over {limit:,} bytes; send the image as a multipart 'image' file, raw "
    "bytes or JSON instead of a form field."
)
UNREADABLE_BODY = "The request body could not be read; send it again."


def base64_length(size: int) -> int:
    """Characters of the base64 encoding of ``size`` bytes (padded)."""
    return 4 * ((size + 2) // 3)


def _media_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def is_envelope(content_type: str) -> bool:
    """Whether the image travels inside an envelope (JSON, a form), not as the body itself."""
    media = _media_type(content_type)
    return (
        media in ("application/json", "application/x-www-form-urlencoded")
        or media.endswith("+json")
        or media.startswith("multipart/")
    )


def body_limit(content_type: str) -> int:
    """The most bytes a body of ``content_type`` may have."""
    max_image = settings.VITRINE_MAX_UPLOAD_BYTES
    if is_envelope(content_type):
        return base64_length(max_image) + ENVELOPE_SLACK
    return max_image


def too_large(size: int | None, content_type: str) -> errors.ApplicationError:
    """The 413 for a body over ``body_limit``; ``size`` None when it was cut mid-stream."""
    limit = body_limit(content_type)
    code = "request_too_large"
    if size is None:  # streamed, no Content-Length: the same codes as a declared size's
        if is_envelope(content_type):
            message = BODY_CUT.format(limit=limit)
        else:
            message, code = UPLOAD_CUT.format(limit=limit), "image_too_large"
    elif is_envelope(content_type):
        return _envelope_too_large(size, limit)
    else:  # the body is the image: the same answer read_image_input gives
        message, code = UPLOAD_TOO_LARGE.format(size=size, limit=limit), "image_too_large"
    return errors.ApplicationError(message, code=code, status=413)


def _envelope_too_large(size: int, limit: int) -> errors.ApplicationError:
    """The 413 for a JSON, form or multipart body over its limit, refused before any view
    runs: its text in each flavour names only the ways that route takes an image (the
    drop-ins take no multipart; Cloudflare's JSON is an array of byte values, about four
    characters a byte)."""
    max_image = settings.VITRINE_MAX_UPLOAD_BYTES
    values = {"size": size, "limit": limit, "max_image": max_image}
    error = errors.ApplicationError(
        BODY_TOO_LARGE.format(**values), code="request_too_large", status=413
    )
    error.flavour_messages = {
        HF: BODY_TOO_LARGE_HF.format(**values),
        CLOUDFLARE: BODY_TOO_LARGE_CLOUDFLARE.format(
            **values, array_image=f"{limit / 4 / 1e6:.0f} MB of image"
        ),
    }
    return error
