"""The seed catalogue: organisations, the object-detection task, four model cards, collections.

Pure data, no Django: ``manage.py seed_catalog`` loads it. Facts come from the product
owner's seed pages (a gateway listing and Cloudflare's page for DETR, a gateway page each
for Conditional DETR and RT-DETR, the Hugging Face object-detection task page) and from the
sources cited next to each benchmark table (a paper, or where the figures are not the
paper's, the repository model zoo or model card that prints them). Mistakes on those pages
are corrected here, not copied: DETR is a detector (no text-to-image endpoint, no "Meta
key"); seed 003's headers describe Hugging Face's token and cache, Vitrine's route takes a
Vitrine key and has its own cache; seed 004's "outperforming previous YOLO detectors" is the
paper's "YOLO detectors of the same scale"; seed 002's four
"AP" headers are AP, AP_S, AP_M and AP_L, its "6.7x faster: 50 epochs instead of 500" is the
paper's 6.7x for R50/R101 backbones (10x with DC5), and its "real-time" has no speed figure
behind it; seed 004's 55.3 AP is the Objects365-pre-trained checkpoint's, and its "outperforms
YOLOv8" is the paper's comparison with YOLOv8-L. Licences are SPDX ids ("Apache-2.0").

Prices are USD per unit (image or request), exact Decimals. Benchmark values are strings,
exactly as published ("41.0" stays "41.0"). ``\\u00d7`` is the pages' multiplication sign
("6.7x faster"), escaped because ruff flags the literal character as ambiguous.
"""

from __future__ import annotations

import datetime
from decimal import Decimal

DETR = "facebook/detr-resnet-50"
CONDITIONAL_DETR = "microsoft/conditional-detr-resnet-50"
RT_DETR = "PekingU/rtdetr_r50vd"
YOLOS_TINY = "hustvl/yolos-tiny"

HF_TASK_URL = "https://huggingface.co/docs/inference-providers/tasks/object-detection"
CLOUDFLARE_DETR_URL = "https://developers.cloudflare.com/workers-ai/models/detr-resnet-50/"

# Every live card: what computes the boxes Vitrine's API returns (issue 10's fidelity rule).
SAME_DETECTIONS_FAQ = (
    "Are Vitrine's detections the same as running the model with transformers?",
    "Yes. Vitrine's workers run the pinned checkpoint in fp32, on PyTorch or on an OpenVINO or "
    "ONNX Runtime export of the same weights that is checked against PyTorch before it is "
    "used, with the same pre- and post-processing on every backend; the test suite holds "
    "each backend to the transformers `object-detection` pipeline within 1 px per box and "
    "1e-4 per score. Faster reduced-precision variants (bf16, int8) move boxes and scores "
    "slightly and are never used silently: each job's JSON names what computed it "
    "(`weights.backend`, `weights.precision`), and the model page's measured latency names "
    "its arithmetic.",
)

# The same rule for a coming-soon card: nothing runs it yet and it has no measured latency,
# so the answer says what its jobs will do once it is live.
SAME_DETECTIONS_SOON_FAQ = (
    "Will Vitrine's detections be the same as running the model with transformers?",
    "Yes, once it is live: it is not served yet (until it launches its calls answer "
    "`409 model_not_available`, and no latency is measured here). Vitrine's workers will run "
    "the pinned checkpoint in fp32, on PyTorch or on an OpenVINO or ONNX Runtime export of the "
    "same weights that is checked against PyTorch before it is used, with the same pre- and "
    "post-processing on every backend; the test suite already holds each backend, on this "
    "architecture with random weights, to the transformers `object-detection` pipeline within "
    "1 px per box and 1e-4 per score. Faster reduced-precision variants (bf16, int8) will "
    "never be used silently: each job's JSON names what computed it (`weights.backend`, "
    "`weights.precision`).",
)


def result_cache_faq(model_id: str) -> tuple[str, str]:
    """Live cards: what the Hugging Face route's result cache keeps and how to opt out
    (``playground/flavours/hf.py``, ``x-use-cache``; ``VITRINE_HF_CACHE_TTL``, 24 h)."""
    return (
        "Does Vitrine cache results?",
        f"Only on the Hugging Face route (`/hf/models/{model_id}`, and `/v1/inference/` when "
        "a Hugging Face client calls it): an identical call (same account, same model "
        "revision, route, image bytes and threshold) within 24 hours is answered with the "
        "stored result, without running or charging again (response headers "
        "`X-Vitrine-Cache: hit` and `X-Vitrine-Cost: 0`), and an identical call still running "
        "is waited for instead of run twice. To opt out, send the header `x-use-cache: false` "
        '(or `{"options": {"use_cache": false}}` in the JSON body): the call runs anew and is '
        "charged. Calls in Vitrine's own format under `/v1/` and calls on the "
        "Cloudflare-compatible route never use the cache: each one runs and is charged.",
    )


# --- Task schemas -------------------------------------------------------------------------

# Vitrine's own API: the Hugging Face request body, the Hugging Face response shape with
# integer pixel boxes.
VITRINE_INPUT_SCHEMA = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "title": "ObjectDetectionInput",
    "description": (
        "A JSON body, or the raw image bytes as the request body when no parameters are needed."
    ),
    "type": "object",
    "properties": {
        "inputs": {
            "type": "string",
            "contentEncoding": "base64",
            "description": (
                "The input image as a base64-encoded string. If no `parameters` are provided, "
                "you can also send the image as a raw bytes payload."
            ),
        },
        "parameters": {
            "type": "object",
            "properties": {
                "threshold": {
                    "type": "number",
                    "minimum": 0,
                    "maximum": 1,
                    "default": 0.5,
                    "description": (
                        "Minimum score for a detection to be returned (0 to 1; 0.5 when not given)."
                    ),
                },
            },
        },
    },
    "required": ["inputs"],
}

VITRINE_OUTPUT_SCHEMA = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "title": "ObjectDetectionOutput",
    "description": "An array of detected objects, one per box.",
    "type": "array",
    "items": {
        "type": "object",
        "properties": {
            "label": {"type": "string", "description": "The predicted label for the box."},
            "score": {
                "type": "number",
                "minimum": 0,
                "maximum": 1,
                "description": "The associated score / probability.",
            },
            "box": {
                "type": "object",
                "description": "Integer pixel coordinates in the input image.",
                "properties": {
                    "xmin": {"type": "integer", "description": "Left edge (x of top-left)."},
                    "ymin": {"type": "integer", "description": "Top edge (y of top-left)."},
                    "xmax": {"type": "integer", "description": "Right edge (x of bottom-right)."},
                    "ymax": {"type": "integer", "description": "Bottom edge (y of bottom-right)."},
                },
                "required": ["xmin", "ymin", "xmax", "ymax"],
            },
        },
        "required": ["label", "score", "box"],
    },
}

# Hugging Face Inference (hf-inference), as the task page documents it.
HF_INPUT_SCHEMA = {
    "$schema": "http://json-schema.org/draft-06/schema#",
    "title": "ObjectDetectionInput",
    "description": "Inputs for Object Detection inference",
    "type": "object",
    "properties": {
        "inputs": {
            "type": "string",
            "description": (
                "The input image data as a base64-encoded string. If no `parameters` are "
                "provided, you can also provide the image data as a raw bytes payload."
            ),
        },
        "parameters": {
            "type": "object",
            "description": "Additional inference parameters for Object Detection",
            "properties": {
                "threshold": {
                    "type": "number",
                    "description": "The probability necessary to make a prediction.",
                },
            },
        },
    },
    "required": ["inputs"],
}

HF_OUTPUT_SCHEMA = {
    "$schema": "http://json-schema.org/draft-06/schema#",
    "title": "ObjectDetectionOutput",
    "description": "Output is an array of objects.",
    "type": "array",
    "items": {
        "type": "object",
        "properties": {
            "label": {"type": "string", "description": "The predicted label for the bounding box."},
            "score": {"type": "number", "description": "The associated score / probability."},
            "box": {
                "type": "object",
                "properties": {
                    "xmin": {
                        "type": "integer",
                        "description": (
                            "The x-coordinate of the top-left corner of the bounding box."
                        ),
                    },
                    "xmax": {
                        "type": "integer",
                        "description": (
                            "The x-coordinate of the bottom-right corner of the bounding box."
                        ),
                    },
                    "ymin": {
                        "type": "integer",
                        "description": (
                            "The y-coordinate of the top-left corner of the bounding box."
                        ),
                    },
                    "ymax": {
                        "type": "integer",
                        "description": (
                            "The y-coordinate of the bottom-right corner of the bounding box."
                        ),
                    },
                },
                "required": ["xmin", "ymin", "xmax", "ymax"],
            },
        },
        "required": ["label", "score", "box"],
    },
}

HF_HEADERS = [
    {
        "name": "authorization",
        "type": "string",
        "default": None,
        # Hugging Face's page asks for 'Bearer: hf_****' (a Hugging Face token, and a colon the
        # header does not have); Vitrine's /hf/ route takes a Vitrine key instead.
        "description": (
            "Authentication header in the form `'Bearer vt_****'` when `vt_****` is your "
            "Vitrine API key; create one on [your account page](/account/). Vitrine's `/hf/` "
            "route takes a Vitrine key, not a Hugging Face `hf_` token."
        ),
    },
    {
        "name": "x-use-cache",
        "type": "boolean",
        "default": True,
        # Hugging Face's text describes its own cache ("Most models ... are deterministic",
        # a link to its caching docs); this is Vitrine's (playground/flavours/hf.py,
        # VITRINE_HF_CACHE_TTL), as the "Does Vitrine cache results?" FAQ says it.
        "description": (
            "On Vitrine's route: Vitrine's result cache, per account. An identical call from "
            "your account (same model revision, route, image bytes and threshold) within "
            "24 hours is answered with the stored result, without running or charging again "
            "(its response headers say X-Vitrine-Cache: hit and X-Vitrine-Cost: 0); an identical "
            "call still running is waited for instead of run twice. Set it to `false` to run "
            "the call anew: it is charged. Vitrine's `/v1/` format and its Cloudflare-compatible "
            "route never use this cache."
        ),
    },
    {
        "name": "x-wait-for-model",
        "type": "boolean",
        "default": False,
        "description": (
            "If the model is not ready, wait for it instead of receiving 503. It is advised to "
            "only set this flag to true after receiving a 503 error, as it will limit hanging "
            "in your application to known places. On Vitrine's route: with `false`, a call "
            "whose estimated wait is over 30 seconds is answered `503` at once, with "
            "`estimated_time` and a Retry-After header, nothing queued or charged, and any other "
            "waits up to 30 seconds; with `true` it waits up to 300 seconds."
        ),
    },
]

# Cloudflare Workers AI, verbatim from its model page ("API Schemas").
CLOUDFLARE_INPUT_SCHEMA = {
    "oneOf": [
        {
            "type": "string",
            "format": "binary",
            "description": "The image to use for detection",
        },
        {
            "type": "object",
            "properties": {
                "image": {
                    "type": "array",
                    "description": (
                        "An array of integers that represent the image data constrained to "
                        "8-bit unsigned integer values"
                    ),
                    "items": {
                        "type": "number",
                        "description": "A value between 0 and 255 (unsigned 8bit)",
                    },
                }
            },
        },
    ]
}

CLOUDFLARE_OUTPUT_SCHEMA = {
    "type": "array",
    "contentType": "application/json",
    "description": "An array of detected objects within the input image",
    "items": {
        "type": "object",
        "properties": {
            "score": {
                "type": "number",
                "description": (
                    "Confidence score indicating the likelihood that the detection is correct"
                ),
            },
            "label": {
                "type": "string",
                "description": "The class label or name of the detected object",
            },
            "box": {
                "type": "object",
                "description": "Coordinates defining the bounding box around the detected object",
                "properties": {
                    "xmin": {
                        "type": "number",
                        "description": (
                            "The x-coordinate of the top-left corner of the bounding box"
                        ),
                    },
                    "ymin": {
                        "type": "number",
                        "description": (
                            "The y-coordinate of the top-left corner of the bounding box"
                        ),
                    },
                    "xmax": {
                        "type": "number",
                        "description": (
                            "The x-coordinate of the bottom-right corner of the bounding box"
                        ),
                    },
                    "ymax": {
                        "type": "number",
                        "description": (
                            "The y-coordinate of the bottom-right corner of the bounding box"
                        ),
                    },
                },
            },
        },
    },
}

OBJECT_DETECTION = {
    "slug": "object-detection",
    "name": "Object detection",
    "description": (
        "Object detection models identify objects of certain defined classes in an image. "
        "They receive an image as input and return the detected objects: for each one a "
        "bounding box, a class label and a confidence score (bounding boxes, labels and "
        "scores, as JSON; they do not return an annotated image).\n\n"
        "For more details about the `object-detection` task, see Hugging Face's "
        "[dedicated page](https://huggingface.co/tasks/object-detection).\n\n"
        "### Recommended models\n\n"
        "- facebook/detr-resnet-50: Solid object detection model pre-trained on the COCO 2017 "
        "dataset.\n\n"
        "Explore all models available for this task on Hugging Face "
        "[here](https://huggingface.co/models?inference=warm&pipeline_tag=object-detection"
        "&sort=trending)."
    ),
    "modality_in": "image",
    "modality_out": "json",
    "schemas": [
        {
            "flavour": "vitrine",
            "title": "Vitrine API",
            "description": (
                "Vitrine's own inference API under `/v1/`. Authenticate with your Vitrine API "
                "key: `Authorization: Bearer <your Vitrine API key>`.\n\n"
                "The request body is Hugging Face-compatible: JSON "
                '`{"inputs": "<base64 image>", "parameters": {"threshold": 0.9}}`, or the raw '
                "image bytes as the body when no parameters are needed.\n\n"
                "The response is the Hugging Face shape: a JSON array of "
                '`{"label", "score", "box": {"xmin", "ymin", "xmax", "ymax"}}`, with box '
                "coordinates in integer pixels of the input image.\n\n"
                "Each image is charged to your wallet at the route's per-image price; with an "
                "empty wallet the call fails with `402 insufficient_credits`."
            ),
            "input_schema": VITRINE_INPUT_SCHEMA,
            "output_schema": VITRINE_OUTPUT_SCHEMA,
            "headers": [
                {
                    "name": "authorization",
                    "type": "string",
                    "default": None,
                    "description": "`Bearer <key>` with your Vitrine API key.",
                }
            ],
            "source_url": "",
            "position": 10,
        },
        {
            "flavour": "hf-inference",
            "title": "Hugging Face Inference",
            "description": (
                "Vitrine's Hugging Face-compatible route, "
                "`POST /hf/models/<organisation>/<name>`, takes the request and answers the "
                "response of the object-detection API of Hugging Face Inference Providers "
                "(`hf-inference`), so Hugging Face's clients work unchanged with your Vitrine "
                "key. `inputs` is the image as a base64-encoded string, or the request body is "
                "the raw image bytes when no `parameters` are provided. Each call that runs is "
                "charged to your Vitrine wallet at the model's Vitrine price (a cached answer "
                "costs nothing: see `x-use-cache`).\n\n"
                "The schemas below are Hugging Face's. The headers table says what each header "
                "does on Vitrine's route (your Vitrine key, Vitrine's own result cache); for "
                "what they do on Hugging Face's own API, see its parameters "
                "[guide](https://huggingface.co/docs/inference-providers/parameters)."
            ),
            "input_schema": HF_INPUT_SCHEMA,
            "output_schema": HF_OUTPUT_SCHEMA,
            "headers": HF_HEADERS,
            "source_url": HF_TASK_URL,
            "position": 20,
        },
        {
            "flavour": "cloudflare-workers-ai",
            "title": "Cloudflare Workers AI",
            "description": (
                "Cloudflare Workers AI runs DETR as `@cf/facebook/detr-resnet-50` (beta). Send "
                "the image as the raw request body, or as JSON "
                '`{"image": [...]}` with the image bytes as integers 0-255:\n\n'
                "```\n"
                "curl https://api.cloudflare.com/client/v4/accounts/$CLOUDFLARE_ACCOUNT_ID/ai/run/"
                "@cf/facebook/detr-resnet-50 \\\n"
                "  -X POST \\\n"
                '  -H "Authorization: Bearer $CLOUDFLARE_API_TOKEN" \\\n'
                '  --data-binary "@pedestrian-boulevard-manhattan-crossing.jpg"\n'
                "```\n\n"
                "From a Worker: "
                '`env.AI.run("@cf/facebook/detr-resnet-50", { image: [...new Uint8Array(blob)] })`.'
                "\n\n"
                "The response is an array of `{score, label, box: {xmin, ymin, xmax, ymax}}`."
            ),
            "input_schema": CLOUDFLARE_INPUT_SCHEMA,
            "output_schema": CLOUDFLARE_OUTPUT_SCHEMA,
            "headers": [
                {
                    "name": "authorization",
                    "type": "string",
                    "default": None,
                    "description": "`Bearer $CLOUDFLARE_API_TOKEN`: your Cloudflare API token.",
                }
            ],
            "source_url": CLOUDFLARE_DETR_URL,
            "position": 30,
        },
    ],
}

# --- Cards --------------------------------------------------------------------------------

DETR_CARD = {
    "org": "facebook",
    "slug": "detr-resnet-50",
    "display_name": "DETR ResNet-50",
    "family": "DETR",
    "task": "object-detection",
    "modalities": ["image"],
    "summary": "Meta's transformer-based object detector. Returns bounding boxes + labels.",
    "description": (
        "DETR ResNet-50 (`facebook/detr-resnet-50`) is an image model from Meta: a "
        "transformer-based object detector that returns bounding boxes, labels and confidence "
        "scores. It is the DEtection TRansformer (DETR) model trained end-to-end on COCO 2017 "
        "object detection (118k annotated images): a ResNet-50 backbone feeds a transformer "
        "encoder-decoder that predicts the set of objects directly.\n\n"
        "Best for: Object detection, Visual QA preprocessing, Inventory counting.\n\n"
        "## Pricing\n\n"
        "On Vitrine it costs {price} per image. You pay pass-through: the 5% platform fee is "
        "applied at credit top-up, not per call. It is also available through Cloudflare "
        "Workers AI (beta) at {price:cloudflare} per inference request, where you bring your own "
        "Cloudflare API token and pay Cloudflare directly."
    ),
    "status": "live",
    "launch_date": None,
    "deprecation_date": None,
    "sunset_date": None,
    "replacement": None,
    "coming_soon_note": "",
    "license": "Apache-2.0",
    "open_weight": True,
    "parameters": 41_000_000,
    "gflops": Decimal("86"),
    "architecture": "DETR: ResNet-50 backbone + transformer encoder-decoder",
    "backbone": "ResNet-50",
    "training_data": "COCO 2017 (118k annotated images)",
    "paper_url": "https://arxiv.org/abs/2005.12872",
    "source_url": "https://huggingface.co/facebook/detr-resnet-50",
    # Neither seed page dates these weights. They were first published with the paper: the
    # facebookresearch/detr repository released the R50 checkpoint with arXiv 2005.12872 on
    # 26 May 2020 (the month, as the other cards' dates are; theirs are Hub dates, seed 002
    # and 004). /v1/models' `created` reads it.
    "published_on": datetime.date(2020, 5, 1),
    "updated_on": None,
    "date_precision": "month",
    "downloads_per_month": None,
    "strengths": ["End-to-end object detection", "Open-weight"],
    "use_cases": ["Object detection", "Visual QA preprocessing", "Inventory counting"],
    "checkpoint_repo": "facebook/detr-resnet-50",
    # The no_timm branch holds the same weights for transformers' native ResNet backbone.
    "checkpoint_revision": "no_timm",
    "position": 10,
    "specs": [
        ("Task", "Object Detection"),
        ("Architecture", "DETR: ResNet-50 backbone + transformer encoder-decoder"),
        ("Parameters", "41M"),
        ("GFLOPs", "86"),
        # Its published preprocessor_config.json (playground/runtime/fit.py's table).
        ("Input size", "800 px shortest edge, longest edge at most 1333 px"),
        ("License", "Apache-2.0"),
        ("Training Data", "COCO 2017 (118k annotated images)"),
    ],
    "benchmarks": [
        {
            "title": "COCO 2017 val",
            "dataset": "COCO val2017",
            "columns": [
                "Epochs",
                "Params (M)",
                "GFLOPs",
                # The paper timed TorchScript models in PyTorch on a V100 (Table 1).
                "FPS (V100, PyTorch)",
                "AP",
                "AP50",
                "AP75",
                "AP_S",
                "AP_M",
                "AP_L",
            ],
            "caption": (
                "DETR with a ResNet-50 backbone trained for 500 epochs on COCO 2017: 42.0 AP "
                "with 41M parameters and 86 GFLOPs, at 28 FPS on a V100 GPU."
            ),
            "source": (
                "Carion et al. 2020, End-to-End Object Detection with Transformers (ECCV 2020), "
                "Table 1"
            ),
            "source_url": "https://arxiv.org/abs/2005.12872",
            "rows": [
                {
                    "label": "DETR-R50",
                    "values": [
                        "500",
                        "41",
                        "86",
                        "28",
                        "42.0",
                        "62.4",
                        "44.2",
                        "20.5",
                        "45.8",
                        "61.1",
                    ],
                    "model": DETR,
                    "is_this_model": True,
                },
            ],
        },
    ],
    "routes": [
        {
            "slug": "vitrine",
            "provider": "Vitrine",
            "provider_url": "",
            "provider_model_id": DETR,
            "is_own": True,
            "unit": "image",
            "price": Decimal("0.0002"),
            "is_estimate": False,
            "is_beta": False,
            "byok_available": False,
            "schema_flavour": "vitrine",
        },
        {
            "slug": "cloudflare",
            "provider": "Cloudflare Workers AI",
            "provider_url": CLOUDFLARE_DETR_URL,
            "provider_model_id": "@cf/facebook/detr-resnet-50",
            "is_own": False,
            "unit": "request",
            "price": Decimal("0.0000075"),
            "is_estimate": False,
            "is_beta": True,
            "byok_available": True,
            "schema_flavour": "cloudflare-workers-ai",
        },
    ],
    "faq": [
        (
            "What is DETR ResNet-50?",
            "Meta's transformer-based object detector. Returns bounding boxes + labels, each "
            "with a confidence score. It is an image model from Meta, available on Vitrine "
            "under the model id `facebook/detr-resnet-50`.",
        ),
        (
            "How much does DETR ResNet-50 cost on Vitrine?",
            "{price} per image. You pay the pass-through price; Vitrine's 5% platform fee is "
            "applied when you top up credit, not per call. That is also the price of a call "
            "to Vitrine's Cloudflare-compatible route (`/client/v4/.../ai/run/@cf/"
            "facebook/detr-resnet-50`, what the `cloudflare` SDK calls with your Vitrine key): "
            "{price} per image, from your wallet. {price:cloudflare} per request is Cloudflare's "
            "own price, on the Cloudflare Workers AI route (beta): Cloudflare runs the model on "
            "your own Cloudflare token and you pay Cloudflare.",
        ),
        (
            "How do I call DETR ResNet-50 from my code?",
            "Send a `POST` to Vitrine's `/v1/` inference API for `facebook/detr-resnet-50` with "
            "your Vitrine API key in the `Authorization: Bearer <key>` header. The body is "
            'Hugging Face-compatible: `{"inputs": "<base64 image>", "parameters": '
            '{"threshold": 0.9}}`, or the raw image bytes. The response is a JSON array of '
            '`{"label", "score", "box": {"xmin", "ymin", "xmax", "ymax"}}` with integer pixel '
            "coordinates. With an empty wallet the call fails with `402 insufficient_credits`.",
        ),
        (
            "Does DETR ResNet-50 support streaming, tool calling, vision, and JSON mode?",
            "Streaming: no. Tool calling: no. Vision: yes, it takes an image as its input (and "
            "no text). JSON: always; every response is a JSON array of detections (label, "
            "score, box), so there is no separate JSON mode. Caching: results, on the "
            'Hugging Face route (see "Does Vitrine cache results?").',
        ),
        (
            "What are the best use cases for DETR ResNet-50?",
            "Object detection, Visual QA preprocessing, Inventory counting. Key strengths: "
            "End-to-end object detection; Open-weight.",
        ),
        (
            "Can I bring my own key (BYOK)?",
            "Yes, on the Cloudflare Workers AI route (`@cf/facebook/detr-resnet-50`, beta); "
            "there is no Meta key, as Meta publishes the DETR weights but sells no inference "
            "for them. Bring your Cloudflare API token: calls on that route are not charged to "
            "your Vitrine wallet and carry no 5% platform fee; you pay Cloudflare directly "
            "({price:cloudflare} per request).",
        ),
        result_cache_faq(DETR),
        SAME_DETECTIONS_FAQ,
    ],
    "related": [CONDITIONAL_DETR, RT_DETR, YOLOS_TINY],
}

CONDITIONAL_DETR_CARD = {
    "org": "microsoft",
    "slug": "conditional-detr-resnet-50",
    "display_name": "Conditional DETR ResNet-50",
    "family": "DETR",
    "task": "object-detection",
    "modalities": ["image"],
    "summary": (
        "Conditional DETR ResNet-50 is a detection model that uses a conditional cross-attention "
        "mechanism for fast training convergence, trained on COCO 2017 for object detection."
    ),
    "description": (
        "Conditional DETR with ResNet-50 backbone is an object detection transformer model that "
        "uses a conditional cross-attention mechanism to achieve fast training convergence while "
        "maintaining high accuracy. It is trained end-to-end on COCO 2017 (118k annotated "
        "images) and addresses the slow convergence of the original DETR by learning a "
        "conditional spatial query from the decoder embedding. This spatial query allows each "
        "cross-attention head to attend to a distinct region around the object, reducing "
        "dependence on content embeddings and easing optimization.\n\n"
        "## On Vitrine\n\n"
        "Vitrine will host it as a managed API. Developers can deploy it for general-purpose "
        "object detection without handling model installation or inference infrastructure."
    ),
    "status": "coming_soon",
    "launch_date": None,
    "deprecation_date": None,
    "sunset_date": None,
    "replacement": None,
    "coming_soon_note": (
        "We're benchmarking and onboarding Conditional DETR ResNet-50 as a hosted API on "
        "Vitrine. Sign in and be ready when it lands, or tell us you want it "
        "and we'll prioritize it."
    ),
    "license": "Apache-2.0",
    "open_weight": True,
    "parameters": 44_000_000,
    "gflops": Decimal("90"),
    "architecture": "Conditional DETR with ResNet-50 backbone (transformer encoder-decoder)",
    "backbone": "ResNet-50",
    "training_data": "COCO 2017 (118k annotated images)",
    "paper_url": "https://arxiv.org/abs/2108.06152",
    "source_url": "https://huggingface.co/microsoft/conditional-detr-resnet-50",
    "published_on": datetime.date(2022, 9, 1),
    "updated_on": datetime.date(2024, 5, 1),
    "date_precision": "month",
    "downloads_per_month": None,
    "strengths": [
        "Converges 6.7\u00d7 faster than DETR with R50 and R101 backbones (10\u00d7 with the "
        "DC5 backbones), per the paper; at 50 epochs it reaches 41.0 AP in the official "
        "repository's model zoo, against DETR-R50's 34.8 AP at 50 epochs and 42.0 AP after 500.",
        "Built on the standard ResNet-50 backbone for broad compatibility and efficient inference.",
        "Licensed under Apache-2.0.",
    ],
    "use_cases": [
        "Training or fine-tuning a DETR-style detector on a tight compute budget: comparable "
        "accuracy to DETR in far fewer epochs",
        "Detection of common objects (COCO categories) in photographs",
        "Transfer learning for custom object detection tasks",
    ],
    "checkpoint_repo": "microsoft/conditional-detr-resnet-50",
    "checkpoint_revision": "main",
    "position": 20,
    "specs": [
        ("Task", "Object Detection"),
        ("Architecture", "Conditional DETR with ResNet-50 backbone (transformer encoder-decoder)"),
        ("Parameters", "44M"),
        ("Input size", "800 px shortest edge, longest edge at most 1333 px"),
        ("License", "Apache-2.0"),
        ("Training Data", "COCO 2017 (118k annotated images)"),
    ],
    "benchmarks": [
        {
            "title": "Benchmark Results (COCO 2017 val)",
            "dataset": "COCO val2017",
            # The seed page labels the last four columns "AP" four times; they are the
            # DETR paper's AP, AP_S, AP_M and AP_L (DETR-R50 500 epochs: 42.0/20.5/45.8/61.1).
            "columns": ["Epochs", "Params (M)", "FLOPs (G)", "AP", "AP_S", "AP_M", "AP_L"],
            "caption": (
                "The model achieves 41.0 AP after 50 epochs of training with 44M parameters and "
                "90G FLOPs, versus DETR-R50 at 50 epochs (34.8 AP) and DETR-R50 at 500 epochs "
                "(42.0 AP)."
            ),
            # These figures are the official repository's model zoo (its README says they
            # differ slightly from the paper's); the paper is the method's source.
            "source": (
                "The Atten4Vis/ConditionalDETR repository's model zoo (its numbers differ "
                "slightly from the paper's); method: Meng et al. 2021, Conditional DETR for "
                "Fast Training Convergence (ICCV 2021)"
            ),
            "source_url": "https://github.com/Atten4Vis/ConditionalDETR",
            "rows": [
                {
                    "label": "Conditional DETR-R50",
                    "values": ["50", "44", "90", "41.0", "20.6", "44.3", "59.3"],
                    "model": CONDITIONAL_DETR,
                    "is_this_model": True,
                },
                {
                    "label": "DETR-R50",
                    "values": ["50", "41", "86", "34.8", "13.9", "37.3", "54.4"],
                    "model": DETR,
                    "is_this_model": False,
                },
                {
                    "label": "DETR-R50",
                    "values": ["500", "41", "86", "42.0", "20.5", "45.8", "61.1"],
                    "model": DETR,
                    "is_this_model": False,
                },
            ],
        },
    ],
    "routes": [
        {
            "slug": "vitrine",
            "provider": "Vitrine",
            "provider_url": "",
            "provider_model_id": CONDITIONAL_DETR,
            "is_own": True,
            "unit": "image",
            # The seed page gives no price: an estimate, set at launch.
            "price": Decimal("0.0002"),
            "is_estimate": True,
            "is_beta": False,
            "byok_available": False,
            "schema_flavour": "vitrine",
        },
    ],
    "faq": [
        (
            "What is Conditional DETR ResNet-50 best used for?",
            "Object detection with faster training convergence compared to original DETR, "
            "achieving comparable accuracy in fewer epochs.",
        ),
        ("How many parameters does Conditional DETR ResNet-50 have?", "44 million parameters."),
        ("What license is Conditional DETR ResNet-50 released under?", "Apache-2.0."),
        (
            "How will I call Conditional DETR ResNet-50 on Vitrine?",
            "Use Vitrine's `/v1/` inference API with your Vitrine API key "
            "(`Authorization: Bearer <key>`); send an image as input and receive bounding "
            "boxes, class labels and confidence scores in JSON format.",
        ),
        (
            "What are the input and output formats?",
            "Input: a base64-encoded image (or the raw image bytes). Output: JSON with detected "
            "objects, confidence scores, and bounding box coordinates.",
        ),
        SAME_DETECTIONS_SOON_FAQ,
    ],
    "related": [DETR, RT_DETR, YOLOS_TINY],
}

RT_DETR_CARD = {
    "org": "PekingU",
    "slug": "rtdetr_r50vd",
    "display_name": "RT-DETR R50",
    "family": "RT-DETR",
    "task": "object-detection",
    "modalities": ["image"],
    "summary": (
        "RT-DETR R50 is a real-time end-to-end object detection model that eliminates NMS, "
        "achieving high speed and accuracy with a ResNet-50 backbone."
    ),
    "description": (
        "RT-DETR R50vd is a real-time end-to-end object detection model that uses a "
        "Transformer-based architecture to eliminate the need for Non-Maximum Suppression "
        "(NMS), achieving high accuracy with low latency. It was accepted to CVPR 2024.\n\n"
        "## Architecture\n\n"
        "The model employs an efficient hybrid encoder that decouples intra-scale interaction "
        "(via attention) and cross-scale fusion (via CNN) to process multi-scale features from "
        "the backbone. Uncertainty-minimal query selection provides high-quality initial "
        "queries to the decoder, and the decoder can be adjusted (number of layers) to flexibly "
        "trade off speed and accuracy without retraining.\n\n"
        "## Performance\n\n"
        "On COCO val2017, RT-DETR-R50 achieves 53.1% AP at 108 FPS on a T4 GPU (batch size 1), "
        "outperforming YOLO detectors of the same scale in both speed and accuracy. It surpasses "
        "DINO-R50 by 2.2% AP and approximately 21\u00d7 in FPS. With Objects365 pre-training, "
        "RT-DETR-R50 reaches 55.3% AP: that is another checkpoint, "
        "`PekingU/rtdetr_r50vd_coco_o365`; this one, `PekingU/rtdetr_r50vd`, is trained on "
        "COCO alone and scores 53.1% AP."
    ),
    "status": "coming_soon",
    "launch_date": None,
    "deprecation_date": None,
    "sunset_date": None,
    "replacement": None,
    "coming_soon_note": (
        "We're benchmarking and onboarding RT-DETR R50 as a hosted API on Vitrine. No API "
        "provider serves it yet. Sign in and be ready when it lands, or tell "
        "us you want it and we'll prioritize it."
    ),
    "license": "Apache-2.0",
    "open_weight": True,
    "parameters": 42_000_000,
    "gflops": Decimal("136"),
    "architecture": "RT-DETR with ResNet-50 backbone and efficient hybrid encoder",
    "backbone": "ResNet-50-vd",
    "training_data": "COCO 2017 (118k training images)",
    "paper_url": "https://arxiv.org/abs/2304.08069",
    "source_url": "https://huggingface.co/PekingU/rtdetr_r50vd",
    "published_on": datetime.date(2024, 5, 1),
    "updated_on": datetime.date(2025, 2, 1),
    "date_precision": "month",
    "downloads_per_month": 63_700,
    "strengths": [
        "Real-time: 108 FPS on a T4 GPU (TensorRT FP16, batch size 1)",
        "53.1 AP on COCO val2017, trained on COCO alone (the Objects365-pre-trained "
        "checkpoint, PekingU/rtdetr_r50vd_coco_o365, reaches 55.3 AP)",
        "End-to-end: no NMS post-processing",
        "Speed/accuracy trade-off by decoder layers, without retraining",
    ],
    "use_cases": [
        "Real-time object detection",
        "Latency-sensitive applications such as autonomous driving or surveillance",
    ],
    "checkpoint_repo": "PekingU/rtdetr_r50vd",
    "checkpoint_revision": "main",
    "position": 30,
    "specs": [
        ("Task", "Object Detection"),
        ("Architecture", "RT-DETR with ResNet-50 backbone and efficient hybrid encoder"),
        ("Parameters", "42M"),
        ("Input size", "640x640 (every image resized to it)"),
        ("Training Data", "COCO 2017 (118k training images)"),
        ("License", "Apache-2.0"),
    ],
    "benchmarks": [
        {
            "title": "Benchmark Results (COCO val2017)",
            "dataset": "COCO val2017",
            "columns": [
                "Epochs",
                "Params (M)",
                "GFLOPs",
                # The paper timed TensorRT FP16 engines on a T4: not comparable with DETR's.
                "FPS (T4, TensorRT FP16, bs=1)",
                "AP",
                "AP50",
                "AP75",
                "AP_S",
                "AP_M",
                "AP_L",
            ],
            "caption": (
                "RT-DETR-R50 (this checkpoint, trained on COCO alone) reaches 53.1 AP at "
                "108 FPS on a T4 GPU (TensorRT FP16, batch size 1). The rows marked Obj365 are "
                "other checkpoints, pre-trained on Objects365: RT-DETR-R50 (Obj365), "
                "PekingU/rtdetr_r50vd_coco_o365, reaches 55.3 AP. The R34 row is the model "
                "card's: the paper and the official repository give RT-DETR-R34 48.9 AP and "
                "66.8 AP50 at 92 GFLOPs and 161 FPS (and RT-DETR-R18 60 GFLOPs)."
            ),
            # The figures as the model card prints them (seed 004 shows them); its R34 row
            # differs from the paper's (Zhao et al. 2024) and its repository's, as the caption says.
            "source": (
                "The PekingU/rtdetr_r50vd model card (Hugging Face); method: Zhao et al. 2024, "
                "DETRs Beat YOLOs on Real-time Object Detection (CVPR 2024)"
            ),
            "source_url": "https://huggingface.co/PekingU/rtdetr_r50vd",
            "rows": [
                {
                    "label": label,
                    "values": values.split(),
                    "model": RT_DETR if label == "RT-DETR-R50" else None,
                    "is_this_model": label == "RT-DETR-R50",
                }
                for label, values in [
                    ("RT-DETR-R18", "72 20 60.7 217 46.5 63.8 50.4 28.4 49.8 63.0"),
                    ("RT-DETR-R34", "72 31 91.0 172 48.5 66.2 52.3 30.2 51.9 66.2"),
                    ("RT-DETR-R50", "72 42 136 108 53.1 71.3 57.7 34.8 58.0 70.0"),
                    ("RT-DETR-R101", "72 76 259 74 54.3 72.7 58.6 36.0 58.8 72.1"),
                    ("RT-DETR-R18 (Obj365)", "60 20 61 217 49.2 66.6 53.5 33.2 52.3 64.8"),
                    ("RT-DETR-R50 (Obj365)", "24 42 136 108 55.3 73.4 60.1 37.9 59.9 71.8"),
                    ("RT-DETR-R101 (Obj365)", "24 76 259 74 56.2 74.6 61.3 38.3 60.5 73.5"),
                ]
            ],
        },
    ],
    "routes": [
        {
            "slug": "vitrine",
            "provider": "Vitrine",
            "provider_url": "",
            "provider_model_id": RT_DETR,
            "is_own": True,
            "unit": "image",
            "price": Decimal("0.000047"),  # ~$0.047 per 1k images, estimated, set at launch
            "is_estimate": True,
            "is_beta": False,
            "byok_available": False,
            "schema_flavour": "vitrine",
        },
    ],
    "faq": [
        (
            "What is RT-DETR R50 best used for?",
            "It excels at real-time object detection (108 FPS on T4) with high accuracy "
            "(53.1 AP on COCO), making it ideal for latency-sensitive applications like "
            "autonomous driving or surveillance.",
        ),
        (
            "How does RT-DETR R50 compare to YOLO detectors?",
            "Per the paper (Zhao et al. 2024), RT-DETR R50 outperforms YOLOv8-L in both speed "
            "and accuracy on COCO val2017: 53.1 AP at 108 FPS against YOLOv8-L's 52.9 AP at "
            "71 FPS, on a T4 GPU. YOLOv8-X is more accurate (53.9 AP) but slower (50 FPS). "
            "RT-DETR also eliminates the need for NMS post-processing, simplifying the pipeline.",
        ),
        (
            "What are the input and output formats?",
            "It accepts images (typically resized to 640x640) and returns bounding boxes, "
            "class labels, and confidence scores.",
        ),
        (
            "How can I call RT-DETR R50 via the Vitrine API?",
            "Once it is live, use Vitrine's `/v1/` inference API with your Vitrine API key "
            "(`Authorization: Bearer <key>`); send an image as base64 (or raw bytes) and "
            "receive detection results in JSON.",
        ),
        (
            "Is RT-DETR R50 free to use?",
            "The weights are: the model is released under the Apache-2.0 license, allowing "
            "commercial and research use with attribution. Hosted on Vitrine it will cost "
            "~{price_per_1k} per 1k images (estimated, set at launch).",
        ),
        SAME_DETECTIONS_SOON_FAQ,
    ],
    "related": [DETR, CONDITIONAL_DETR, YOLOS_TINY],
}

YOLOS_TINY_CARD = {
    "org": "hustvl",
    "slug": "yolos-tiny",
    "display_name": "YOLOS tiny",
    "family": "YOLOS",
    "task": "object-detection",
    "modalities": ["image"],
    "summary": (
        "A small, fast detector: a tiny Vision Transformer that finds objects in a sequence of "
        "image patches."
    ),
    "description": (
        "YOLOS (You Only Look at One Sequence) detects objects with a plain Vision Transformer: "
        "the image is cut into 16x16 patches and 100 learned detection tokens are appended to "
        "the sequence; each detection token predicts one box and label, trained end-to-end "
        "like DETR.\n\n"
        "`hustvl/yolos-tiny` is the smallest variant: a ViT-tiny encoder (hidden size 192, "
        "12 layers, 3 attention heads) with 6.5M parameters, fine-tuned on COCO 2017. Images "
        "are resized to a 512 px shortest edge (at most 1333 px), which keeps it at 18.8 GFLOPs "
        "and fast enough for CPU inference.\n\n"
        "## Performance\n\n"
        "28.7 AP on COCO 2017 val (Fang et al. 2021): less accurate than DETR ResNet-50 "
        "(42.0 AP), at a fraction of its size and compute."
    ),
    "status": "live",
    "launch_date": None,
    "deprecation_date": None,
    "sunset_date": None,
    "replacement": None,
    "coming_soon_note": "",
    "license": "Apache-2.0",
    "open_weight": True,
    "parameters": 6_500_000,
    "gflops": Decimal("18.8"),
    "architecture": "YOLOS: ViT-tiny encoder with 100 detection tokens",
    "backbone": "ViT-tiny (DeiT-tiny)",
    "training_data": "COCO 2017 (118k annotated images)",
    "paper_url": "https://arxiv.org/abs/2106.00666",
    "source_url": "https://huggingface.co/hustvl/yolos-tiny",
    # No seed page dates these weights. They were first published with the paper: the
    # hustvl/YOLOS repository released YOLOS-Ti with arXiv 2106.00666 on 1 June 2021 (the
    # month, as the other cards' dates are). /v1/models' `created` reads it.
    "published_on": datetime.date(2021, 6, 1),
    "updated_on": None,
    "date_precision": "month",
    "downloads_per_month": None,
    "strengths": ["Small: 6.5M parameters", "Fast CPU inference", "Open-weight"],
    "use_cases": [
        "Object detection on CPU",
        "High-volume detection at low cost",
        "Prototyping detection pipelines",
    ],
    "checkpoint_repo": "hustvl/yolos-tiny",
    "checkpoint_revision": "main",
    "position": 40,
    "specs": [
        ("Task", "Object Detection"),
        ("Architecture", "YOLOS: ViT-tiny encoder (hidden size 192) with 100 detection tokens"),
        ("Parameters", "6.5M"),
        ("GFLOPs", "18.8"),
        ("Input size", "512 px shortest edge, longest edge at most 1333 px"),
        ("License", "Apache-2.0"),
        ("Training Data", "COCO 2017 (118k annotated images)"),
    ],
    "benchmarks": [
        {
            "title": "COCO 2017 val",
            "dataset": "COCO val2017",
            "columns": ["Params (M)", "GFLOPs", "AP"],
            "caption": "YOLOS-Ti at a 512 px input: 28.7 AP with 6.5M parameters.",
            "source": (
                "Fang et al. 2021, You Only Look at One Sequence: Rethinking Transformer in "
                "Vision through Object Detection (NeurIPS 2021)"
            ),
            "source_url": "https://arxiv.org/abs/2106.00666",
            "rows": [
                {
                    "label": "YOLOS-Ti",
                    "values": ["6.5", "18.8", "28.7"],
                    "model": YOLOS_TINY,
                    "is_this_model": True,
                },
            ],
        },
    ],
    "routes": [
        {
            "slug": "vitrine",
            "provider": "Vitrine",
            "provider_url": "",
            "provider_model_id": YOLOS_TINY,
            "is_own": True,
            "unit": "image",
            "price": Decimal("0.0001"),
            "is_estimate": False,
            "is_beta": False,
            "byok_available": False,
            "schema_flavour": "vitrine",
        },
    ],
    "faq": [
        (
            "When should I pick YOLOS tiny over DETR ResNet-50?",
            "When speed and cost matter more than accuracy: YOLOS tiny has 6.5M parameters and "
            "runs fast on a CPU, but scores 28.7 AP on COCO 2017 val against DETR ResNet-50's "
            "42.0 AP.",
        ),
        (
            "How much does YOLOS tiny cost?",
            "{price} per image. You pay the pass-through price; Vitrine's 5% platform fee is "
            "applied when you top up credit, not per call.",
        ),
        (
            "How do I call YOLOS tiny from my code?",
            "Send a `POST` to Vitrine's `/v1/` inference API for `hustvl/yolos-tiny` with your "
            "Vitrine API key (`Authorization: Bearer <key>`), the image as base64 in `inputs` "
            "or as raw bytes. You get back a JSON array of label, score and integer pixel box. "
            "With an empty wallet the call fails with `402 insufficient_credits`.",
        ),
        result_cache_faq(YOLOS_TINY),
        SAME_DETECTIONS_FAQ,
    ],
    "related": [DETR, CONDITIONAL_DETR, RT_DETR],
}

ALL_CARDS = [DETR, CONDITIONAL_DETR, RT_DETR, YOLOS_TINY]

SEED = {
    "organisations": [
        {
            "name": "Meta",
            "slug": "facebook",
            "url": "https://ai.meta.com/",
            "description": (
                "Meta's AI research (FAIR). Publishes its models on Hugging Face under the "
                "`facebook` namespace."
            ),
        },
        {
            "name": "Microsoft",
            "slug": "microsoft",
            "url": "https://www.microsoft.com/en-us/research/",
            "description": "Microsoft Research. Publishes its models under `microsoft`.",
        },
        {
            "name": "Peking University",
            "slug": "PekingU",
            "url": "https://huggingface.co/PekingU",
            "description": "Peking University. Publishes the RT-DETR checkpoints under `PekingU`.",
        },
        {
            "name": "HUST Vision Lab",
            "slug": "hustvl",
            "url": "https://github.com/hustvl",
            "description": (
                "The Vision Lab of Huazhong University of Science and Technology, authors of "
                "YOLOS. Publishes its models under `hustvl`."
            ),
        },
    ],
    "tasks": [OBJECT_DETECTION],
    "cards": [DETR_CARD, CONDITIONAL_DETR_CARD, RT_DETR_CARD, YOLOS_TINY_CARD],
    "collections": [
        {
            "name": "Object detection",
            "slug": "object-detection",
            "description": "Models that find objects in an image: boxes, labels and scores.",
            "cards": ALL_CARDS,
        },
        {
            "name": "More from Meta",
            "slug": "meta",
            "description": "Models published by Meta.",
            "cards": [DETR],
        },
        {
            "name": "Open-weight",
            "slug": "open-weight",
            "description": "Models whose weights are published and free to download.",
            "cards": ALL_CARDS,
        },
        {
            "name": "Coming soon",
            "slug": "coming-soon",
            "description": "Models we are benchmarking and onboarding.",
            "cards": [CONDITIONAL_DETR, RT_DETR],
        },
        {
            "name": "Image models",
            "slug": "image-models",
            "description": "Models that take an image as input.",
            "cards": ALL_CARDS,
        },
    ],
}
