"""Code snippets for a model page, generated from the task and this site's API.

Only detector calls: an image goes in, boxes come out. Each API snippet names the model's
own inference URL and the Bearer auth header. The local one (transformers' pipeline) is
shown for open-weight models with a Hub checkpoint, pinned to the revision our workers
serve; the Cloudflare one only for a card with a Cloudflare Workers AI route, with that
route's own model id. ``tests/catalog/test_snippets.py`` parses every one (Python's
parser, ``node --check``, ``bash -n``).
"""

from __future__ import annotations

from dataclasses import dataclass

API_KEY_ENV = "VITRINE_API_KEY"


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
        )
    )
    if cloudflare_model_id:
        snippets.append(
            Snippet(
                "cloudflare",
                "Cloudflare Workers AI",
                "bash",
                "# With your own Cloudflare token (BYOK): billed by Cloudflare, no Vitrine fee.\n"
                "curl https://api.cloudflare.com/client/v4/accounts/$CLOUDFLARE_ACCOUNT_ID"
                f"/ai/run/{cloudflare_model_id} \\\n"
                '  -X POST -H "Authorization: Bearer $CLOUDFLARE_API_TOKEN" \\\n'
                "  --data-binary @cats.jpg\n\n"
                "# In a Worker:\n"
                "# const blob = await (await fetch(imageUrl)).arrayBuffer();\n"
                f'# const response = await env.AI.run("{cloudflare_model_id}", '
                "{ image: [...new Uint8Array(blob)] });",
                note="Cloudflare's own endpoint for this model, with your Cloudflare account.",
            )
        )
    return snippets
