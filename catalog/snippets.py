"""Code snippets for a model page, generated from the task and this site's API.

Only detector calls: an image goes in, boxes come out. Each snippet names the model's
own inference URL and the Bearer auth header; the Cloudflare one appears only for a card
that has a Cloudflare Workers AI route, with that route's own model id.
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


def inference_url(*, site_url: str, model_id: str) -> str:
    return f"{site_url}/v1/inference/{model_id}"


def hf_url(*, site_url: str, model_id: str) -> str:
    """The Hugging Face drop-in route: huggingface_hub's InferenceClient posts here."""
    return f"{site_url}/hf/models/{model_id}"


def detection_snippets(*, site_url: str, model_id: str, cloudflare_model_id: str = ""):
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
        ),
        Snippet(
            "python",
            "Python (requests)",
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
        ),
        Snippet(
            "huggingface_hub",
            "Python (huggingface_hub)",
            "python",
            "import os\nfrom huggingface_hub import InferenceClient\n\n"
            "client = InferenceClient(\n"
            f'    model="{hf_url(site_url=site_url, model_id=model_id)}",\n'
            f'    api_key=os.environ["{API_KEY_ENV}"],\n'
            ")\n"
            'detections = client.object_detection("cats.jpg", threshold=0.5)\n'
            "for d in detections:\n"
            "    print(d.label, d.score, d.box)",
        ),
        Snippet(
            "javascript",
            "JavaScript (fetch)",
            "javascript",
            'const image = await (await fetch("cats.jpg")).blob();\n'
            f'const response = await fetch("{url}", {{\n'
            '  method: "POST",\n'
            f"  headers: {{ Authorization: `Bearer ${{process.env.{API_KEY_ENV}}}`, "
            '"Content-Type": image.type }},\n'
            "  body: image,\n"
            "});\n"
            "const detections = await response.json();\n"
            "// [{ label, score, box: { xmin, ymin, xmax, ymax } }, ...]",
        ),
    ]
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
            )
        )
    return snippets
