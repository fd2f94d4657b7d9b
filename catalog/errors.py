"""The API's one error type and its one JSON error shape.

Every error the HTTP API answers, ours or Django REST framework's (404, 405, parse and
validation errors, authentication, throttling), is rendered by ``api_exception_handler``
into the shape OpenAI's API uses, so clients written for it read our errors too::

    {"error": {"message": "...", "type": "not_found", "code": "model_not_found", "param": null}}

Services and APIs raise ``ApplicationError``; ``REST_FRAMEWORK["EXCEPTION_HANDLER"]`` points
at the handler. Texts are module constants that tests assert on. Other apps (billing,
playground) import from here: they may depend on ``catalog``.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import Http404
from drf_spectacular.utils import extend_schema_serializer
from rest_framework import exceptions, serializers, status
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import set_rollback

# --- messages ------------------------------------------------------------------------
MODEL_NOT_FOUND = "The model '{model_id}' does not exist."
ENDPOINT_NOT_FOUND = "Unknown API endpoint: {method} {path}. See /v1/openapi.json."
NOT_FOUND = "Not found."
METHOD_NOT_ALLOWED = "Method {method} is not allowed on {path}."
NOT_ACCEPTABLE = (
    "This API answers JSON only: send 'Accept: application/json', or no Accept header "
    "(the Accept header asked for {accept})."
)
INVALID_PARAMETER = "Invalid value for '{param}': {detail}"
INVALID_REQUEST = "Invalid request: {detail}"
UNKNOWN_PARAMETER = "Unknown {where} '{name}'; known: {known}."
PARAMETER_TWICE = "'{name}' was given more than once with different values: give it once."
PARAMETER_EMPTY = "'{name}' is empty: give it a value, or leave it out."

# The longest parameter name an error repeats whole.
MAX_SHOWN_NAME = 64
MAX_SHOWN_ID = 256  # a model id: an organisation and a 96-character name fit

# --- types (OpenAI's names, plus not_found) -------------------------------------------
INVALID_REQUEST_ERROR = "invalid_request_error"
AUTHENTICATION_ERROR = "authentication_error"
PERMISSION_ERROR = "permission_error"
NOT_FOUND_ERROR = "not_found"
RATE_LIMIT_ERROR = "rate_limit_error"
SERVER_ERROR = "server_error"

_TYPE_BY_STATUS = {
    status.HTTP_401_UNAUTHORIZED: AUTHENTICATION_ERROR,
    status.HTTP_403_FORBIDDEN: PERMISSION_ERROR,
    status.HTTP_404_NOT_FOUND: NOT_FOUND_ERROR,
    status.HTTP_429_TOO_MANY_REQUESTS: RATE_LIMIT_ERROR,
}


def error_type_for(http_status: int) -> str:
    if http_status >= 500:
        return SERVER_ERROR
    return _TYPE_BY_STATUS.get(http_status, INVALID_REQUEST_ERROR)


class ApplicationError(Exception):
    """A failure the client should see: a message, a machine code, an HTTP status.

    ``extra`` is merged into the error object (e.g. ``{"balance": "0.00"}``); ``param``
    names the request parameter at fault, as OpenAI's errors do.
    """

    def __init__(
        self,
        message: str,
        code: str,
        status: int = status.HTTP_400_BAD_REQUEST,
        type: str | None = None,  # shadows the builtin: it is the shape's own field name
        extra: dict[str, Any] | None = None,
        *,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status
        self.type = type or error_type_for(status)
        self.extra = extra or {}
        self.param = param
        self.headers = headers or {}

    def as_dict(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "code": self.code,
                "param": self.param,
                **self.extra,
            }
        }


def model_not_found(model_id: str) -> ApplicationError:
    """The one 404 for an id no published card has, wherever a model id is looked up."""
    message = MODEL_NOT_FOUND.format(model_id=shown(model_id, MAX_SHOWN_ID))
    if model_id.endswith("/"):  # /v1/inference/facebook/detr-resnet-50/
        message += f" Model ids end without a slash: '{shown(model_id.rstrip('/'), MAX_SHOWN_ID)}'."
    return ApplicationError(
        message,
        code="model_not_found",
        status=status.HTTP_404_NOT_FOUND,
        type=NOT_FOUND_ERROR,
    )


def _first_error(detail: Any, path: tuple[str, ...] = ()) -> tuple[str | None, str]:
    """The first field (dotted, e.g. ``parameters.threshold``) and message in DRF's detail."""
    if isinstance(detail, dict) and detail:
        key, value = next(iter(detail.items()))
        if key != api_settings.NON_FIELD_ERRORS_KEY:
            path = (*path, str(key))
        return _first_error(value, path)
    if isinstance(detail, list) and detail:
        return _first_error(detail[0], path)
    return (".".join(path) or None), str(detail)


def _from_drf(exc: exceptions.APIException, request) -> ApplicationError:
    method = getattr(request, "method", "")
    path = getattr(request, "path", "")
    headers = {}
    if getattr(exc, "auth_header", None):
        headers["WWW-Authenticate"] = exc.auth_header
    if getattr(exc, "wait", None):
        headers["Retry-After"] = str(int(exc.wait))

    if isinstance(exc, exceptions.ValidationError):
        param, detail = _first_error(exc.detail)
        message = (
            INVALID_PARAMETER.format(param=param, detail=detail)
            if param
            else INVALID_REQUEST.format(detail=detail)
        )
        return ApplicationError(
            message,
            code="invalid_value",
            status=exc.status_code,
            extra={"details": exc.detail},
            param=param,
        )
    if isinstance(exc, exceptions.MethodNotAllowed):
        return ApplicationError(
            METHOD_NOT_ALLOWED.format(method=method, path=path),
            code="method_not_allowed",
            status=exc.status_code,
            headers=headers,
        )
    if isinstance(exc, exceptions.NotAcceptable):
        accept = getattr(request, "headers", {}).get("Accept", "")
        return ApplicationError(
            NOT_ACCEPTABLE.format(accept=shown(accept) or "nothing"),
            code="not_acceptable",
            status=exc.status_code,
            param="Accept",
        )
    code = exc.get_codes()
    return ApplicationError(
        str(exc.detail),
        code=code if isinstance(code, str) else exc.default_code,
        status=exc.status_code,
        headers=headers,
    )


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """Render every API error as ``{"error": {message, type, code, param}}``.

    Anything else (a bug) returns None: DRF re-raises it and Django's own 500 handling and
    error reporting run, rather than hiding a traceback behind a tidy JSON body.
    """
    request = context.get("request")
    if isinstance(exc, Http404):
        exc = exceptions.NotFound(NOT_FOUND)
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()

    if isinstance(exc, exceptions.APIException):
        error = _from_drf(exc, request)
    elif isinstance(exc, ApplicationError):
        error = exc
    else:
        return None

    set_rollback()
    return Response(error.as_dict(), status=error.status, headers=error.headers)


# --- the shape, for the OpenAPI schema -------------------------------------------------
@extend_schema_serializer(component_name="ErrorBody")
class ErrorBodySerializer(serializers.Serializer):
    message = serializers.CharField(help_text="What went wrong, for a person.")
    type = serializers.CharField(
        help_text="invalid_request_error, authentication_error, insufficient_credits (402), "
        "permission_error, not_found, rate_limit_error, server_error, service_unavailable (503)"
    )
    code = serializers.CharField(help_text="Machine-readable, e.g. model_not_found.")
    param = serializers.CharField(
        allow_null=True, help_text="The request parameter at fault, if any."
    )
    # Sent only by the errors that carry them (ApplicationError.extra), declared so a
    # generated client can read them without a cast.
    balance = serializers.CharField(
        required=False, help_text="402 insufficient_credits: the wallet, USD."
    )
    cost = serializers.CharField(
        required=False,
        help_text="402 insufficient_credits: what the call costs, USD; a failed job's "
        "answer: what it was charged (0).",
    )
    job = serializers.CharField(
        required=False, help_text="The id of the job the error is about (a failed job)."
    )
    replacement = serializers.CharField(
        required=False,
        allow_null=True,
        help_text="410 model_retired: the replacement model's id, or null.",
    )
    details = serializers.DictField(
        required=False, help_text="400 invalid_value: the validation detail, per field."
    )


@extend_schema_serializer(component_name="Error")
class ErrorSerializer(serializers.Serializer):
    error = ErrorBodySerializer()


def shown(name: str, limit: int = MAX_SHOWN_NAME) -> str:
    """A parameter name (or id) as an error repeats it: short and printable (a body sent as
    a form by mistake makes names of its bytes)."""
    if len(name) <= limit and name.isprintable():
        return name
    return ascii(name[:limit])[1:-1] + "..."


def refuse_unknown(names, known: set[str], *, where: str, prefix: str = "") -> None:
    for name in names:
        if name not in known:
            name_shown = shown(prefix + name)
            raise ApplicationError(
                UNKNOWN_PARAMETER.format(
                    where=where, name=name_shown, known=", ".join(sorted(known)) or "none"
                ),
                code="unknown_parameter",
                param=name_shown,
            )


def refuse_unknown_query(request, known: set[str]) -> None:
    """400 ``unknown_parameter`` naming the first query parameter not in ``known``; 400
    ``invalid_value`` for one given twice with different values (``?limit=3&limit=5``: a
    read would use the last and ignore the first unsaid) or empty (``?status=``: not one
    of its values; leaving it out is how a filter is not applied)."""
    query = request.query_params
    refuse_unknown(query.keys(), known, where="query parameter")
    for name, values in query.lists():
        if len(set(values)) > 1:
            raise ApplicationError(
                PARAMETER_TWICE.format(name=name), code="invalid_value", param=name
            )
        if values[0] == "":
            raise ApplicationError(
                PARAMETER_EMPTY.format(name=name), code="invalid_value", param=name
            )
