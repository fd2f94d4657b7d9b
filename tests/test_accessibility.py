"""Every page type passes axe-core in a real browser, at a phone's and a laptop's width, in
the light and the dark colour scheme.

axe-core (4.12, the axe.min.js that axe-playwright-python bundles) runs its WCAG 2.0, 2.1 and
2.2 A and AA rules and its best practices on each page of tests/test_responsive.py's PAGES
(signed-in ones too), with every <details> opened so that what they fold away is checked
as well, and after a message is shown (the coming-soon page's "notify me"). Any violation,
of any impact, fails the test, which prints each one's rule, impact and target selectors.

The script is evaluated through DevTools (``page.evaluate``), which the pages'
Content-Security-Policy does not govern: the test also fails if it made the page report a
violation of the policy.

Not checked: Swagger UI's own markup inside ``#swagger-ui`` on /docs/api (third party: its
contrast, headings, nested buttons and small targets); the Django admin's pages.
"""

from __future__ import annotations

import pytest

from tests.test_browser import (  # noqa: F401  (the module's browser fixture)
    BROWSER_MARKS,
    CHROMIUM,
    PAGES_ON_EMBEDDED_ONLY,
    browser,
    watch_csp,
)
from tests.test_responsive import (  # noqa: F401  (the module's site fixture)
    site,
    visit_every_page,
)

pytestmark = BROWSER_MARKS

TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22a", "wcag22aa", "best-practice"]

# /docs/api: Swagger UI draws its own <main id="operations"> inside the page's, which is
# all that makes axe report two main landmarks there; the page's own markup is checked.
SWAGGER = {
    "context": {"exclude": [["#swagger-ui"]]},
    "rules": {"landmark-no-duplicate-main": {"enabled": False}},
}

OPEN_DETAILS = "() => document.querySelectorAll('details').forEach((d) => { d.open = true; })"


def axe(page, context: dict | None = None, rules: dict | None = None) -> list[dict]:
    """axe-core's violations on ``page`` as it is now (all of them, whatever the impact)."""
    from axe_playwright_python.base import AXE_SCRIPT

    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.evaluate(AXE_SCRIPT)
    options = {
        "runOnly": {"type": "tag", "values": TAGS},
        "resultTypes": ["violations"],
        "rules": rules or {},
    }
    result = page.evaluate(
        "([context, options]) => axe.run(context || document, options)", [context, options]
    )
    return result["violations"]


def described(violations: list[dict]) -> list[str]:
    """One line a violation: its rule, impact and the selectors of the elements it found."""
    return [
        f"{v['id']} ({v['impact']}): {'; '.join(' '.join(n['target']) for n in v['nodes'])}"
        for v in violations
    ]


@PAGES_ON_EMBEDDED_ONLY
@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("width", [390, 1280])
def test_every_page_passes_axe(browser, site, width, scheme):  # noqa: F811
    context = browser.new_context(
        base_url=site.url, viewport={"width": width, "height": 900}, color_scheme=scheme
    )
    page = context.new_page()
    csp = watch_csp(page)
    found: dict[str, list[str]] = {}
    try:
        for name in visit_every_page(page, site):
            if name == "api-docs":
                # The only other <main> is Swagger UI's own (see SWAGGER).
                others = "document.querySelectorAll('main:not(#main):not(#swagger-ui main)').length"
                assert page.evaluate(others) == 0
            dark = page.evaluate("matchMedia('(prefers-color-scheme: dark)').matches")
            assert dark == (scheme == "dark"), name
            page.evaluate(OPEN_DETAILS)
            if violations := axe(page, **(SWAGGER if name == "api-docs" else {})):
                found[name] = described(violations)
            if name == "model-coming-soon":  # a message at the top of the page
                page.fill("#notify input[name=email]", "dev@example.com")
                page.click("#notify button")
                page.wait_for_selector(".messages")
                if violations := axe(page):
                    found[f"{name} (message)"] = described(violations)
    finally:
        context.close()
    for name, lines in found.items():
        print(f"{name} at {width} px, {scheme}:", *lines, sep="\n  ")
    assert found == {}, f"axe found violations at {width} px, {scheme} (printed above)"
    assert csp == [], "running axe broke the Content-Security-Policy"


def test_the_axe_check_catches_what_it_is_for(browser):  # noqa: F811
    """The check fails on the defects it found here before (as they looked), and passes
    once they are fixed as they were fixed."""
    context = browser.new_context(viewport={"width": 390, "height": 844})
    page = context.new_page()
    link = "text-decoration:{}'>a link</a> in a sentence of muted text, long enough to read as a"
    page_with = (
        "<!doctype html><html lang=en><title>t</title><main><h1>A page</h1>"
        "<p style='color:{grey};background:#fff'>Grey text on white.</p>"
        "<p style='color:#4b5563'>Here is <a href=/x style='color:#4f46e5;{link} block.</p>"
        "{input}<pre style='overflow-x:auto'{focus}>{code}</pre></main>"
    ).format
    code = "curl -H 'Authorization: Bearer $VITRINE_API_KEY' " * 8
    page.set_content(
        page_with(
            grey="#aaa", link=link.format("none"), input="<input name=q>", focus="", code=code
        )
    )
    found = {v["id"]: v for v in axe(page)}
    assert found.keys() == {
        "color-contrast",
        "label",
        "link-in-text-block",
        "scrollable-region-focusable",
    }, described(found.values())
    assert found["color-contrast"]["impact"] == "serious"
    assert found["label"]["nodes"][0]["target"] == ["input"]
    assert found["scrollable-region-focusable"]["nodes"][0]["target"] == ["pre"]
    page.set_content(
        page_with(
            grey="#595959",
            link=link.format("underline"),
            input="<label>Search <input name=q></label>",
            focus=" tabindex=0",
            code=code,
        )
    )
    assert axe(page) == []
    context.close()
