"""/llms.txt, /robots.txt and /sitemap.xml."""

from __future__ import annotations

import html
import re
import xml.etree.ElementTree as ET

import markdown
import pytest
from django.core.management import call_command

from catalog.machine_views import markdown_text
from catalog.models import ModelCard
from tests import factories

SITE = "https://vitrine.example"
SITEMAP_NS = {"s": "http://www.sitemaps.org/schemas/sitemap/0.9"}


@pytest.fixture
def seeded(db, settings):
    settings.SITE_URL = SITE
    call_command("seed_catalog", verbosity=0)


# --- llms.txt -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "model_id", "status", "price"),
    [
        ("DETR ResNet-50", "facebook/detr-resnet-50", "live", "$0.0002 per image"),
        (
            "Conditional DETR ResNet-50",
            "microsoft/conditional-detr-resnet-50",
            "coming_soon",
            "~$0.0002 per image",
        ),
        ("RT-DETR R50", "PekingU/rtdetr_r50vd", "coming_soon", "~$0.000047 per image"),
        ("YOLOS tiny", "hustvl/yolos-tiny", "live", "$0.0001 per image"),
    ],
)
def test_llms_txt_lists_each_model_with_link_id_status_and_price(
    client, seeded, name, model_id, status, price
):
    response = client.get("/llms.txt")

    assert response.status_code == 200
    assert response["Content-Type"] == "text/plain; charset=utf-8"
    [line] = [
        line
        for line in response.content.decode().splitlines()
        if line.startswith(f"- [{name}]({SITE}/models/{model_id})")
    ]
    assert f"`{model_id}`" in line
    assert f"status {status}" in line
    assert price in line


def test_llms_txt_keeps_each_model_on_one_line_without_control_characters(client, seeded):
    """Operator text goes out as plain text: an ESC (a terminal's escape) or a bidi override
    in a summary, or a newline, reached whoever read llms.txt as written."""
    card = ModelCard.objects.get(organisation__slug="hustvl", slug="yolos-tiny")
    card.display_name = "YOLOS\u202e tiny"
    card.summary = "Small.\x1b[2J\x07 Fast\nand\tcheap.\u2066"
    card.save()

    text = client.get("/llms.txt").content.decode()

    [line] = [line for line in text.splitlines() if "`hustvl/yolos-tiny`" in line]
    assert line.startswith(f"- [YOLOS tiny]({SITE}/models/hustvl/yolos-tiny)")
    assert line.endswith(r". Small.\[2J Fast and cheap.")  # its "[" escaped (next test)
    assert not any(ch in text for ch in "\x1b\x07\u202e\u2066\t")


def test_llms_txt_gives_operator_markdown_and_html_as_literal_text(client, seeded):
    """Session 47's outside probe: this name closed the entry's link early, so its first
    link pointed off-site, and the summary's tags reached whatever renders llms.txt as
    HTML. Rendered (python-markdown, the site's own renderer), the entry's one link is
    ours and the name and summary read as the operator typed them."""
    card = ModelCard.objects.get(organisation__slug="hustvl", slug="yolos-tiny")
    card.display_name = "YOLOS tiny](https://evil.example/phish) [x"
    card.summary = '<script>alert(1)</script><img src=x onerror="alert(1)"> **Fast**, `_cheap_`.'
    card.save()

    text = client.get("/llms.txt").content.decode()

    [line] = [line for line in text.splitlines() if "`hustvl/yolos-tiny`" in line]
    assert "<" not in line and "](https://evil" not in line
    rendered = markdown.markdown(line)
    assert re.findall(r'href="([^"]*)"', rendered) == [f"{SITE}/models/hustvl/yolos-tiny"]
    assert re.findall(r"<(\w+)", rendered) == ["ul", "li", "a", "code"]  # no script, img, em
    shown = html.unescape(re.sub(r"<[^>]+>", "", rendered)).strip()
    assert shown.startswith(f"{card.display_name}: hustvl/yolos-tiny, status live, ")
    assert shown.endswith(f". {card.summary}")


@pytest.mark.parametrize(
    ("typed", "written"),
    [
        ("DETR ResNet-50", "DETR ResNet-50"),
        ("RT-DETR (R50)", r"RT-DETR \(R50\)"),
        ("[x](https://evil.example)", r"\[x\]\(https://evil.example\)"),
        ("![x](https://evil.example/a.png)", r"!\[x\]\(https://evil.example/a.png\)"),
        ("<b onclick=x>", "&lt;b onclick=x&gt;"),
        (r"a_b*c`d\e", r"a\_b\*c\`d\\e"),
        ("# Heading", r"\# Heading"),
        ("- item", r"\- item"),
        ("> quote", "&gt; quote"),
    ],
)
def test_operator_text_is_escaped_for_markdown_and_stays_readable(typed, written):
    assert markdown_text(typed) == written


def test_llms_txt_shape_and_how_to_call(client, seeded):
    text = client.get("/llms.txt").content.decode()
    lines = text.splitlines()

    assert lines[0] == "# Vitrine"
    assert lines[2].startswith("> ")
    for expected in [
        "## Models",
        "## API",
        "## Pricing",
        f"`{SITE}/v1`",
        "Authorization: Bearer <key>",
        f"POST {SITE}/v1/inference/<org>/<name>",
        '{"inputs": "<base64 image>", "parameters": {"threshold": 0.5}}',
        '"box": {"xmin": 12, "ymin": 54, "xmax": 320, "ymax": 470}',
        "integer pixels",
        "$0.0000075 per request",
        "5%",
        "never per call",
        "BYOK",
        "402",
        "insufficient_credits",
        f"]({SITE}/v1/models)",
        f"]({SITE}/v1/openapi.json)",
    ]:
        assert expected in text, expected


def test_llms_txt_leaves_out_unpublished_models(client, seeded):
    hidden = factories.card(is_published=False, display_name="Secret detector")

    text = client.get("/llms.txt").content.decode()

    assert hidden.model_id not in text
    assert "Secret detector" not in text


# --- robots.txt ---------------------------------------------------------------------------
def test_robots_txt(client, db):
    response = client.get("/robots.txt")

    assert response.status_code == 200
    assert response["Content-Type"] == "text/plain; charset=utf-8"
    lines = response.content.decode().splitlines()
    assert lines[:3] == ["User-agent: *", "Allow: /", "Disallow: /admin/"]
    assert "Sitemap: http://testserver/sitemap.xml" in lines


# --- sitemap.xml --------------------------------------------------------------------------
def sitemap(client) -> dict[str, str | None]:
    response = client.get("/sitemap.xml")
    assert response.status_code == 200
    root = ET.fromstring(response.content)
    return {
        url.findtext("s:loc", namespaces=SITEMAP_NS): url.findtext(
            "s:lastmod", namespaces=SITEMAP_NS
        )
        for url in root.findall("s:url", SITEMAP_NS)
    }


def test_sitemap_lists_models_cards_collections_and_organisations(client, seeded):
    base = "http://testserver"
    expected = {
        f"{base}/models",
        f"{base}/pricing",
        *(
            f"{base}/models/{model_id}"
            for model_id in [
                "facebook/detr-resnet-50",
                "microsoft/conditional-detr-resnet-50",
                "PekingU/rtdetr_r50vd",
                "hustvl/yolos-tiny",
            ]
        ),
        *(
            f"{base}/collections/{slug}"
            for slug in ["object-detection", "meta", "open-weight", "coming-soon", "image-models"]
        ),
        *(f"{base}/orgs/{slug}" for slug in ["facebook", "microsoft", "PekingU", "hustvl"]),
        f"{base}/tasks/object-detection",
    }

    urls = sitemap(client)

    assert set(urls) == expected
    detr = ModelCard.objects.by_model_id("facebook/detr-resnet-50").get()
    assert urls[f"{base}/models/facebook/detr-resnet-50"] == detr.updated_at.date().isoformat()


def test_sitemap_leaves_out_unpublished_cards_and_their_organisations(client, seeded):
    hidden = factories.card(is_published=False)

    urls = sitemap(client)

    assert f"http://testserver/models/{hidden.model_id}" not in urls
    assert f"http://testserver/orgs/{hidden.organisation.slug}" not in urls
