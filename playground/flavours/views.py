from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt

from catalog import errors
from playground.flavours import error_response, flavour_for


@csrf_exempt
def endpoint_not_found(request: HttpRequest, *args, **kwargs) -> HttpResponse:
    error = errors.ApplicationError(
        errors.ENDPOINT_NOT_FOUND.format(method=request.method, path=request.path),
        code="endpoint_not_found",
        status=404,
        type=errors.NOT_FOUND_ERROR,
    )
    return error_response(flavour_for(request.path, request.headers, request.GET), error)


V1_ROOT = (
    "{method} /v1 names no model. Give the client the model's own URL: "
    "{base}/hf/models/<org>/<name> (Hugging Face: InferenceClient(model=... or "
    "base_url=...)), or {base}/v1/inference/<org>/<name>."
)


@csrf_exempt
def v1_root(request: HttpRequest) -> HttpResponse:
    base = request.build_absolute_uri("/").rstrip("/")
    error = errors.ApplicationError(
        V1_ROOT.format(method=request.method, base=base),
        code="endpoint_not_found",
        status=404,
        type=errors.NOT_FOUND_ERROR,
    )
    return error_response(flavour_for(request.path, request.headers, request.GET), error)
