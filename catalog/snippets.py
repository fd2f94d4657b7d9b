"""Code snippets for a model page, generated from the task and this site's API.

Only detector calls: an image goes in, boxes come out. Each API snippet names the model's
own inference URL and the Bearer auth header. The local one (transformers' pipeline) is
shown for open-weight models with a Hub checkpoint, pinned to the revision our workers
serve; the Cloudflare Worker (TypeScript) only for a card with a Cloudflare Workers AI
route, with that route's own model id. ``tests/catalog/test_snippets.py`` parses every one
(Python's parser, ``node --check``, ``bash -n``; TypeScript once its type annotations are
erased) and runs the browser one and the Worker in Node with stand-ins for the page and
for Cloudflare. The requests, Node and browser snippets send an Idempotency-Key and follow a
202 (the call outlasted its wait) by polling the job until it ends
(``tests/playground/test_snippets_202_s49.py`` runs them through one, with a real worker).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from django.conf import settings

API_KEY_ENV = "VITRINE_API_KEY"
# Where a snippet cannot read the environment (a web page), the key is pasted in its place.
API_KEY_PLACEHOLDER = "YOUR_VITRINE_API_KEY"

# The API snippets' shared parts. A call that outlasts VITRINE_SYNC_WAIT answers 202 with the
# job resource (its "url" to poll, its "status"); polled, the job's "detections" are the
# boxes the 200 would have held. An error answer is {"error": {"message", ...}}; a job that
# ended without boxes has its own "error" (null for one cancelled by its owner).
PYTHON_ANSWER = (
    "def answer(response):\n"
    '    """The JSON answer, or exit with the API\'s error message."""\n'
    "    if not response.ok:\n"
    '        raise SystemExit(response.json()["error"]["message"])\n'
    "    return response.json()\n"
)
PYTHON_POLL = (
    "detections = answer(response)\n"
    "if response.status_code == 202:  # still running after the call's wait: poll the job\n"
    "    job = detections\n"
    '    while job["status"] in ("queued", "running"):\n'
    "        time.sleep(1)\n"
    '        job = answer(requests.get(job["url"], headers=auth))\n'
    '    if job["status"] != "succeeded":\n'
    '        raise SystemExit(job["error"]["message"] if job["error"] else "Job cancelled.")\n'
    '    detections = job["detections"]\n'
    "for d in detections:\n"
    '    print(d["label"], round(d["score"], 3), d["box"])'
)
PYTHON_KEY_COMMENT = (
    "# Keep the Idempotency-Key for a retry of this call (a timeout, a dropped connection):\n"
    "# the same key answers the same job, charged once.\n"
)
JS_KEY_COMMENT = (
    "    // Keep the key for a retry of this call (a timeout, a dropped connection): the\n"
    "    // same key answers the same job, charged once.\n"
)
JS_ANSWER = (
    "// The JSON answer, or throw the API's error message.\n"
    "async function answer(response) {\n"
    "  const body = await response.json();\n"
    "  if (!response.ok) throw new Error(body.error.message);\n"
    "  return body;\n"
    "}\n\n"
)
JS_POLL = (
    "let detections = await answer(response);\n"
    "if (response.status === 202) {\n"
    "  // Still running after the call's wait: poll the job until it ends.\n"
    "  let job = detections;\n"
    '  while (job.status === "queued" || job.status === "running") {\n'
    "    await new Promise((resolve) => setTimeout(resolve, 1000));\n"
    "    job = await answer(await fetch(job.url, { headers: auth }));\n"
    "  }\n"
    '  if (job.status !== "succeeded") throw new Error(job.error?.message ?? "Job cancelled.");\n'
    "  detections = job.detections;\n"
    "}\n"
)


# The local pipeline's packages. A Hub checkpoint whose config.json builds its backbone with
# timm (``use_timm_backbone: true``; the DETR family's default when the config names no
# ``backbone_config``) needs timm too: transformers' TimmBackbone imports it to load the
# model. (repo, revision) as a card pins them; checked against the Hub's configs.
LOCAL_PACKAGES = ("transformers", "torch", "pillow")
TIMM_BACKBONE_CHECKPOINTS = frozenset(
    {
        ("facebook/detr-resnet-50", "main"),  # its no_timm branch: transformers' own ResNet
        ("facebook/detr-resnet-101", "main"),
        ("microsoft/conditional-detr-resnet-50", "main"),
    }
)


def local_install(repo: str, revision: str) -> str:
    """What ``pip install`` needs for the local pipeline of ``repo`` at ``revision``."""
    timm = ("timm",) if (repo, revision) in TIMM_BACKBONE_CHECKPOINTS else ()
    return " ".join(LOCAL_PACKAGES + timm)


def max_image_mib() -> str:
    """The largest image the API takes (VITRINE_MAX_UPLOAD_BYTES), in MiB."""
    return f"{settings.VITRINE_MAX_UPLOAD_BYTES / 2**20:g}"


def json_array_image_mb() -> str:
    """The largest image whose Workers AI form, ``{"image": [0-255, ...]}``, fits the JSON body
    limit whatever its bytes (up to four bytes of JSON each: three digits and a comma; about
    3.6 for a photo's). The JSON limit is ``playground.body_limits.body_limit``'s: room for
    the image's base64 plus 64 KiB (the same sum here: catalog imports no other app; a test
    holds the two together), as the route's own 413 text gives it."""
    max_image = settings.VITRINE_MAX_UPLOAD_BYTES
    json_limit = 4 * ((max_image + 2) // 3) + 64 * 1024
    return f"{math.floor(json_limit / 4 / 1e5) / 10:g}"  # rounded down: it fits


@dataclass(frozen=True)
class Snippet:
    slug: str
    title: str
    language: str
    code: str
    note: str = ""  # one line shown above the code


def inference_url(*, site_url: str, model_id: str) -> str:
    return f"{site_url}/v1/inference/{model_id}"


def hf_url(*, site_url: str, model_id: str) -> str:
    """The Hugging Face drop-in route: huggingface_hub's InferenceClient posts here."""
    return f"{site_url}/hf/models/{model_id}"


def detection_snippets(
    *,
    site_url: str,
    model_id: str,
    cloudflare_model_id: str = "",
    local_repo: str = "",
    local_revision: str = "",
) -> list[Snippet]:
    url = inference_url(site_url=site_url, model_id=model_id)
    snippets = [
        Snippet(
            "curl",
            "curl",
            "bash",
            "# 200: a JSON array of boxes. 202: the call's wait ran out and the job still runs;\n"
            '# the body is the job: GET its "url" with the same Authorization header until its\n'
            '# "status" is "succeeded" (its "detections" are the boxes) or "failed".\n'
            f"curl {url} \\\n"
            f'  -H "Authorization: Bearer ${API_KEY_ENV}" \\\n'
            '  -H "Content-Type: image/jpeg" \\\n'
            "  --data-binary @cats.jpg --fail-with-body -w '\\n'",
            note="The raw image bytes as the body; the answer is a JSON array of boxes (an "
            "error answer's JSON is printed too, and curl exits non-zero).",
        ),
        Snippet(
            "python",
            "Python",
            "python",
            "import base64, os, time, uuid\n\nimport requests\n\n"
            f'auth = {{"Authorization": f"Bearer {{os.environ[\'{API_KEY_ENV}\']}}"}}\n\n\n'
            + PYTHON_ANSWER
            + "\n\n"
            'with open("cats.jpg", "rb") as f:\n'
            "    image = base64.b64encode(f.read()).decode()\n"
            + PYTHON_KEY_COMMENT
            + "response = requests.post(\n"
            f'    "{url}",\n'
            '    headers={**auth, "Idempotency-Key": str(uuid.uuid4())},\n'
            '    json={"inputs": image, "parameters": {"threshold": 0.5}},\n'
            ")\n" + PYTHON_POLL,
            note="With requests: the image as base64 JSON, with a score threshold; a call "
            "that outlasts its wait answers 202 with the job, polled here until it ends.",
        ),
        Snippet(
            "huggingface_hub",
            "huggingface_hub",
            "python",
            "import os\nfrom huggingface_hub import InferenceClient\n\n"
            "client = InferenceClient(\n"
            f'    model="{hf_url(site_url=site_url, model_id=model_id)}",\n'
            f'    api_key=os.environ["{API_KEY_ENV}"],\n'
            ")\n"
            'detections = client.object_detection("cats.jpg", threshold=0.5)\n'
            "for d in detections:\n"
            "    print(d.label, d.score, d.box)",
            note="Hugging Face's own client works unchanged: the answer has the same shape.",
        ),
        Snippet(
            "javascript",
            "JavaScript (browser)",
            "javascript",
            "// Your Vitrine API key: readable by anyone who can read this page.\n"
            f'const apiKey = "{API_KEY_PLACEHOLDER}";\n'
            "const auth = { Authorization: `Bearer ${apiKey}` };\n"
            '// A File from <input type="file">, or any Blob (a canvas, a fetched image).\n'
            'const file = document.querySelector("input[type=file]").files[0];\n'
            + JS_ANSWER
            + f'const response = await fetch("{url}", {{\n'
            '  method: "POST",\n'
            "  headers: {\n"
            "    ...auth,\n"
            '    "Content-Type": file.type,\n'
            + JS_KEY_COMMENT
            + '    "Idempotency-Key": crypto.randomUUID(),\n'
            "  },\n"
            "  body: file,\n"
            "});\n"
            + JS_POLL
            + "console.log(detections); // [{ label, score, box: { xmin, ymin, xmax, ymax } }]",
            note="fetch with the File itself as the body. A key in a web page is readable "
            "by its visitors: use a key with a spend cap, or call from your server.",
        ),
        Snippet(
            "node",
            "Node.js",
            "javascript",
            'import { randomUUID } from "node:crypto";\n'
            'import { readFile } from "node:fs/promises";\n\n'
            f"const auth = {{ Authorization: `Bearer ${{process.env.{API_KEY_ENV}}}` }};\n"
            'const image = await readFile("cats.jpg");\n'
            + JS_ANSWER
            + f'const response = await fetch("{url}", {{\n'
            '  method: "POST",\n'
            "  headers: {\n"
            "    ...auth,\n"
            '    "Content-Type": "image/jpeg",\n'
            + JS_KEY_COMMENT
            + '    "Idempotency-Key": randomUUID(),\n'
            "  },\n"
            "  body: image,\n"
            "});\n" + JS_POLL + "for (const d of detections) {\n"
            "  console.log(d.label, d.score.toFixed(3), d.box);\n"
            "}",
            note="Node 18+ (built-in fetch); save as detect.mjs and run node detect.mjs.",
        ),
    ]
    if local_repo and local_revision:
        snippets.append(
            Snippet(
                "transformers",
                "Run locally (transformers)",
                "python",
                f"# pip install {local_install(local_repo, local_revision)}\n"
                "from transformers import pipeline\n\n"
                "detector = pipeline(\n"
                '    "object-detection",\n'
                f'    model="{local_repo}",\n'
                f'    revision="{local_revision}",\n'
                ")\n"
                'for d in detector("cats.jpg", threshold=0.5):\n'
                '    print(d["label"], round(d["score"], 3), d["box"])',
                note="Open weights: the same checkpoint and revision our workers serve, on "
                f"your own machine (pip install {local_install(local_repo, local_revision)}).",
            )
        )
    snippets.append(
        Snippet(
            "cloudflare_sdk",
            "Python (cloudflare SDK)",
            "python",
            "import os\nfrom cloudflare import Cloudflare\n\n"
            "# Vitrine's Cloudflare-compatible route: any account id, your Vitrine key.\n"
            "client = Cloudflare(\n"
            f'    api_token=os.environ["{API_KEY_ENV}"],\n'
            f'    base_url="{site_url}/client/v4",\n'
            ")\n"
            'with open("cats.jpg", "rb") as f:\n'
            "    # Workers AI's input: the image as a JSON array of byte values, up to 4 bytes of\n"
            f"    # JSON each, so this form takes images up to {json_array_image_mb()} MB (413 "
            "over that); a bigger\n"
            f"    # one, up to {max_image_mib()} MiB, goes as the raw request body (curl "
            "--data-binary @cats.jpg).\n"
            f'    detections = client.ai.run("@cf/{model_id}", account_id="vitrine", '
            "image=list(f.read()))\n"
            "for d in detections:\n"
            "    print(d.label, d.score, d.box)",
            note="Cloudflare's own Python client (pip install cloudflare) on Vitrine's "
            "Cloudflare-compatible route: the model is @cf/ and its Vitrine id; boxes come "
            "back in Cloudflare's shape, as numbers.",
        )
    )
    if cloudflare_model_id:
        snippets.append(
            Snippet(
                "cloudflare",
                "Cloudflare Workers AI",
                "typescript",
                cloudflare_worker(
                    site_url=site_url, model_id=model_id, cloudflare_model_id=cloudflare_model_id
                ),
                note="A Worker (TypeScript), as on Cloudflare's model page: env.AI runs the "
                "model on Cloudflare, ?via=vitrine sends the same input to Vitrine.",
            )
        )
    return snippets


def cloudflare_worker(*, site_url: str, model_id: str, cloudflare_model_id: str) -> str:
    """A whole Cloudflare Worker, as Cloudflare's model page shows it (``env.AI.run`` with the
    image as integers 0-255), plus the same input sent to Vitrine's Cloudflare-compatible
    route: the binding never reaches Vitrine, so that path is a plain ``fetch``."""
    vitrine_url = f"{site_url}/client/v4/accounts/any/ai/run/@cf/{model_id}"
    return (
        "export interface Env {\n"
        "  AI: Ai;\n"
        f"  {API_KEY_ENV}: string; // a secret: npx wrangler secret put {API_KEY_ENV}\n"
        "}\n\n"
        "export default {\n"
        "  async fetch(request, env): Promise<Response> {\n"
        '    const res = await fetch("https://cataas.com/cat");\n'
        "    const blob = await res.arrayBuffer();\n"
        "    const inputs = {\n"
        "      image: [...new Uint8Array(blob)],\n"
        "    };\n\n"
        '    if (new URL(request.url).searchParams.get("via") === "vitrine") {\n'
        "      // Vitrine's Cloudflare-compatible route: the same input (or the raw bytes), your\n"
        "      // Vitrine API key, any account id; charged to your Vitrine wallet. It answers\n"
        '      // Cloudflare\'s envelope: {"result": [...], "success": true, "errors": [], ...}.\n'
        "      const answer = await fetch(\n"
        f'        "{vitrine_url}",\n'
        "        {\n"
        '          method: "POST",\n'
        "          headers: {\n"
        f"            Authorization: `Bearer ${{env.{API_KEY_ENV}}}`,\n"
        '            "Content-Type": "application/json",\n'
        "          },\n"
        "          body: JSON.stringify(inputs),\n"
        "        },\n"
        "      );\n"
        "      return new Response(answer.body, {\n"
        "        status: answer.status,\n"
        '        headers: { "Content-Type": "application/json" },\n'
        "      });\n"
        "    }\n\n"
        "    // The AI binding runs the model on Cloudflare's own Workers AI, billed to your\n"
        "    // Cloudflare account: it does not call Vitrine, and Vitrine charges nothing.\n"
        f'    const response = await env.AI.run("{cloudflare_model_id}", inputs);\n'
        "    return new Response(JSON.stringify({ inputs: { image: [] }, response }));\n"
        "  },\n"
        "} satisfies ExportedHandler<Env>;"
    )
