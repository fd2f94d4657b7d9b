"""The OpenAPI schema holds against the live server: schemathesis generates requests for
every operation in /v1/openapi.json (bodies of each declared media type, parameters,
headers, valid and invalid) and sends them over real HTTP with a funded API key; every
answer must be a declared status, no 5xx, with a body (and headers) matching its schema.

No worker runs: jobs the calls queue stay queued and ``VITRINE_SYNC_WAIT = 0`` makes the
call answer 202 with the job at once (the answer that a call waiting on a busy queue gets).
"""

from __future__ import annotations

import base64
import itertools
import os

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from billing.services.keys import api_key_create
from config.settings.env import redis_client_url
from tests import factories
from tests.conftest import _reset_producer_pool
from tests.playground.test_job_worker import FLOOR, photo

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
# Its only input is a free-form string in the path: schemathesis has no invalid value of it
# to generate (hypothesis reports Unsatisfiable); the positive cases cover it.
NOTHING_INVALID = {"GET /v1/models/{model_id}"}
# Per operation and mode: enough to reach each body type and parameter, few enough to stay
# quick. VITRINE_SCHEMATHESIS_EXAMPLES=500 digs deeper by hand.
MAX_EXAMPLES = int(os.environ.get("VITRINE_SCHEMATHESIS_EXAMPLES", "25"))


@pytest.fixture
def api(transactional_db, live_server, settings, tmp_path, other_user, broker_url):
    from config.celery import app

    # The real broker (jobs are enqueued there), with no worker consuming it.
    _reset_producer_pool(app)
    app.conf.broker_url = broker_url
    settings.CELERY_BROKER_URL = broker_url
    settings.VITRINE_REDIS_URL = redis_client_url(broker_url)
    settings.VITRINE_JOB_STORAGE = tmp_path / "jobs"
    settings.VITRINE_SYNC_WAIT = 0  # no worker: a queued job answers 202 at once
    # Generated calls come fast; the limits are tested elsewhere (429 stays declared).
    settings.VITRINE_API_RATE_PER_MINUTE = 100_000
    settings.VITRINE_ACCOUNT_RATE_PER_MINUTE = 100_000
    settings.VITRINE_API_READ_RATE_PER_MINUTE = 100_000
    card = factories.card()
    factories.route(card=card)
    factories.funded(other_user, "100")
    _, key = api_key_create(user=other_user, name="schemathesis")
    headers = {"Authorization": f"Bearer {key}"}
    # A queued job (no worker takes it) for /v1/jobs/<id> to find and cancel.
    queued = requests.post(
        f"{live_server.url}/v1/detections/{card.model_id}",
        data=photo(),
        headers={**headers, "Content-Type": "image/jpeg", "Prefer": "respond-async"},
        timeout=60,
    )
    assert queued.status_code == 202, queued.text
    schema_body = requests.get(f"{live_server.url}/v1/openapi.json", timeout=60).json()
    return live_server.url, headers, card.model_id, queued.json()["id"], schema_body


def _operations(schema_body: dict):
    schema = schemathesis.openapi.from_dict(schema_body)
    for result in schema.get_all_operations():
        yield result.ok()


def test_every_operation_answers_as_its_schema_says(api):
    base_url, headers, model_id, job_id, schema_body = api
    image = photo()
    real_values = st.sampled_from(["generated", "real"])
    operations = list(_operations(schema_body))
    assert {f"{op.method.upper()} {op.path}" for op in operations} >= {
        "POST /v1/inference/{model_id}",
        "POST /v1/detections/{model_id}",
        "GET /v1/jobs/{job_id}",
        "DELETE /v1/jobs/{job_id}",
        "GET /v1/models",
        "GET /v1/models/{model_id}",
    }
    seen: dict[str, set[int]] = {}
    for operation, mode in itertools.product(operations, list(schemathesis.GenerationMode)):

        @given(case=operation.as_strategy(mode), which=real_values, real_image=st.booleans())
        @settings(
            max_examples=MAX_EXAMPLES,
            derandomize=True,
            database=None,
            deadline=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        def run(case, which, real_image):
            # Half the cases name things that exist, so the calls reach past the 404s.
            if which == "real" and case.path_parameters:
                if "model_id" in case.path_parameters:
                    case.path_parameters["model_id"] = model_id
                if "job_id" in case.path_parameters:
                    case.path_parameters["job_id"] = job_id
                if real_image and case.method == "POST" and case.media_type:
                    if case.media_type == "application/json" and isinstance(case.body, dict):
                        case.body["inputs"] = base64.b64encode(image).decode()
                    elif case.media_type == "multipart/form-data" and isinstance(case.body, dict):
                        case.body["image"] = image
                    elif not case.media_type.startswith(("application/json", "multipart")):
                        case.body = image
            response = case.call_and_validate(
                base_url=base_url, headers=headers, checks=CHECKS, timeout=60
            )
            seen.setdefault(f"{case.method} {case.operation.path}", set()).add(response.status_code)

        if mode == schemathesis.GenerationMode.NEGATIVE and (
            f"{operation.method.upper()} {operation.path}" in NOTHING_INVALID
        ):
            continue
        run()
    # The calls reached past authentication and lookups: jobs were queued, found, cancelled.
    posted = seen["POST /v1/detections/{model_id}"] | seen["POST /v1/inference/{model_id}"]
    assert 202 in posted, seen
    assert 200 in seen["GET /v1/jobs/{job_id}"], seen
    assert 200 in seen["DELETE /v1/jobs/{job_id}"], seen


@pytest.mark.worker
def test_finished_jobs_answer_as_the_schema_says(
    start_worker, live_server, settings, tmp_path, other_user, runtime_checkpoint
):
    """The answers a worker makes possible (the Hugging Face list on 200, the finished
    DetectionJob, the quote) sent through schemathesis's own checks, with a real worker
    and random-weight checkpoint."""
    settings.VITRINE_JOB_STORAGE = tmp_path / "jobs"
    settings.VITRINE_SYNC_WAIT = 600  # answered on the finished signal, not after the wait
    checkpoint = runtime_checkpoint("yolos_tiny")
    card = factories.card(checkpoint_local_dir=str(checkpoint), checkpoint_revision="rev-test-1")
    factories.route(card=card)
    factories.funded(other_user, "100")
    _, key = api_key_create(user=other_user, name="schemathesis")
    headers = {"Authorization": f"Bearer {key}"}
    start_worker(env_extra={"VITRINE_DETECTION_FLOOR": FLOOR})
    schema = schemathesis.openapi.from_dict(
        requests.get(f"{live_server.url}/v1/openapi.json", timeout=60).json()
    )
    image = photo()
    calls = [
        ("/v1/inference/{model_id}", "image/jpeg", image, {"threshold": "0"}),
        ("/v1/detections/{model_id}", "application/octet-stream", image, {"threshold": "0"}),
        ("/v1/inference/{model_id}", "multipart/form-data", {"image": image}, {}),
        ("/v1/detections/{model_id}", "image/jpeg", image, {"dry_run": "true"}),
        (
            "/v1/inference/{model_id}",
            "application/json",
            {"inputs": b64(image), "parameters": {"threshold": 0}},
            {},
        ),
    ]
    answers = []
    for path, media_type, body, query in calls:
        case = schema[path]["POST"].Case(
            path_parameters={"model_id": card.model_id},
            media_type=media_type,
            body=body,
            query=query,
        )
        response = case.call_and_validate(
            base_url=live_server.url, headers=headers, checks=CHECKS, timeout=600
        )
        assert response.status_code == 200, response.text
        answers.append(response.json())
    hf_list, job, *_ = answers
    assert isinstance(hf_list, list) and hf_list, "threshold 0: every box over the floor"
    assert job["status"] == "succeeded" and job["detections"]
    assert answers[3]["object"] == "quote"
    case = schema["/v1/jobs/{job_id}"]["GET"].Case(path_parameters={"job_id": job["id"]})
    case.call_and_validate(base_url=live_server.url, headers=headers, checks=CHECKS, timeout=60)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
