"""Code snippets for a model page, generated from the task and this site's API.

Only detector calls: an image goes in, boxes come out. Each API snippet names the model's
own inference URL and the Bearer auth header. The local one (transformers' pipeline) is
shown for open-weight models with a Hub checkpoint, pinned to the revision our workers
serve; the Cloudflare Worker (TypeScript) only for a card with a Cloudflare Workers AI
route, with that route's own model id. ``tests/catalog/test_snippets.py`` parses every one
(Python's parser, ``node --check``, ``bash -n``; TypeScript once its type annotations are
erased) and runs the browser one and the Worker in Node with stand-ins for the page and
for Cloudflare.
"""

from __future__ import annotations

from dataclasses import dataclass

API_KEY_ENV = "VITRINE_API_KEY"
# Where a snippet cannot read the environment (a web page), the key is pasted in its place.
API_KEY_PLACEHOLDER = "YOUR_VITRINE_API_KEY"


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
            f"curl {url} \\\n"
            f'  -H "Authorization: Bearer ${API_KEY_ENV}" \\\n'
            '  -H "Content-Type: image/jpeg" \\\n'
            "  --data-binary @cats.jpg",
            note="The raw image bytes as the body; the answer is a JSON array of boxes.",
        ),
        Snippet(
            "python",
            "Python",
            "python",
            "import base64, os\nimport requests\n\n"
            'with open("cats.jpg", "rb") as f:\n'
            "    image = base64.b64encode(f.read()).decode()\n\n"
            "response = requests.post(\n"
            f'    "{url}",\n'
            f'    headers={{"Authorization": f"Bearer {{os.environ[\'{API_KEY_ENV}\']}}"}},\n'
            '    json={"inputs": image, "parameters": {"threshold": 0.5}},\n'
            ")\n"
            "response.raise_for_status()\n"
            "for d in response.json():\n"
            '    print(d["label"], round(d["score"], 3), d["box"])',
            note="With requests: the image as base64 JSON, with a score threshold.",
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
            '// A File from <input type="file">, or any Blob (a canvas, a fetched image).\n'
            'const file = document.querySelector("input[type=file]").files[0];\n'
            f'const response = await fetch("{url}", {{\n'
            '  method: "POST",\n'
            "  headers: {\n"
            "    Authorization: `Bearer ${apiKey}`,\n"
            '    "Content-Type": file.type,\n'
            "  },\n"
            "  body: file,\n"
            "});\n"
            "if (!response.ok) throw new Error((await response.json()).error.message);\n"
            "const detections = await response.json();\n"
            "// [{ label, score, box: { xmin, ymin, xmax, ymax } }, ...]",
            note="fetch with the File itself as the body. A key in a web page is readable "
            "by its visitors: use a key with a spend cap, or call from your server.",
        ),
        Snippet(
            "node",
            "Node.js",
            "javascript",
            'import { readFile } from "node:fs/promises";\n\n'
            'const image = await readFile("cats.jpg");\n'
            f'const response = await fetch("{url}", {{\n'
            '  method: "POST",\n'
            "  headers: {\n"
            f"    Authorization: `Bearer ${{process.env.{API_KEY_ENV}}}`,\n"
            '    "Content-Type": "image/jpeg",\n'
            "  },\n"
            "  body: image,\n"
            "});\n"
            "if (!response.ok) throw new Error((await response.json()).error.message);\n"
            "for (const d of await response.json()) {\n"
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
                "from transformers import pipeline\n\n"
                "detector = pipeline(\n"
                '    "object-detection",\n'
                f'    model="{local_repo}",\n'
                f'    revision="{local_revision}",\n'
                ")\n"
                'for d in detector("cats.jpg", threshold=0.5):\n'
                '    print(d["label"], round(d["score"], 3), d["box"])',
                note="Open weights: the same checkpoint and revision our workers serve, on "
                "your own machine (pip install transformers torch pillow).",
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
