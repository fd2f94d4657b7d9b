"""Provider routes: a model run by another provider with the user's own key (BYOK).

Plain Python (no Django): ``run(flavour, secret=..., model_id=..., image=..., size=...)``
returns detections in our shape. Cloudflare Workers AI takes the raw image bytes at
``/accounts/<account>/ai/run/<model>`` and answers ``{"result": [{"score", "label",
"box": {...}}], "success": true}`` (seed 001's schema); its boxes are numbers, ours are
integer pixels, clipped and sorted like our own detector's.
"""

from __future__ import annotations

import json
from urllib.error import HTTPError, URLError
from urllib.request import Request, urlopen

from billing.key_formats import cloudflare_key_parts

CLOUDFLARE_API = "https://api.cloudflare.com/client/v4"
TIMEOUT = 60
BAD_SECRET = "The stored Cloudflare key is not <32-hex account id>:<API token>."


class ProviderError(Exception):
    def __init__(self, message: str, *, code: str):
        super().__init__(message)
        self.code = code


def _to_ours(items: list[dict], *, size: tuple[int, int], floor: float) -> list[dict]:
    width, height = size
    detections = []
    for item in items:
        box = item.get("box") or {}
        score = float(item.get("score", 0))
        if score < floor:
            continue
        detections.append(
            {
                "label": str(item.get("label", "")),
                "score": score,
                "box": {
                    "xmin": min(max(int(box.get("xmin", 0)), 0), width),
                    "ymin": min(max(int(box.get("ymin", 0)), 0), height),
                    "xmax": min(max(int(box.get("xmax", 0)), 0), width),
                    "ymax": min(max(int(box.get("ymax", 0)), 0), height),
                },
            }
        )
    return sorted(detections, key=lambda d: d["score"], reverse=True)


def cloudflare_detect(
    *, secret: str, model_id: str, image: bytes, size: tuple[int, int], floor: float
) -> list[dict]:
    parts = cloudflare_key_parts(secret.strip())
    if parts is None:  # saved before keys were checked at save time
        raise ProviderError(BAD_SECRET, code="provider_key_invalid")
    account, token = parts
    request = Request(
        f"{CLOUDFLARE_API}/accounts/{account}/ai/run/{model_id}",
        data=image,
        method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/octet-stream"},
    )
    try:
        with urlopen(request, timeout=TIMEOUT) as response:
            body = json.loads(response.read())
    except HTTPError as exc:
        code = "provider_auth_failed" if exc.code in (401, 403) else "provider_error"
        raise ProviderError(f"Cloudflare answered {exc.code}.", code=code) from None
    except (URLError, TimeoutError, ValueError) as exc:
        raise ProviderError(
            f"Cloudflare could not be reached: {exc}", code="provider_unreachable"
        ) from None
    if not body.get("success", False):
        raise ProviderError(
            f"Cloudflare refused the call: {body.get('errors')}", code="provider_error"
        )
    return _to_ours(body.get("result") or [], size=size, floor=floor)


# By the TaskSchema flavour a route speaks.
PROVIDERS = {"cloudflare-workers-ai": cloudflare_detect}
