"""Routes of the drop-in flavours (included at the site root by config/urls.py)."""

from __future__ import annotations

from django.urls import path, re_path

from playground.flavours import cloudflare, hf, views

urlpatterns = [
    path("hf/models/<path:model_id>", hf.hf_inference, name="hf-inference"),
    re_path(
        r"^client/v4/accounts/(?P<account_id>[^/]+)/ai/run/(?P<model_name>.+)$",
        cloudflare.cloudflare_run,
        name="cloudflare-run",
    ),
    # /v1 itself, where huggingface_hub given base_url="<site>/v1" posts: a JSON 404 that
    # says which URL to give it (before this, APPEND_SLASH answered 500 or a 301).
    re_path(r"^v1$", views.v1_root),
    # Any other path under these prefixes: the flavour's JSON 404, never an HTML page.
    re_path(r"^hf(/|$)", views.endpoint_not_found),
    re_path(r"^client/v4(/|$)", views.endpoint_not_found),
]
