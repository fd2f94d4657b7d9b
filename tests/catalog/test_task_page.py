"""``/tasks/<slug>``: a task's page (seed 003, Hugging Face's task page): what the task's
models do, from the operators' Markdown, and every listed model of the task; linked from
each model's task chip and listed in the sitemap."""

from __future__ import annotations

import html
import io
import re

import pytest
from django.core.management import call_command

from catalog.models import ModelCard, Task
from tests import factories

pytestmark = pytest.mark.django_db

TASK = "/tasks/object-detection"


@pytest.fixture
def seeded():
    call_command("seed_catalog", stdout=io.StringIO())


def text_of(response) -> str:
    body = re.sub(r"<script.*?</script>", " ", response.content.decode(), flags=re.S)
    text = re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", body)))
    return text.replace(" .", ".")  # a link ends a sentence


def test_the_task_page_says_what_the_task_is_as_seed_003_does(client, seeded):
    response = client.get(TASK)
    assert response.status_code == 200
    text = text_of(response)
    for fact in (
        "Object detection models identify objects of certain defined classes in an image.",
        "facebook/detr-resnet-50: Solid object detection model pre-trained on the COCO 2017 "
        "dataset.",
        "Explore all models available for this task on Hugging Face here.",
    ):
        assert fact in text, fact
    body = response.content.decode()
    # The operators' Markdown, rendered: a link, not brackets; a heading under the h1's.
    assert 'href="https://huggingface.co/tasks/object-detection"' in body
    assert "](" not in text
    assert re.findall(r"<h(\d)", body.split("<main", 1)[1])[:2] == ["1", "2"]


def test_the_task_page_lists_the_tasks_published_models_and_only_those(client, seeded):
    ModelCard.objects.filter(slug="yolos-tiny").update(is_published=False)
    other = factories.card(task=factories.task(slug="image-classification"))
    body = client.get(TASK).content.decode()
    listed = re.findall(r'data-model-id="([^"]+)"', body)
    assert sorted(listed) == sorted(
        ["facebook/detr-resnet-50", "microsoft/conditional-detr-resnet-50", "PekingU/rtdetr_r50vd"]
    )
    assert other.model_id not in body


def test_each_model_links_its_task_and_the_sitemap_lists_it(client, seeded):
    link = f'href="{TASK}"'
    assert link in client.get("/models/facebook/detr-resnet-50").content.decode()
    assert link in client.get("/models").content.decode()  # on every card
    assert f"{TASK}</loc>" in client.get("/sitemap.xml").content.decode()


def test_an_unknown_task_is_the_sites_404(client, seeded):
    assert client.get("/tasks/nope").status_code == 404


def test_an_operators_edit_shows_at_once_and_script_never_runs(client, seeded):
    client.get(TASK)  # cached
    Task.objects.filter(slug="object-detection").update(description="x")  # no signal
    task = Task.objects.get(slug="object-detection")
    task.description = "Boxes <script>alert(1)</script> [x](javascript:alert(1))"
    task.save()
    body = client.get(TASK).content.decode()
    assert "Boxes" in body
    assert "<script>alert(1)" not in body and "javascript:" not in body


@pytest.mark.parametrize(
    ("top", "source", "expected"),
    [
        (3, "## Pricing\n\ntext\n\n### Routes", "<h3>Pricing</h3>\n<p>text</p>\n<h4>Routes</h4>"),
        (2, "### Recommended", "<h2>Recommended</h2>"),
        (3, "# One\n\n###### Deep", "<h3>One</h3>\n<h6>Deep</h6>"),  # never past h6
        (3, "no heading", "<p>no heading</p>"),
    ],
)
def test_operator_markdown_headings_start_under_the_sections_own(top, source, expected):
    from catalog.markdown import render_markdown

    assert render_markdown(source, top=top) == expected


def test_a_model_description_has_no_heading_beside_about_this_model(client, seeded):
    # DETR's description has "## Pricing" ...: each was an h2 beside "About this model"
    # (and "Pricing" twice on the page).
    body = client.get("/models/facebook/detr-resnet-50").content.decode()
    about = body[body.index('<section id="about"') :]
    about = about[: about.index("</section>")]
    assert re.findall(r"<h(\d)", about)[0] == "2"
    assert set(re.findall(r"<h(\d)", about)[1:]) == {"3"}
    assert len(re.findall(r"<h2[^>]*>\s*Pricing\s*</h2>", body)) == 1


@pytest.mark.parametrize(
    ("title", "dataset", "named"),
    [
        ("COCO 2017 val", "COCO val2017", True),
        ("Benchmark Results (COCO val2017)", "COCO val2017", True),
        ("Results", "COCO val2017", False),
        ("COCO test-dev", "COCO val2017", False),
        ("Anything", "", False),
    ],
)
def test_a_benchmark_heading_names_its_dataset_once(title, dataset, named):
    from catalog.templatetags.catalog_tags import mentions

    assert mentions(title, dataset) is named


def test_the_seeded_benchmark_headings_do_not_repeat_their_dataset(client, seeded):
    body = client.get("/models/PekingU/rtdetr_r50vd").content.decode()
    headings = re.findall(r'<div class="benchmark"[^>]*>\s*<h3>(.*?)</h3>', body, re.S)
    assert headings and all("<small" not in h for h in headings)
