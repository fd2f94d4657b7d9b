"""The form each provider's key must have, checked when a user saves it (pure rules, no ORM).

By the TaskSchema flavour a provider route speaks (``PriceRoute.schema_flavour``). The
worker's provider adapters (``playground/providers.py``) apply the same rule, so a key
stored before the rule existed fails its job with ``provider_key_invalid`` (a 400 telling
the user to update it), never a 500.
"""

from __future__ import annotations

import re

CLOUDFLARE = "cloudflare-workers-ai"

# A Cloudflare account id is 32 hex digits; an API token is one word of URL-safe characters.
_CLOUDFLARE_KEY = re.compile(r"^(?P<account>[0-9a-fA-F]{32}):(?P<token>[A-Za-z0-9_\-.~+/=]+)$")
CLOUDFLARE_KEY_FORMAT = (
    "A Cloudflare key is your account id (32 hexadecimal characters, on the dashboard's "
    "Workers AI page) and an API token, joined by a colon: <account id>:<token>."
)


def cloudflare_key_parts(secret: str) -> tuple[str, str] | None:
    """(account id, token) of a well-formed Cloudflare key, else None."""
    match = _CLOUDFLARE_KEY.match(secret)
    return (match["account"], match["token"]) if match else None


def key_format_error(flavour: str, secret: str) -> str | None:
    """Why ``secret`` is not a key for a route of ``flavour``; None when it is (or unknown)."""
    if flavour == CLOUDFLARE and cloudflare_key_parts(secret) is None:
        return CLOUDFLARE_KEY_FORMAT
    return None
