"""The API snippets, copied from the pages and run unchanged, follow a 202 to the boxes
(session 49's outside probe).

A call that outlasts ``VITRINE_SYNC_WAIT`` answers 202 with the job resource. The model
page's Python, Node and browser snippets took it for the answer's list of boxes and crashed
(``TypeError: string indices must be integers``; Node: ``is not iterable``) while the job
ran on and was charged, and with no Idempotency-Key a retry paid twice. Here the wait is
1 s and no worker runs until every snippet has had its 202: each must then be polling the
job, not dead, and once a real worker has run the jobs it must print the job's detections
as the 200 answer would have held them. The try page's Python (static/playground/call.js)
runs the same way; curl prints the 202's job, its "url" to poll.

Each snippet runs as the page prints it, but for the browser snippet's key placeholder,
replaced by the key as its reader would, and, so that a random-weight model's low scores
leave boxes to print, the threshold: the Python body's (0.5) and the JavaScript URLs' query
string (none) become the worker's detection floor.
"""

from __future__ import annotations

import html
import json
import os
import subprocess
import sys
import time
import uuid
from decimal import Decimal

import pytest
import requests

from billing.services.keys import api_key_create
from billing.services.topups import credit_grant
from catalog.snippets import API_KEY_PLACEHOLDER
from playground.models import IdempotencyRecord, Job
from tests import factories
from tests.catalog.test_snippets import NODE, SNIPPET
from tests.conftest import wait_for
from tests.playground.test_api_call_panel_s49 import api_call
from tests.playground.test_flavour_clients import FLOOR, photo

pytestmark = [
    pytest.mark.worker,
    pytest.mark.skipif(NODE is None, reason="node is not installed"),
]
SYNC_WAIT = 1

# Runs a page's JavaScript snippet (module ``name``) as pasted: what it logs is collected
# and written out as JSON. For the browser snippet, a page whose file input holds cats.jpg.
HARNESS = """
import { readFile } from "node:fs/promises";
const printed = [];
console.log = (...args) => printed.push(args);
const file = new Blob([await readFile("cats.jpg")], { type: "image/jpeg" });
globalThis.document = {
  querySelector: (s) => (s === "input[type=file]" ? { files: [file] } : null),
};
await import("./NAME");
process.stdout.write(JSON.stringify(printed));
"""


def start(argv: list[str], *, cwd, key: str) -> subprocess.Popen:
    return subprocess.Popen(
        argv, cwd=cwd, env={**os.environ, "VITRINE_API_KEY": key},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def test_the_snippets_poll_a_202_to_the_detections(
    live_server, start_worker, runtime_checkpoint, settings, tmp_path, other_user
):
    settings.VITRINE_JOB_STORAGE = tmp_path / "jobs"
    settings.VITRINE_SYNC_WAIT = SYNC_WAIT
    card = factories.card(checkpoint_local_dir=str(runtime_checkpoint("yolos_tiny")))
    factories.route(card=card, price=Decimal("0.0002"))
    credit_grant(user=other_user, amount=Decimal("1"), reason="test")
    _, key = api_key_create(user=other_user, name="snippets")
    work = tmp_path / "reader"
    work.mkdir()
    (work / "cats.jpg").write_bytes(photo())

    page = requests.get(f"{live_server.url}/models/{card.model_id}", timeout=60).text
    snippets = {m["slug"]: html.unescape(m["code"]) for m in SNIPPET.finditer(page)}
    url = f"{live_server.url}/v1/inference/{card.model_id}"
    python = snippets["python"].replace('"threshold": 0.5', f'"threshold": {FLOOR}')
    assert python != snippets["python"]
    # The browser snippet's key is pasted in its placeholder's place, as its visitor does.
    snippets["javascript"] = snippets["javascript"].replace(API_KEY_PLACEHOLDER, key)
    for slug, name in (("node", "detect.mjs"), ("javascript", "browser.mjs")):
        assert f'"{url}"' in snippets[slug], slug
        (work / name).write_text(snippets[slug].replace(f'"{url}"', f'"{url}?threshold={FLOOR}"'))
        (work / f"run-{name}").write_text(HARNESS.replace("NAME", name))
    try_page = api_call(url=url, name="cats.jpg", type="image/jpeg", threshold=float(FLOOR))
    running = {
        "python": start([sys.executable, "-c", python], cwd=work, key=key),
        "node": start([NODE, "run-detect.mjs"], cwd=work, key=key),
        "javascript": start([NODE, "run-browser.mjs"], cwd=work, key=key),
        "try page python": start([sys.executable, "-c", try_page["python"]], cwd=work, key=key),
    }
    try:
        # curl prints the 202's job (the call's wait ran out: no worker yet), a line end after.
        curl = subprocess.run(
            ["bash", "-c", snippets["curl"]], cwd=work, env={**os.environ, "VITRINE_API_KEY": key},
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert curl.returncode == 0, (curl.stdout, curl.stderr)
        accepted = json.loads(curl.stdout)
        assert curl.stdout.endswith("}\n")
        assert accepted["status"] == "queued"
        assert accepted["url"] == f"{live_server.url}/v1/jobs/{accepted['id']}"

        # Every call has had its 202 (its job is made and its 1 s wait is over): each snippet
        # is polling its job, none crashed on the 202.
        def ended() -> dict:
            return {
                slug: (proc.returncode, *proc.communicate())
                for slug, proc in running.items()
                if proc.poll() is not None
            }

        wait_for(lambda: Job.objects.count() == 5 or ended(), timeout=60)
        time.sleep(SYNC_WAIT + 1.5)
        assert ended() == {}
        assert Job.objects.count() == 5
        assert set(Job.objects.values_list("status", flat=True)) == {"queued"}

        worker = start_worker(env_extra={"VITRINE_DETECTION_FLOOR": FLOOR})
        results = {}
        for slug, proc in running.items():
            out, err = proc.communicate(timeout=300)
            results[slug] = (proc.returncode, out, err)
    finally:
        for proc in running.values():
            if proc.poll() is None:
                proc.kill()
    assert {slug: code for slug, (code, _, _) in results.items()} == dict.fromkeys(running, 0), (
        results, worker.output(),
    )  # fmt: skip

    # What each printed is the job's detections, as the 200 answer would have held them.
    jobs = Job.objects.exclude(pk=accepted["id"])
    assert set(jobs.values_list("status", flat=True)) == {"succeeded"}
    resource = requests.get(
        f"{live_server.url}/v1/jobs/{jobs[0].pk}",
        headers={"Authorization": f"Bearer {key}"},
        timeout=60,
    ).json()
    detections = resource["detections"]
    assert detections and resource["threshold"] == float(FLOOR)
    lines = "".join(
        f"{d['label']} {round(d['score'], 3)} {d['box']}\n" for d in detections
    )  # as the Python snippets print them
    assert results["python"][1] == lines
    assert results["try page python"][1] == lines
    assert json.loads(results["node"][1]) == [
        [d["label"], f"{d['score']:.3f}", d["box"]] for d in detections
    ]
    assert json.loads(results["javascript"][1]) == [[detections]]
    # Each call sent its own Idempotency-Key (curl none): a retry with it pays once.
    keys = list(IdempotencyRecord.objects.values_list("key", flat=True))
    assert len(keys) == len(set(keys)) == 4
    assert all(str(uuid.UUID(k)) == k for k in keys)
