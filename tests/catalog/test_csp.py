"""Every page is sent with a Content-Security-Policy that allows nothing inline, and has
nothing inline for it to block (catalog/csp.py). The browser tests check that no page
reports a violation in Chromium (tests/test_browser.py ``watch_csp``)."""

from __future__ import annotations

import io
import re

import pytest
from django.core.management import call_command

pytestmark = pytest.mark.django_db

DETR = "/models/facebook/detr-resnet-50"
PAGES = [
    "/models",
    DETR,
    f"{DETR}/try",
    "/compare?models=facebook/detr-resnet-50,PekingU/rtdetr_r50vd",
    "/tasks/object-detection",
    "/playground",
    "/docs/api",
    "/accounts/login/",
    "/accounts/signup/",
]
# An executable inline script: a <script> with no src that is not a JSON data block.
INLINE_SCRIPT = re.compile(
    r"<script(?![^>]*\bsrc=)(?![^>]*\btype=\"application/(?:ld\+)?json\")[^>]*>", re.I
)
EVENT_HANDLER = re.compile(r"<[^>]+\son[a-z]+\s*=", re.I)
STYLE_ATTRIBUTE = re.compile(r"<[^>]+\sstyle\s*=", re.I)


@pytest.fixture
def seeded():
    call_command("seed_catalog", stdout=io.StringIO())


@pytest.mark.parametrize("url", PAGES)
def test_a_page_has_the_policy_and_nothing_inline_for_it_to_block(client, seeded, settings, url):
    response = client.get(url)
    assert response.status_code == 200
    assert response["Content-Security-Policy"] == settings.VITRINE_CSP
    assert "script-src 'self';" in settings.VITRINE_CSP
    assert "unsafe-inline" not in settings.VITRINE_CSP
    page = response.content.decode()
    assert INLINE_SCRIPT.findall(page) == []
    assert EVENT_HANDLER.findall(page) == []
    assert STYLE_ATTRIBUTE.findall(page) == []


def test_the_checks_find_what_they_look_for():
    assert INLINE_SCRIPT.findall('<p><script>alert(1)</script><script type="module">')
    allowed = '<script src="/s.js"></script><script type="application/json">'
    assert not INLINE_SCRIPT.findall(allowed)
    assert EVENT_HANDLER.findall('<img src=x onerror="alert(1)">')
    assert STYLE_ATTRIBUTE.findall('<span class="swatch" style="background: red">')


def test_the_api_docs_start_up_script_is_a_file_of_its_own(client, seeded):
    page = client.get("/docs/api").content.decode()
    scripts = re.findall(r'<script src="([^"]+)"', page)
    assert "/docs/api?script=" in scripts
    script = client.get("/docs/api?script=")
    assert script.status_code == 200
    assert script["Content-Type"].startswith("application/javascript")
    assert "SwaggerUIBundle" in script.content.decode()
    assert "/v1/openapi.json" in script.content.decode()
    assert "Content-Security-Policy" not in script


def test_json_and_files_get_no_policy(client, seeded):
    assert "Content-Security-Policy" not in client.get("/v1/models")
    assert "Content-Security-Policy" not in client.get("/v1/openapi.json")


def test_a_not_found_page_has_it_too(client, seeded, settings):
    settings.DEBUG = False
    response = client.get("/models/nobody/nothing")
    assert response.status_code == 404
    assert response["Content-Security-Policy"] == settings.VITRINE_CSP


def test_an_empty_setting_turns_it_off(client, seeded, settings):
    settings.VITRINE_CSP = ""
    assert "Content-Security-Policy" not in client.get(DETR)


def test_a_policy_of_the_views_own_is_kept(rf, settings):
    from django.http import HttpResponse

    from catalog.csp import add_policy

    own = HttpResponse("<p>x</p>")
    own["Content-Security-Policy"] = "sandbox"
    assert add_policy(rf.get("/"), own)["Content-Security-Policy"] == "sandbox"
