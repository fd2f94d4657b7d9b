"""The options of Vitrine's inference endpoints, and the refusal of any it does not know.

A typo (``treshold=0.9``, ``{"parameter": {...}}``) must not be silently ignored: the call
would run and be charged with defaults the caller did not mean. Every query parameter,
top-level JSON field, ``parameters`` key and form field is checked against the known
ones; an unknown one is a 400 ``unknown_parameter`` whose ``param`` names it.

Query parameters (both routes): ``threshold``, ``route``, ``dry_run``, ``webhook``; on
``/v1/detections`` also ``box_format``. JSON body: ``inputs``, ``parameters``
(``{"threshold"}``), ``webhook``. Multipart/form: ``image``, ``threshold``, ``webhook``.
"""

from __future__ import annotations

from dataclasses import dataclass

from catalog import errors
from catalog.errors import refuse_unknown
from playground.serializers import BOX_FORMATS

BAD_BOOLEAN = "'{name}' must be true or false."
DRY_RUN_TWICE = "'dry_run' was given more than once with different values: give it once."
BAD_BOX_FORMAT = "'box_format' must be one of: {choices}."
NOT_AN_OBJECT = "'{name}' must be a JSON object, e.g. {example}."
WEBHOOK_TWICE = (
    "'webhook' was given more than once with different URLs: give one, in the query string "
    "or in the body."
)

QUERY = {"threshold", "route", "dry_run", "webhook"}
QUERY_VITRINE = QUERY | {"box_format"}
JSON_FIELDS = {"inputs", "parameters", "webhook"}
JSON_PARAMETERS = {"threshold"}
FORM_FIELDS = {"image", "threshold", "webhook"}

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@dataclass(frozen=True)
class Options:
    dry_run: bool = False
    webhook: str | None = None
    box_format: str = "int"


def query_box_format(request) -> str | None:
    """The query's ``box_format`` (None when absent or empty); 400 ``invalid_value`` when it
    is not one of ``BOX_FORMATS``."""
    box_format = request.query_params.get("box_format") or None
    if box_format not in (None, *BOX_FORMATS):
        raise errors.ApplicationError(
            BAD_BOX_FORMAT.format(choices=", ".join(BOX_FORMATS)),
            code="invalid_value",
            param="box_format",
        )
    return box_format


def refuse_non_object(name: str, value, *, example: str = '{"threshold": 0.5}') -> None:
    """400 ``invalid_value`` for a body field that must be an object (``parameters``) but
    is a list, a string or a number: ignored, it would run the call with defaults."""
    if value is not None and not isinstance(value, dict):
        raise errors.ApplicationError(
            NOT_AN_OBJECT.format(name=name, example=example), code="invalid_value", param=name
        )


def _boolean(name: str, raw) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise errors.ApplicationError(BAD_BOOLEAN.format(name=name), code="invalid_value", param=name)


def _dry_run(query) -> bool:
    """``dry_run=true`` quotes; absent runs the call. Bare (``?dry_run``), empty or given
    twice with different values is a 400: a quote meant and a paid call run instead (or the
    reverse) must not turn on how a client spells or repeats a flag."""
    given = query.getlist("dry_run")
    values = {_boolean("dry_run", raw) for raw in given}
    if len(values) > 1:
        raise errors.ApplicationError(DRY_RUN_TWICE, code="invalid_value", param="dry_run")
    return values.pop() if values else False


def request_options(request, *, vitrine_flavour: bool = False) -> Options:
    """Check every parameter name of the request and read Vitrine's options. ``request``
    is DRF's (after parsing: ``request.data`` is bytes for a raw image body)."""
    query = request.query_params
    refuse_unknown(query.keys(), QUERY_VITRINE if vitrine_flavour else QUERY,
                    where="query parameter")  # fmt: skip
    data = request.data
    webhooks = query.getlist("webhook")
    if hasattr(data, "getlist"):  # form / multipart (a QueryDict, also a dict: test first)
        refuse_unknown([*data.keys(), *request.FILES.keys()], FORM_FIELDS, where="form field")
        webhooks += [url for url in data.getlist("webhook") if url]
    elif isinstance(data, dict):  # JSON
        refuse_unknown(data.keys(), JSON_FIELDS, where="body field")
        parameters = data.get("parameters")
        refuse_non_object("parameters", parameters)
        if isinstance(parameters, dict):
            refuse_unknown(parameters.keys(), JSON_PARAMETERS, where="parameter",
                            prefix="parameters.")  # fmt: skip
        if "webhook" in data:
            webhooks.append(data["webhook"])
    # One webhook per call: two different ones (query and body) would leave one unheard.
    if len({repr(url) for url in webhooks}) > 1:
        raise errors.ApplicationError(WEBHOOK_TWICE, code="invalid_value", param="webhook")
    webhook = webhooks[0] if webhooks else None
    box_format = query_box_format(request) or "int"
    if webhook is not None and not isinstance(webhook, str):
        webhook = ""  # refused by the URL check with its message
    return Options(
        dry_run=_dry_run(query),
        webhook=webhook if webhook not in (None,) else None,
        box_format=box_format,
    )
