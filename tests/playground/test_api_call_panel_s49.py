"""The try page's "API call" panel shows the call for the user's own file, under its own
name (session 49's outside probe).

The panel renamed the file: "my cats (1).png" became ``my_cats_1_.png`` in the curl and
Python it showed, so, run next to the real file, curl posted an empty body (``400
missing_image``, exit 0) and Python raised FileNotFoundError. The panel's text comes from
``static/playground/call.js``, imported here in Node as playground.js imports it; its curl
and Python then run for real, next to a file whose name has spaces, parentheses, quotes and
shell metacharacters, against the live server with a key whose wallet is empty: the API
answers ``402 insufficient_credits`` only after it took the key, the model and the image.
"""

from __future__ import annotations

import ast
import io
import json
import os
import shutil
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from PIL import Image

from billing.services.keys import api_key_create
from billing.services.ledger import INSUFFICIENT_CREDITS
from tests import factories

NODE = shutil.which("node")
CALL_JS = Path(django_settings.BASE_DIR) / "static" / "playground" / "call.js"
# Spaces, parentheses, both quotes, $, a backquote and a backslash: each means something to
# a shell or to Python's string syntax.
ODD_NAME = 'my cats (1) it\'s "$HOME" `x` a\\b.png'

pytestmark = pytest.mark.skipif(
    NODE is None or not shutil.which("curl"), reason="needs node and curl"
)


def api_call(*, url: str, name: str, type: str = "image/png", threshold: float = 0.5) -> dict:
    """{"curl": ..., "python": ...} as the panel shows them (call.js's apiCall, in Node)."""
    values = {"url": url, "name": name, "type": type, "threshold": threshold}
    script = (
        f"import {{ apiCall }} from {json.dumps(CALL_JS.as_uri())};\n"
        f"process.stdout.write(JSON.stringify(apiCall({json.dumps(values)})));\n"
    )
    result = subprocess.run(
        [NODE, "--input-type=module", "-e", script], capture_output=True, text=True, check=True
    )
    return json.loads(result.stdout)


def run(language: str, code: str, *, cwd: Path, key: str) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-c", code] if language == "python" else ["bash", "-c", code]
    return subprocess.run(
        argv, cwd=cwd, env={**os.environ, "VITRINE_API_KEY": key},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (30, 140, 220)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.parametrize(
    "name", ["street.jpg", "my cats (1).png", "it's.png", ODD_NAME, "-dash.png", "ünïcode é.png"]
)
def test_the_panel_quotes_the_file_name_for_each_language(name, tmp_path):
    call = api_call(url="http://x/v1/inference/a/b", name=name)
    # The shell reads back the very name (printf, in place of curl's @file argument).
    line = next(line for line in call["curl"].splitlines() if "--data-binary @" in line)
    argument = line.split("--data-binary ", 1)[1].split(" --fail-with-body")[0]
    echoed = subprocess.run(
        ["bash", "-c", f"printf %s {argument}"], capture_output=True, text=True, check=True
    )
    assert echoed.stdout == f"@{name}"
    assert subprocess.run(["bash", "-n"], input=call["curl"], text=True).returncode == 0
    # Python's open() gets the very name.
    opened = next(
        node for node in ast.walk(ast.parse(call["python"]))
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "open"
    )  # fmt: skip
    assert opened.args[0].value == name
    # A plain name stays as it is, as the README's examples write it.
    if name == "street.jpg":
        assert "--data-binary @street.jpg " in call["curl"]


@pytest.fixture
def empty_wallet(transactional_db, live_server, settings, tmp_path):
    settings.VITRINE_JOB_STORAGE = tmp_path / "jobs"
    card = factories.card()
    factories.route(card=card, price=Decimal("0.0002"))
    _, key = api_key_create(user=factories.user(), name="panel")
    return f"{live_server.url}/v1/inference/{card.model_id}", key


def test_the_panels_calls_run_next_to_a_file_with_an_odd_name(empty_wallet, tmp_path):
    url, key = empty_wallet
    call = api_call(url=url, name=ODD_NAME, threshold=0.25)
    (tmp_path / ODD_NAME).write_bytes(png())
    refused = INSUFFICIENT_CREDITS.format(balance="$0", cost="$0.0002")

    # The API took the image both sent (402 comes after it is read), not an empty body.
    curl = run("bash", call["curl"], cwd=tmp_path, key=key)
    body = json.loads(curl.stdout)
    assert body["error"]["code"] == "insufficient_credits", (curl.stdout, curl.stderr)
    assert curl.returncode == 22  # --fail-with-body: an error answer is a failure
    assert curl.stdout.endswith("}\n")
    python = run("python", call["python"], cwd=tmp_path, key=key)
    assert (python.returncode, python.stderr.strip()) == (1, refused)

    # The file gone: curl fails (its empty body is refused: 400), Python cannot open it.
    (tmp_path / ODD_NAME).unlink()
    curl = run("bash", call["curl"], cwd=tmp_path, key=key)
    assert curl.returncode == 22 and json.loads(curl.stdout)["error"]["code"] == "missing_image"
    python = run("python", call["python"], cwd=tmp_path, key=key)
    assert python.returncode == 1 and "FileNotFoundError" in python.stderr
