"""The README's API examples, run as a reader would paste them, against the live test server
with a real worker and a random-weight DETR named facebook/detr-resnet-50.

A fenced block right after a ``<!-- example: run -->`` line is an example that must run.
Four substitutions make it point here (the README says which): the site's placeholder URL
and ``$SITE``, the key in ``$VITRINE_API_KEY``, ``cats.jpg`` in the working directory and
the webhook placeholder, which becomes a receiver on loopback. A Python block must exit 0
(requests' ``raise_for_status`` and the SDKs raise on an error answer); a shell block must
exit 0 and print a JSON answer that is not an error. A block that calls the API without the
marker fails the suite, so a new example cannot skip being run. The model page's snippets
(curl, requests, huggingface_hub, the cloudflare SDK, Node) run in the same test, through
the same worker, with the funded key.
"""

from __future__ import annotations

import html
import http.server
import json
import os
import re
import subprocess
import sys
import threading
from decimal import Decimal
from pathlib import Path

import pytest
import requests
from django.conf import settings as django_settings

from billing.models import Charge
from billing.services.keys import api_key_create
from billing.services.ledger import wallet_for
from billing.services.topups import credit_grant
from playground.models import Job
from tests import factories
from tests.catalog.test_snippets import NODE, SNIPPET, run_snippet
from tests.conftest import wait_for
from tests.playground.test_api_jobs_live import Receiver
from tests.playground.test_flavour_clients import FLOOR, photo

README = Path(django_settings.BASE_DIR) / "README.md"
MARKER = "<!-- example: run -->"
FENCE = re.compile(r"^(?P<marker>[^\n]*)\n```(?P<lang>[a-z]*)\n(?P<code>.*?)^```$", re.M | re.S)
PLACEHOLDER_SITE = "https://vitrine.example"
PLACEHOLDER_WEBHOOK = "https://example.com/hooks/vitrine"
# What makes a block an API example: a URL on the site, or the API key.
CALLS_THE_API = (PLACEHOLDER_SITE + "/", "$SITE/", "VITRINE_API_KEY")
PRICE = Decimal("0.0002")
MODEL = "facebook/detr-resnet-50"


def readme_blocks() -> list[dict]:
    """Every fenced block of the README: its language, code, and whether it is marked."""
    return [
        {"lang": m["lang"], "code": m["code"], "run": m["marker"].strip() == MARKER}
        for m in FENCE.finditer(README.read_text())
    ]


def examples() -> list[dict]:
    return [block for block in readme_blocks() if block["run"]]


def test_every_api_example_in_the_readme_is_marked_to_run():
    unmarked = [
        block["code"][:80]
        for block in readme_blocks()
        if not block["run"] and any(token in block["code"] for token in CALLS_THE_API)
    ]
    assert unmarked == []


def test_the_readme_shows_each_flavour_and_client():
    """One copy-paste example at least per flavour and per official client."""
    code = "\n".join(block["code"] for block in examples())
    for needle in (
        "/v1/inference/",
        "/v1/detections/",
        "/hf/models/",
        "/client/v4",
        "from huggingface_hub import InferenceClient",
        "from cloudflare import Cloudflare",
        "from openai import OpenAI",
        "import requests",
        "curl ",
    ):
        assert needle in code, needle
    assert {block["lang"] for block in examples()} <= {"bash", "sh", "python"}


def test_the_marker_parser_sees_what_a_reader_sees():
    text = f"intro\n{MARKER}\n```bash\ncurl {PLACEHOLDER_SITE}/v1\n```\n\n```python\nx = 1\n```\n"
    found = [(m["lang"], m["code"], m["marker"].strip() == MARKER) for m in FENCE.finditer(text)]
    assert found == [("bash", f"curl {PLACEHOLDER_SITE}/v1\n", True), ("python", "x = 1\n", False)]


@pytest.fixture
def receiver(settings):
    settings.VITRINE_WEBHOOK_ALLOW_HOSTS = ["127.0.0.1"]  # tests only
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    server.hits, server.statuses, server.lock = [], [], threading.Lock()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    server.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/vitrine"
    yield server
    server.shutdown()
    server.server_close()


def run_example(block: dict, *, site: str, key: str, webhook: str, cwd: Path):
    code = block["code"].replace(PLACEHOLDER_SITE, site).replace(PLACEHOLDER_WEBHOOK, webhook)
    env = {**os.environ, "VITRINE_API_KEY": key, "SITE": site, "HF_HUB_DISABLE_TELEMETRY": "1"}
    argv = [sys.executable, "-c", code] if block["lang"] == "python" else ["bash", "-c", code]
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)


def assert_json_answer(stdout: str) -> dict | list:
    answer = json.loads(stdout)
    if isinstance(answer, dict):
        # Vitrine's job resource has "error": null; an error answer has an object there.
        assert answer.get("error") is None and answer.get("success") is not False, answer
    return answer


@pytest.mark.worker
def test_each_readme_example_runs_against_the_live_server(
    live_server, start_worker, runtime_checkpoint, receiver, settings, tmp_path, other_user
):
    settings.VITRINE_JOB_STORAGE = tmp_path / "jobs"
    # Long bounds: every call is answered on its job's finished signal, whatever the speed.
    settings.VITRINE_SYNC_WAIT = 600
    settings.VITRINE_HF_WAIT = 600
    settings.VITRINE_HF_WAIT_FOR_MODEL = 600
    card = factories.card(
        organisation=factories.organisation(slug="facebook"),
        slug="detr-resnet-50",
        checkpoint_local_dir=str(runtime_checkpoint("detr")),
    )
    factories.route(card=card, price=PRICE)
    credit_grant(user=other_user, amount=Decimal("1.00"), reason="test")
    _, key = api_key_create(user=other_user, name="readme")
    worker = start_worker(
        env_extra={
            "VITRINE_DETECTION_FLOOR": FLOOR,
            "VITRINE_WEBHOOK_ALLOW_HOSTS": "127.0.0.1",
            "VITRINE_WEBHOOK_RETRY_BASE": "1",
        }
    )
    work = tmp_path / "reader"
    work.mkdir()
    (work / "cats.jpg").write_bytes(photo())

    ran = []
    for block in examples():
        result = run_example(block, site=live_server.url, key=key, webhook=receiver.url, cwd=work)
        context = (block["code"], result.stdout, result.stderr, worker.output())
        assert result.returncode == 0, context
        if block["lang"] != "python":
            assert_json_answer(result.stdout)
        ran.append(block["code"])

    assert len(ran) >= 8
    # The model page's snippets too, as the live server prints them, with the funded key
    # (tests/catalog/test_snippets.py runs them with an empty wallet: the 402).
    page = requests.get(f"{live_server.url}/models/{MODEL}", timeout=60).text
    snippets = {m["slug"]: (m["lang"], html.unescape(m["code"])) for m in SNIPPET.finditer(page)}
    runnable = ["curl", "python", "huggingface_hub", "cloudflare_sdk"] + (["node"] if NODE else [])
    for slug in runnable:
        language, code = snippets[slug]
        result = run_snippet(language, code, cwd=work, key=key)
        assert result.returncode == 0, (slug, result.stdout, result.stderr, worker.output())
        if slug == "curl":
            assert_json_answer(result.stdout)
    # Every paid example went through the worker and was charged; none failed.
    statuses = list(Job.objects.values_list("status", flat=True))
    assert "failed" not in statuses and "cancelled" not in statuses, worker.output()
    wait_for(
        lambda: set(Job.objects.values_list("status", flat=True)) == {"succeeded"},
        timeout=600,
        message="the async example's job did not finish",
    )
    jobs = Job.objects.count()
    # /hf/'s curl repeats its Python call (answered from the cache), the rest each ran a job.
    assert jobs >= 5 + len(runnable) - 1, statuses
    assert Charge.objects.filter(status="posted").count() == jobs
    assert wallet_for(other_user).balance == Decimal("1.00") - jobs * PRICE
    # The async example's webhook was delivered, signed.
    wait_for(lambda: len(receiver.hits) == 1, timeout=300, interval=0.5)
    assert receiver.hits[0]["headers"]["Vitrine-Signature"].startswith("t=")
    assert json.loads(receiver.hits[0]["body"])["model"] == MODEL
