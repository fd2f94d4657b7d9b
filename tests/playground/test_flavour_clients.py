"""The official clients, unchanged, against the live server, a real worker and a
random-weight DETR: huggingface_hub's InferenceClient and Cloudflare's SDK."""

from __future__ import annotations

import io
from decimal import Decimal

import jsonschema
import numpy as np
import pytest
import requests
from PIL import Image

from billing.models import Charge
from billing.services.keys import api_key_create
from billing.services.ledger import wallet_for
from billing.services.topups import credit_grant
from catalog.seed import CLOUDFLARE_INPUT_SCHEMA, CLOUDFLARE_OUTPUT_SCHEMA, HF_OUTPUT_SCHEMA
from playground.models import Job
from tests import factories

pytestmark = pytest.mark.worker
PRICE = Decimal("0.0002")
# Random weights score every class near 1/num_labels: a low floor and threshold keep boxes.
FLOOR = "0.002"
THRESHOLD = 0.003
MODEL = "facebook/detr-resnet-50"


def photo(width=320, height=240) -> bytes:
    image = Image.new("RGB", (width, height), (40, 120, 200))
    image.paste((230, 200, 40), (width // 5, height // 5, width // 2, height // 2))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def big_photo() -> bytes:
    """A PNG over 5 MB (noise does not compress): base64 of it is far over Django's 2.5 MB."""
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (1400, 1400, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    data = buffer.getvalue()
    assert len(data) > 5_000_000
    return data


def run_page_snippet(slug: str, live: dict, tmp_path, monkeypatch) -> str:
    """Execute the model page's snippet ``slug`` as a visitor would copy it: cats.jpg in the
    working directory, the key in VITRINE_API_KEY. Returns what it printed."""
    import contextlib

    from catalog.snippets import detection_snippets

    (snippet,) = [
        s for s in detection_snippets(site_url=live["url"], model_id=MODEL) if s.slug == slug
    ]
    (tmp_path / "cats.jpg").write_bytes(photo())
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("VITRINE_API_KEY", live["key"])
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(snippet.code, f"<snippet {slug}>", "exec"), {})
    return out.getvalue()


@pytest.fixture
def live(live_server, start_worker, runtime_checkpoint, settings, tmp_path, other_user):
    """The live server, a worker on a random-weight DETR named facebook/detr-resnet-50, and
    a funded API key. Waits are long: no assertion depends on this machine's speed."""
    settings.VITRINE_JOB_STORAGE = tmp_path / "jobs"
    settings.VITRINE_HF_WAIT = 240
    settings.VITRINE_HF_WAIT_FOR_MODEL = 300
    checkpoint = runtime_checkpoint("detr")
    card = factories.card(
        organisation=factories.organisation(slug="facebook"),
        slug="detr-resnet-50",
        checkpoint_local_dir=str(checkpoint),
    )
    factories.route(card=card, price=PRICE)
    credit_grant(user=other_user, amount=Decimal("1.00"), reason="test")
    _, key = api_key_create(user=other_user, name="clients")
    worker = start_worker(env_extra={"VITRINE_DETECTION_FLOOR": FLOOR})
    return {"url": live_server.url, "key": key, "user": other_user, "worker": worker}


def _boxes_are_integer_pixels(raw: list[dict], width: int, height: int) -> None:
    assert raw, "random weights at this threshold give detections"
    for d in raw:
        assert set(d) == {"label", "score", "box"}
        assert all(type(d["box"][k]) is int for k in ("xmin", "ymin", "xmax", "ymax"))
        assert 0 <= d["box"]["xmin"] <= d["box"]["xmax"] <= width


def test_huggingface_client_both_url_forms_cache_cold_model_and_a_5mb_photo(
    live, tmp_path, settings, monkeypatch
):
    from huggingface_hub import InferenceClient
    from huggingface_hub.errors import HfHubHTTPError

    path = tmp_path / "photo.jpg"
    path.write_bytes(photo())
    hf_url = f"{live['url']}/hf/models/{MODEL}"

    # Cold model, default x-wait-for-model: false, and a load estimate over the bound: 503
    # with estimated_time + Retry-After, nothing queued or charged.
    settings.VITRINE_MODEL_LOAD_ESTIMATE = 10_000
    with pytest.raises(HfHubHTTPError) as caught:
        InferenceClient(model=hf_url, token=live["key"], timeout=600).object_detection(path)
    assert caught.value.response.status_code == 503
    assert caught.value.response.json()["estimated_time"] >= 10_000
    assert int(caught.value.response.headers["Retry-After"]) >= 10_000
    assert Job.objects.count() == 0

    # x-wait-for-model: true waits for the cold model.
    waiting = InferenceClient(
        model=hf_url, token=live["key"], timeout=600, headers={"x-wait-for-model": "true"}
    )
    first = waiting.object_detection(path, threshold=THRESHOLD)
    assert first and all(isinstance(d.box.xmin, int) for d in first), live["worker"].output()
    assert Job.objects.count() == 1
    assert wallet_for(live["user"]).balance == Decimal("1.00") - PRICE

    # The identical call through /v1/inference (huggingface_hub's User-Agent picks the HF
    # flavour there): the stored result, nothing run or charged again.
    v1 = InferenceClient(model=f"{live['url']}/v1/inference/{MODEL}", token=live["key"])
    assert v1.object_detection(path, threshold=THRESHOLD) == first
    assert Job.objects.count() == 1
    assert wallet_for(live["user"]).balance == Decimal("1.00") - PRICE

    # Raw, as curl would send it: the exact HF list shape with integer pixels, and the
    # cache marked in a header.
    raw = requests.post(
        hf_url, json={"inputs": __import__("base64").b64encode(photo()).decode(),
                      "parameters": {"threshold": THRESHOLD}},
        headers={"Authorization": f"Bearer {live['key']}"}, timeout=600,
    )  # fmt: skip
    assert raw.status_code == 200 and raw.headers["X-Vitrine-Cache"] == "hit"
    jsonschema.validate(raw.json(), HF_OUTPUT_SCHEMA)  # seed 003's output, integer pixels
    assert raw.headers["X-Vitrine-Cost"] == "0"
    _boxes_are_integer_pixels(raw.json(), 320, 240)

    # x-use-cache: false runs anew (and is charged); base_url= is model='s alias.
    settings.VITRINE_MODEL_LOAD_ESTIMATE = 20
    fresh = InferenceClient(
        base_url=hf_url, api_key=live["key"], timeout=600, headers={"x-use-cache": "false"}
    )
    assert fresh.object_detection(path, threshold=THRESHOLD) == first  # the same detector
    assert Job.objects.count() == 2
    assert wallet_for(live["user"]).balance == Decimal("1.00") - 2 * PRICE

    # Without threshold= the client sends raw bytes; HF's default threshold is 0.5.
    assert isinstance(
        InferenceClient(base_url=hf_url, api_key=live["key"]).object_detection(path), list
    )

    # A photo over 5 MB with threshold= travels as base64 JSON (~7 MB).
    big = tmp_path / "big.png"
    big.write_bytes(big_photo())
    out = InferenceClient(model=hf_url, token=live["key"], timeout=600).object_detection(
        big, threshold=THRESHOLD
    )
    assert out and all(0 <= d.box.xmax <= 1400 for d in out)

    # base_url="<site>/v1" names no model: a clear 404, not a 500 or a 301 dropping the body.
    with pytest.raises(HfHubHTTPError) as caught:
        InferenceClient(base_url=f"{live['url']}/v1", api_key=live["key"]).object_detection(path)
    assert caught.value.response.status_code == 404
    assert "/hf/models/<org>/<name>" in caught.value.response.json()["error"]

    # The model page's huggingface_hub snippet runs as printed.
    run_page_snippet("huggingface_hub", live, tmp_path, monkeypatch)


def test_cloudflare_sdk_runs_the_model_and_reads_our_errors(live, tmp_path, monkeypatch):
    import cloudflare
    from cloudflare import Cloudflare

    image = photo()
    sdk = Cloudflare(
        api_token=live["key"], base_url=f"{live['url']}/client/v4", max_retries=0, timeout=600
    )
    result = sdk.ai.run(
        f"@cf/{MODEL}", account_id="any-account", image=list(image),
        extra_query={"threshold": THRESHOLD},
    )  # fmt: skip
    assert isinstance(result, list) and result, live["worker"].output()
    result = [item.model_dump() for item in result]  # the SDK's own ObjectDetection models
    assert all(0 <= d["box"]["xmin"] <= d["box"]["xmax"] <= 320 for d in result)

    # Seed 001's curl: raw bytes to the unencoded path; Cloudflare's envelope, same boxes.
    raw = requests.post(
        f"{live['url']}/client/v4/accounts/x/ai/run/@cf/{MODEL}?threshold={THRESHOLD}",
        data=image, headers={"Authorization": f"Bearer {live['key']}",
                             "Idempotency-Key": "cf-1"}, timeout=600,
    )  # fmt: skip
    body = raw.json()
    assert (raw.status_code, body["success"], body["errors"], body["messages"]) == (
        200, True, [], [],
    )  # fmt: skip
    assert body["result"] == result
    _boxes_are_integer_pixels(body["result"], 320, 240)
    # Seed 001's schemas, shown on the model page, hold for this endpoint.
    jsonschema.validate(body["result"], CLOUDFLARE_OUTPUT_SCHEMA)
    jsonschema.validate({"image": list(image)}, CLOUDFLARE_INPUT_SCHEMA)
    # A retry with the same Idempotency-Key: the same job, no second charge.
    jobs = Job.objects.count()
    again = requests.post(
        f"{live['url']}/client/v4/accounts/x/ai/run/@cf/{MODEL}?threshold={THRESHOLD}",
        data=image, headers={"Authorization": f"Bearer {live['key']}",
                             "Idempotency-Key": "cf-1"}, timeout=600,
    )  # fmt: skip
    assert (
        again.json() == body
        and again.headers["X-Vitrine-Job-Id"] == raw.headers["X-Vitrine-Job-Id"]
    )
    # Marked as a replay (Stripe's header), which the first answer was not.
    assert again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in raw.headers
    assert Job.objects.count() == jobs
    assert Charge.objects.filter(status="posted").count() == jobs == 2

    # Errors: the SDK raises its own exception types from our envelope.
    with pytest.raises(cloudflare.NotFoundError) as caught:
        sdk.ai.run("@cf/acme/nope", account_id="x", image=list(image))
    assert caught.value.body["errors"][0]["code"] == 5007
    bad = Cloudflare(api_token="vt_0000_nope", base_url=f"{live['url']}/client/v4", max_retries=0)
    with pytest.raises(cloudflare.AuthenticationError):
        bad.ai.run(f"@cf/{MODEL}", account_id="x", image=list(image))
    with pytest.raises(cloudflare.BadRequestError):
        sdk.ai.run(f"@cf/{MODEL}", account_id="x", image=[300, -1])

    # The model page's cloudflare SDK snippet runs as printed (threshold 0.5: maybe no box).
    jobs = Job.objects.count()
    run_page_snippet("cloudflare_sdk", live, tmp_path, monkeypatch)
    assert Job.objects.count() == jobs + 1


def test_a_queued_job_past_the_wait_is_cancelled_and_costs_nothing(
    live_server, start_worker, settings, tmp_path, other_user
):
    """No worker runs: the HF and Cloudflare flavours answer 503 + Retry-After at the bound
    instead of a 202, and release the money they held."""
    settings.VITRINE_JOB_STORAGE = tmp_path / "jobs"
    settings.VITRINE_HF_WAIT = 2
    settings.VITRINE_MODEL_LOAD_ESTIMATE = 0
    card = factories.card(organisation=factories.organisation(slug="facebook"))
    factories.route(card=card, price=PRICE)
    credit_grant(user=other_user, amount=Decimal("1.00"), reason="test")
    _, key = api_key_create(user=other_user, name="clients")
    headers = {"Authorization": f"Bearer {key}"}
    for path in (
        f"/hf/models/{card.model_id}",
        f"/client/v4/accounts/a/ai/run/@cf/{card.model_id}",
    ):
        response = requests.post(live_server.url + path, data=photo(), headers=headers, timeout=60)
        assert response.status_code == 503, response.content
        assert int(response.headers["Retry-After"]) >= 1
        assert response.headers["X-Vitrine-Error-Code"] == "model_loading"
    assert set(Job.objects.values_list("status", flat=True)) == {"cancelled"}
    assert set(Charge.objects.values_list("status", flat=True)) == {"voided"}
    assert wallet_for(other_user).balance == Decimal("1.00")


def test_both_clients_through_uvicorn(
    start_worker, runtime_checkpoint, broker_url, settings, tmp_path, other_user
):
    """Production's server: uvicorn (ASGI), where a waiting call holds no thread."""
    import os
    import subprocess
    import sys

    from cloudflare import Cloudflare
    from django.db import connection
    from huggingface_hub import InferenceClient

    from config.settings.env import redis_client_url
    from tests.conftest import REPO, database_url, free_port, wait_for

    settings.VITRINE_JOB_STORAGE = tmp_path / "jobs"
    card = factories.card(
        organisation=factories.organisation(slug="facebook"),
        slug="detr-resnet-50",
        checkpoint_local_dir=str(runtime_checkpoint("detr")),
    )
    factories.route(card=card, price=PRICE)
    credit_grant(user=other_user, amount=Decimal("1.00"), reason="test")
    _, key = api_key_create(user=other_user, name="uvicorn")
    worker = start_worker(env_extra={"VITRINE_DETECTION_FLOOR": FLOOR})
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url(connection.settings_dict),
        "CELERY_BROKER_URL": broker_url,
        "VITRINE_REDIS_URL": redis_client_url(broker_url),
        "VITRINE_LIMITS_REDIS_URL": "",
        "VITRINE_JOB_STORAGE": str(tmp_path / "jobs"),
        "VITRINE_HF_WAIT": "240",
        "VITRINE_SIGNUP_CREDIT": "0",
    }
    argv = [sys.executable, "-m", "uvicorn", "config.asgi:application", "--host", "127.0.0.1"]
    with (tmp_path / "web.log").open("wb") as log:
        web = subprocess.Popen(
            [*argv, "--port", str(port)], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _up(base), timeout=120, message="uvicorn did not start")
        path = tmp_path / "photo.jpg"
        path.write_bytes(photo())
        hf = InferenceClient(model=f"{base}/hf/models/{MODEL}", token=key, timeout=600)
        found = hf.object_detection(path, threshold=THRESHOLD)
        assert found, worker.output() + (tmp_path / "web.log").read_text()
        sdk = Cloudflare(api_token=key, base_url=f"{base}/client/v4", max_retries=0, timeout=600)
        result = sdk.ai.run(
            f"@cf/{MODEL}", account_id="x", image=list(photo()),
            extra_query={"threshold": THRESHOLD},
        )  # fmt: skip
        assert [r.model_dump() for r in result] == [d.__dict__ | {"box": d.box.__dict__}
                                                   for d in found]  # fmt: skip
    finally:
        web.terminate()
        web.wait(timeout=30)


def _up(base: str) -> bool:
    try:
        return requests.get(f"{base}/healthz", timeout=5).status_code == 200
    except requests.RequestException:
        return False
