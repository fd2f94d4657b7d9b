"""The code snippets on the model pages: taken from the rendered page, as a visitor copies
them, they parse in their own language and they reach this site's API.

Each page's snippets are read out of its HTML (``data-snippet`` panels), unescaped, and
checked with the language's own parser: Python's, ``node --check`` (as an ES module, so
top-level ``await`` is allowed, as in a browser module or a ``.mjs`` file; TypeScript once
its few type annotations are erased) and ``bash -n``. Then curl, Python requests,
huggingface_hub, Node and the Cloudflare Worker's Vitrine path are run against the live
server with a real key whose wallet is empty: the answer is the API's
``402 insufficient_credits``, which the API gives only after the key, the model id and the
image were accepted. The browser snippet and the Worker also run in Node with stand-ins for
the page and for Cloudflare's ``env.AI`` binding.
"""

from __future__ import annotations

import ast
import html
import io
import json
import os
import re
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from django.core.management import call_command

from billing.services.ledger import INSUFFICIENT_CREDITS
from catalog.models import ModelCard
from catalog.snippets import API_KEY_PLACEHOLDER

pytestmark = pytest.mark.django_db

NODE = shutil.which("node")
SNIPPET = re.compile(
    r'data-snippet="(?P<slug>[^"]+)".*?'
    r'<code class="language-(?P<lang>[a-z]+)">(?P<code>.*?)</code>',
    re.S,
)


@pytest.fixture
def seeded():
    call_command("seed_catalog", stdout=io.StringIO())


def page_snippets(client, url: str, **extra) -> dict[str, tuple[str, str]]:
    """{slug: (language, code)} as the page shows them."""
    body = client.get(url, **extra).content.decode()
    return {m["slug"]: (m["lang"], html.unescape(m["code"])) for m in SNIPPET.finditer(body)}


def model_urls() -> list[str]:
    return [f"/models/{card.model_id}" for card in ModelCard.objects.select_related("organisation")]


# The only TypeScript the Worker snippet may use beyond JavaScript: its ``Env`` interface, a
# return type and ``satisfies``. Anything else left after erasing them fails node --check.
TS_ONLY = [
    (re.compile(r"^export interface \w+ \{\n(?:  .*\n)*\}\n", re.M), ""),
    (re.compile(r"\): Promise<\w+> \{"), ") {"),
    (re.compile(r"\} satisfies \w+<\w+>;"), "};"),
]


def erase_types(code: str) -> str:
    for pattern, replacement in TS_ONLY:
        code = pattern.sub(replacement, code)
    return code


def check_parses(language: str, code: str, tmp_path: Path) -> str:
    """'' when ``code`` parses, else the parser's complaint."""
    if language == "typescript":
        language, code = "javascript", erase_types(code)
    if language == "python":
        try:
            ast.parse(code)
        except SyntaxError as exc:
            return str(exc)
        return ""
    if language == "javascript":
        path = tmp_path / "snippet.mjs"
        path.write_text(code)
        result = subprocess.run([NODE, "--check", str(path)], capture_output=True, text=True)
        return result.stderr
    if language == "bash":
        result = subprocess.run(["bash", "-n"], input=code, capture_output=True, text=True)
        return result.stderr
    return f"unknown language {language}"


@pytest.mark.skipif(NODE is None, reason="node is not installed")
def test_every_snippet_on_every_model_page_parses(client, seeded, tmp_path):
    checked = 0
    problems = {}
    for url in model_urls():
        for slug, (language, code) in page_snippets(client, url).items():
            checked += 1
            if problem := check_parses(language, code, tmp_path):
                problems[f"{url} {slug}"] = problem
    assert problems == {}
    assert checked >= 4 * 6  # four seeded models, six snippets or more each


@pytest.mark.skipif(NODE is None, reason="node is not installed")
def test_the_checker_catches_the_old_javascript_snippet(tmp_path):
    # The snippet every model page had before: one "}" too many after the headers.
    old = (
        'const image = await (await fetch("cats.jpg")).blob();\n'
        'const response = await fetch("http://x/v1/inference/a/b", {\n'
        '  method: "POST",\n'
        "  headers: { Authorization: `Bearer ${process.env.VITRINE_API_KEY}`, "
        '"Content-Type": image.type }},\n'
        "  body: image,\n"
        "});\n"
    )
    assert "SyntaxError" in check_parses("javascript", old, tmp_path)
    assert check_parses("python", "print(", tmp_path)
    assert check_parses("bash", "if then", tmp_path)
    # TypeScript beyond the three erased forms is not taken for JavaScript.
    assert check_parses("typescript", "const n: number = 1;", tmp_path)
    assert check_parses("typescript", "export interface Env {\n  AI: Ai;\n}\n", tmp_path) == ""


def run_node(tmp_path: Path, files: dict[str, str]) -> subprocess.CompletedProcess:
    """Write ``files`` and run ``main.mjs``; it prints what it observed as JSON."""
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    return subprocess.run(
        [NODE, "main.mjs"], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )


@pytest.mark.skipif(NODE is None, reason="node is not installed")
def test_the_browser_snippet_runs_as_pasted(client, seeded, tmp_path):
    """Pasted into a page as printed, it declares its own key (no ReferenceError) and posts
    the picked File with it; the visitor puts a key in the placeholder's place."""
    code = page_snippets(client, "/models/facebook/detr-resnet-50")["javascript"][1]
    assert f'const apiKey = "{API_KEY_PLACEHOLDER}";' in code
    # A page with one picked file, and a fetch that records the call and answers no box.
    page = (
        'const file = new Blob([new Uint8Array([255, 216, 255])], { type: "image/jpeg" });\n'
        "globalThis.document = { querySelector: (s) => (s === 'input[type=file]' ? "
        "{ files: [file] } : null) };\n"
        "const calls = [];\n"
        "globalThis.fetch = async (url, init) => {\n"
        "  calls.push({ url, init, body: [...new Uint8Array(await init.body.arrayBuffer())] });\n"
        "  return new Response('[]', { status: 200 });\n"
        "};\n"
        "await import('./snippet.mjs');\n"
        "console.log(JSON.stringify(calls));\n"
    )
    result = run_node(tmp_path, {"main.mjs": page, "snippet.mjs": code})
    assert result.returncode == 0, result.stderr
    printed, recorded = result.stdout.splitlines()
    assert printed == "[]"  # the snippet printed the answer's detections: none here
    (call,) = json.loads(recorded)
    assert call["url"].endswith("/v1/inference/facebook/detr-resnet-50")
    assert call["init"]["method"] == "POST"
    # A fresh Idempotency-Key: a retry of the call with it is charged once.
    key = call["init"]["headers"].pop("Idempotency-Key")
    assert str(uuid.UUID(key)) == key
    assert call["init"]["headers"] == {
        "Authorization": f"Bearer {API_KEY_PLACEHOLDER}",
        "Content-Type": "image/jpeg",
    }
    assert call["body"] == [255, 216, 255]


def worker_stand_in(*, via: str = "", image: str = "new Uint8Array([1, 2, 250])") -> str:
    """Cloudflare's side of a Worker: the example image (``image``, a JavaScript expression),
    an ``env.AI`` that records its calls, the key secret; any other fetch goes out for real
    (to the site under test)."""
    query = f"?via={via}" if via else ""
    return (
        'import { readFile } from "node:fs/promises";\n'
        "const realFetch = globalThis.fetch;\n"
        "const seen = { ai: [], fetched: [] };\n"
        "globalThis.fetch = async (url, init) => {\n"
        "  seen.fetched.push({ url: String(url), init: init ?? null });\n"
        "  if (String(url) === 'https://cataas.com/cat') {\n"
        f"    return new Response({image});\n"
        "  }\n"
        "  return realFetch(url, init);\n"
        "};\n"
        "const env = {\n"
        "  AI: { run: async (model, inputs) => { seen.ai.push({ model, inputs });"
        " return [{ label: 'cat', score: 0.9, box: {} }]; } },\n"
        "  VITRINE_API_KEY: process.env.VITRINE_API_KEY ?? 'vt_stand_in',\n"
        "};\n"
        "const worker = (await import('./worker.mjs')).default;\n"
        f"const response = await worker.fetch(new Request('https://worker.example/{query}'),"
        " env);\n"
        "seen.status = response.status;\n"
        "seen.body = await response.json();\n"
        "console.log(JSON.stringify(seen));\n"
    )


def test_only_a_card_with_a_cloudflare_route_has_the_worker(client, seeded):
    assert "cloudflare" not in page_snippets(client, "/models/hustvl/yolos-tiny")
    language, code = page_snippets(client, "/models/facebook/detr-resnet-50")["cloudflare"]
    assert language == "typescript"
    # The whole Worker, as on Cloudflare's model page (seed 001), not two commented lines.
    assert code.startswith("export interface Env {\n  AI: Ai;\n")
    assert "async fetch(request, env): Promise<Response> {" in code
    assert "image: [...new Uint8Array(blob)]," in code
    assert 'await env.AI.run("@cf/facebook/detr-resnet-50", inputs);' in code
    assert code.endswith("} satisfies ExportedHandler<Env>;")
    assert "it does not call Vitrine" in code


@pytest.mark.skipif(NODE is None, reason="node is not installed")
def test_the_cloudflare_worker_runs_the_model_on_cloudflare(client, seeded, tmp_path):
    code = page_snippets(client, "/models/facebook/detr-resnet-50")["cloudflare"][1]
    result = run_node(tmp_path, {"main.mjs": worker_stand_in(), "worker.mjs": erase_types(code)})
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    # The binding, with Cloudflare's model id and its input shape; Vitrine is not called.
    assert seen["ai"] == [
        {"model": "@cf/facebook/detr-resnet-50", "inputs": {"image": [1, 2, 250]}}
    ]
    assert [call["url"] for call in seen["fetched"]] == ["https://cataas.com/cat"]
    assert seen["body"]["response"] == [{"label": "cat", "score": 0.9, "box": {}}]


def test_javascript_snippets_send_the_file_itself(client, seeded):
    snippets = page_snippets(client, "/models/facebook/detr-resnet-50")
    browser = snippets["javascript"][1]
    assert 'document.querySelector("input[type=file]").files[0]' in browser
    assert "body: file," in browser and '"Content-Type": file.type' in browser
    node = snippets["node"][1]
    assert 'import { readFile } from "node:fs/promises";' in node
    assert "body: image," in node and "process.env.VITRINE_API_KEY" in node


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "/models/facebook/detr-resnet-50",
            'model="facebook/detr-resnet-50",\n    revision="no_timm"',
        ),
        ("/models/hustvl/yolos-tiny", 'model="hustvl/yolos-tiny",\n    revision="main"'),
    ],
)
def test_open_weight_models_have_the_local_pipeline_snippet(client, seeded, url, expected):
    language, code = page_snippets(client, url)["transformers"]
    assert language == "python"
    assert 'pipeline(\n    "object-detection",' in code
    assert expected in code


def test_closed_weight_models_have_no_local_snippet(client, seeded):
    card = ModelCard.objects.get(slug="yolos-tiny")
    card.open_weight = False
    card.save()
    assert "transformers" not in page_snippets(client, "/models/hustvl/yolos-tiny")


def test_without_site_url_the_snippets_follow_the_address_the_site_is_served_at(
    client, seeded, settings
):
    settings.SITE_URL = ""
    settings.ALLOWED_HOSTS = ["127.0.0.1"]
    extra = {"HTTP_HOST": "127.0.0.1:8123"}
    snippets = page_snippets(client, "/models/facebook/detr-resnet-50", **extra)
    url = "http://127.0.0.1:8123/v1/inference/facebook/detr-resnet-50"
    assert all(url in code for slug, (_, code) in snippets.items() if slug in {"curl", "node"})
    llms = client.get("/llms.txt", **extra).content.decode()
    assert "http://127.0.0.1:8123/v1/inference/" in llms and ":8000" not in llms
    models = client.get("/v1/models", **extra).json()["data"]
    assert models[0]["links"]["html"].startswith("http://127.0.0.1:8123/models/")
    body = client.get("/models/facebook/detr-resnet-50", **extra).content.decode()
    assert (
        '<link rel="canonical" href="http://127.0.0.1:8123/models/facebook/detr-resnet-50">' in body
    )


def test_a_configured_site_url_wins(client, seeded, settings):
    settings.SITE_URL = "https://vitrine.example"
    snippets = page_snippets(client, "/models/facebook/detr-resnet-50", HTTP_HOST="localhost")
    assert (
        "\ncurl https://vitrine.example/v1/inference/facebook/detr-resnet-50 "
        in (snippets["curl"][1])
    )
    assert "https://vitrine.example/v1/inference/" in client.get("/llms.txt").content.decode()


def test_the_settings_default_has_no_fixed_port():
    # make run's HOST/PORT reach the pages through the request, not a hard-coded :8000.
    result = subprocess.run(
        [sys.executable, "-c", "from django.conf import settings; print(repr(settings.SITE_URL))"],
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if k != "SITE_URL"}
        | {"DJANGO_SETTINGS_MODULE": "config.settings"},
        check=True,
    )
    assert result.stdout.strip() == "''"


# --- run against the live server -------------------------------------------------------
@pytest.fixture
def empty_wallet_key(transactional_db, live_server):
    from billing.services.keys import api_key_create
    from tests import factories

    call_command("seed_catalog", stdout=io.StringIO())
    _, plaintext = api_key_create(user=factories.user(), name="snippets")
    return plaintext


def run_snippet(language: str, code: str, *, cwd: Path, key: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "VITRINE_API_KEY": key}
    if language == "python":
        argv = [sys.executable, "-c", code]
    elif language == "javascript":
        (cwd / "detect.mjs").write_text(code)
        argv = [NODE, "detect.mjs"]
    else:
        argv = ["bash", "-c", code]
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(NODE is None or not shutil.which("curl"), reason="needs node and curl")
def test_the_snippets_reach_the_api_of_the_live_server(empty_wallet_key, live_server, tmp_path):
    from urllib.request import urlopen

    from PIL import Image

    Image.new("RGB", (64, 48), (200, 120, 40)).save(tmp_path / "cats.jpg", "JPEG")
    # The page as the live server serves it: its snippets name the live server's address.
    with urlopen(f"{live_server.url}/models/facebook/detr-resnet-50") as response:
        body = response.read().decode()
    snippets = {m["slug"]: (m["lang"], html.unescape(m["code"])) for m in SNIPPET.finditer(body)}
    outputs = {}
    for slug in ("curl", "python", "huggingface_hub", "node"):
        language, code = snippets[slug]
        # huggingface_hub's snippet names the Hugging Face drop-in route; the others ours.
        route = "hf/models" if slug == "huggingface_hub" else "v1/inference"
        assert f"{live_server.url}/{route}/facebook/detr-resnet-50" in code, slug
        outputs[slug] = run_snippet(language, code, cwd=tmp_path, key=empty_wallet_key)
    # curl prints the error body and fails (--fail-with-body); requests' snippet exits with
    # the API's message, huggingface_hub raises on the 402; Node throws the message.
    message = INSUFFICIENT_CREDITS.format(balance="$0", cost="$0.0002")
    assert '"code":"insufficient_credits"' in outputs["curl"].stdout.replace(" ", "")
    assert outputs["curl"].returncode == 22 and outputs["curl"].stdout.endswith("}\n")
    assert (outputs["python"].returncode, outputs["python"].stderr.strip()) == (1, message)
    assert outputs["huggingface_hub"].returncode != 0
    assert "402" in outputs["huggingface_hub"].stderr, outputs["huggingface_hub"].stderr
    assert outputs["node"].returncode != 0
    assert f"Error: {message}" in outputs["node"].stderr

    # The Cloudflare Worker's ?via=vitrine path: Vitrine's Cloudflare-compatible route took
    # the key, the model id and the image as integers; Cloudflare's binding was not used.
    language, code = snippets["cloudflare"]
    assert language == "typescript"
    vitrine = f"{live_server.url}/client/v4/accounts/any/ai/run/@cf/facebook/detr-resnet-50"
    assert vitrine in code
    (tmp_path / "worker.mjs").write_text(erase_types(code))
    (tmp_path / "main.mjs").write_text(
        worker_stand_in(via="vitrine", image="await readFile('cats.jpg')")
    )
    worker = run_snippet("javascript", "import './main.mjs';", cwd=tmp_path, key=empty_wallet_key)
    assert worker.returncode == 0, worker.stderr
    seen = json.loads(worker.stdout)
    assert seen["ai"] == []
    assert [call["url"] for call in seen["fetched"]] == ["https://cataas.com/cat", vitrine]
    sent = json.loads(seen["fetched"][1]["init"]["body"])
    assert sent == {"image": list((tmp_path / "cats.jpg").read_bytes())}
    assert seen["status"] == 402
    assert seen["body"]["success"] is False
    assert seen["body"]["errors"][0]["message"] == message
