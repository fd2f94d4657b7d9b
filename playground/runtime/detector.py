"""Loading a transformers object detector once per process and running it on decoded images.

Any ``AutoModelForObjectDetection`` checkpoint with an image processor that has
``post_process_object_detection`` works: nothing here knows a model family. Output has the
shape of ``transformers.pipeline("object-detection")`` (same rounding, same labels), with
boxes clipped to the image and sorted by score.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import ExitStack, nullcontext
from dataclasses import dataclass, field
from typing import Any

import torch
from PIL import Image

from playground.runtime import backends
from playground.runtime.device_preprocess import DevicePreprocessor
from playground.runtime.env import CHOICES, env_bool, env_choice, env_int
from playground.runtime.fold import fold_batch_norms as fold_into_convolutions
from playground.runtime.fuse import fuse_activations
from playground.runtime.images import DecodedImage
from playground.runtime.preprocess import TablePreprocessor, reference_inputs
from playground.runtime.provenance import backend_description, is_untrained, resolved_revision
from playground.runtime.weights import CheckpointSpec, resolve_weights, weights_error

logger = logging.getLogger(__name__)

MAX_MODELS_ENV = "VITRINE_MAX_MODELS"
BATCH_SIZE_ENV = "VITRINE_BATCH_SIZE"
TORCH_THREADS_ENV = "VITRINE_TORCH_THREADS"
AUTOCAST_ENV = "VITRINE_AUTOCAST"
IMAGE_BACKEND_ENV = "VITRINE_IMAGE_BACKEND"
CHANNELS_LAST_ENV = "VITRINE_CHANNELS_LAST"
FOLD_BATCH_NORMS_ENV = "VITRINE_FOLD_BATCH_NORMS"
FUSE_LAYERS_ENV = "VITRINE_FUSE_LAYERS"
# auto: on CUDA devices only. On a CPU, Pillow's own resize is the faster one (measured on a
# Zen 4 EPYC: 28.6 ms against the table path's 15.8 ms for a 640x480 photo at DETR's size);
# on a GPU the CPU's share of every image is then only the JPEG decode.
DEVICE_PREPROCESS_ENV = "VITRINE_DEVICE_PREPROCESS"
DEVICE_PREPROCESS_CHOICES = CHOICES[DEVICE_PREPROCESS_ENV]

DEFAULT_MAX_MODELS = 2
# On an H200 (bench/bench_gpu.py, DETR-R50 at 800, bf16): batch 8 272 img/s, 32 387, 64 417;
# f32 112, 133, 135. 32 takes most of the gain at 9 GB peak in f32 (a 16 GB card holds it),
# and a worker only batches jobs already queued, so a short queue still runs at once.
DEFAULT_BATCH_SIZE = {"cpu": 1, "cuda": 32}
# The PIL image processors: torchvision is not installed on the CPU machines, and pinning the
# backend keeps preprocessing (and so the detections) the same wherever the worker runs.
DEFAULT_IMAGE_BACKEND = "pil"
AUTOCAST_DTYPES = dict(
    zip(CHOICES[AUTOCAST_ENV], (None, torch.float16, torch.bfloat16), strict=True)
)  # off, fp16, bf16
# How many images are preprocessed ahead of the forward pass, in batches: bounds memory.
PREFETCH_BATCHES = 4
# With the forwards on a thread of their own (a GPU): how many batches may wait for it or
# run on it while the next is built.
FORWARDS_AHEAD = 2
WARM_UP_SIZE = (640, 480)
STAGES = ("preprocess", "forward", "postprocess")

BF16_EMULATED_LOG = (
    "%s: bf16 asked for, but this CPU has no bf16 arithmetic (AVX-512 BF16 or AMX): running "
    "f32 (emulated bf16 would be slower than f32)"
)
BAD_THRESHOLD_MESSAGE = "threshold must be between 0 and 1, got {threshold!r}"
BAD_BATCH_SIZE_MESSAGE = "batch_size must be at least 1, got {batch_size!r}"


class RawOutputs(dict):
    """A backend's raw outputs (``logits``, ``pred_boxes``), readable as keys or attributes as
    the image processors' ``post_process_object_detection`` reads a model's outputs."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


@dataclass
class DetectionResult:
    """One image's detections (HF pipeline shape) and the seconds each stage took for it.

    Stage times of a batch are shared equally between its images, so summing ``timings``
    over a ``detect()`` call gives the call's time; on a GPU (``overlap_postprocess``,
    ``overlap_forward``) post-processing runs beside the next batch's forward and the
    forwards beside the next images' preprocessing, so the sum can exceed it.
    """

    detections: list[dict[str, Any]]
    timings: dict[str, float] = field(default_factory=dict)


class Detector:
    """A loaded model and its image processor on one device.

    ``backend`` says which code runs the forward: ``torch`` (``model``), ``openvino`` or
    ``onnxruntime`` (``runner``, an accepted export of the same checkpoint; ``model`` is then
    None). Pre- and post-processing are the same code whichever it is.
    """

    def __init__(
        self,
        *,
        model: torch.nn.Module | None,
        processor: Any,
        spec: CheckpointSpec,
        device: torch.device,
        autocast_dtype: torch.dtype | None = None,
        channels_last: bool = False,
        config: Any = None,
        runner: Any = None,
        precision: str = backends.DEFAULT_PRECISION,
        revision: str = "",
        image_backend: str = DEFAULT_IMAGE_BACKEND,
        device_preprocess: bool = False,
    ) -> None:
        self.model = model
        self.processor = processor
        self.spec = spec
        self.device = device
        self.runner = runner
        self.backend = runner.backend if runner is not None else "torch"
        self.precision = precision
        if precision == "bf16":
            # The labelled reduced-precision option: autocast on CPU (AMX/AVX-512 bf16) and
            # CUDA alike for torch; the OpenVINO runner was compiled with the bf16 hint.
            autocast_dtype = torch.bfloat16
        elif device.type != "cuda":
            autocast_dtype = None  # VITRINE_AUTOCAST is for CUDA only
        self.autocast_dtype = autocast_dtype
        self.channels_last = channels_last
        config = config if config is not None else model.config
        self.id2label: dict[int, str] = {int(k): v for k, v in config.id2label.items()}
        self.model_type: str = config.model_type
        # Set by make_checkpoints: the weights are random, the boxes meaningless.
        self.untrained: bool = is_untrained(config)
        # The commit or folder digest of the files loaded (runtime/provenance.py).
        self.revision = revision
        self.image_backend = image_backend
        # The processor's inputs through one table lookup, where checked identical (None:
        # the processor itself); see runtime/preprocess.py. With ``device_preprocess``, the
        # resize and the table on the model's device (runtime/device_preprocess.py), where
        # checked identical there.
        self.table_preprocessor = (
            DevicePreprocessor.for_processor(processor, device) if device_preprocess else None
        ) or TablePreprocessor.for_processor(processor)
        self.device_preprocess = isinstance(self.table_preprocessor, DevicePreprocessor)
        # On a GPU a batch's post-processing (on the CPU) runs while the next batch's
        # forward runs on the device, instead of leaving the device idle meanwhile; and the
        # forwards are launched from a thread of their own, so that the next images'
        # preprocessing (on this thread) no longer waits for them, nor they for it.
        self.overlap_postprocess = device.type == "cuda"
        self.overlap_forward = device.type == "cuda"
        # With overlap_forward every forward runs on the one forward thread (the warm-up's
        # and a one-batch call's too): the convolution kernels cuDNN chose for it stay chosen.
        self._forward_lane = _Lane("forward")
        self._postprocess_lane = _Lane("postprocess")

    def __repr__(self) -> str:
        return (
            f"<Detector {self.spec.label} {self.model_type} on {self.device} "
            f"({self.backend}, {self.precision})>"
        )

    @property
    def arithmetic(self) -> str:
        """The arithmetic of the forward pass: fp32, or fp16/bf16 (the bf16 option or
        CUDA autocast), or int8 (the int8 export)."""
        if self.precision in ("bf16", "int8"):
            return self.precision
        return {torch.float16: "fp16", torch.bfloat16: "bf16"}.get(self.autocast_dtype, "fp32")

    @property
    def provenance(self) -> dict[str, Any]:
        """What a job records about the weights and code that computed its boxes."""
        return {
            "revision": self.revision,
            "untrained": self.untrained,
            "backend": backend_description(
                self.device.type,
                self.image_backend + (f" on {self.device.type}" if self.device_preprocess else ""),
            )
            + f", {self.backend} forward",
            "precision": self.arithmetic,
        }

    @property
    def default_batch_size(self) -> int:
        default = DEFAULT_BATCH_SIZE.get(self.device.type, 1)
        return env_int(BATCH_SIZE_ENV, default) or default

    def preprocess(self, image: Image.Image) -> dict[str, torch.Tensor]:
        """The model inputs of one image, exactly as the HF pipeline builds them."""
        if self.table_preprocessor is not None:
            return self.table_preprocessor(image)
        return reference_inputs(self.processor, image)

    def preprocess_many(self, images: Sequence[Image.Image]) -> list[dict[str, torch.Tensor]]:
        """``preprocess`` of each image; on the device path, images of one size together."""
        if isinstance(self.table_preprocessor, DevicePreprocessor):
            return self.table_preprocessor.many(images)
        return [self.preprocess(image) for image in images]

    def forward(self, inputs: dict[str, torch.Tensor]) -> Any:
        """The raw outputs (``logits``, ``pred_boxes`` in float32) of this detector's backend
        for a batch of preprocessed inputs."""
        if self.runner is not None:
            return RawOutputs(self.runner(inputs))
        return self.torch_forward(inputs)

    def torch_forward(self, inputs: dict[str, torch.Tensor]) -> Any:
        """The torch model's raw outputs (the reference every other backend is checked against)."""
        if self.model is None:
            raise backends.BackendUnavailable(f"{self!r} has no torch model loaded.")
        batch = {}
        for name, value in inputs.items():
            value = value.to(self.device, non_blocking=True)
            if name == "pixel_values" and self.channels_last:
                value = value.contiguous(memory_format=torch.channels_last)
            batch[name] = value
        autocast = (
            torch.autocast(device_type=self.device.type, dtype=self.autocast_dtype)
            if self.autocast_dtype is not None
            else nullcontext()
        )
        with torch.inference_mode(), autocast:
            outputs = self.model(**batch)
        for name in ("logits", "pred_boxes"):
            # Post-processing in float32 whatever autocast computed in.
            if name in outputs and outputs[name].dtype != torch.float32:
                outputs[name] = outputs[name].float()
        return outputs

    def detect(
        self,
        images: Sequence[DecodedImage],
        *,
        threshold: float = 0.05,
        batch_size: int | None = None,
        float_boxes: bool = False,
    ) -> list[DetectionResult]:
        """Detect objects in each image; results are in the order of ``images``.

        Boxes are integer pixels as the HF pipeline gives them; ``float_boxes`` also keeps
        the post-processor's float corners (below), for measuring accuracy: truncating to
        integers costs up to a pixel per corner, which caps the COCO AP of perfect boxes
        well below 1 on small objects.

        Images go through the model ``batch_size`` at a time, but only with images whose
        preprocessed tensors have the same shape: padding a smaller image to its batch's
        largest changes what models without a pixel mask (YOLOS) or with a backbone that
        sees the padding (DETR) predict, and a batch must give the detections of one by one.

        ``float_boxes`` adds ``box_float`` to each detection: the post-processor's float
        coordinates, clipped to the image (``box`` stays the pipeline's truncated ints).
        """
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(BAD_THRESHOLD_MESSAGE.format(threshold=threshold))
        if batch_size is None:
            batch_size = self.default_batch_size
        if batch_size < 1:
            raise ValueError(BAD_BATCH_SIZE_MESSAGE.format(batch_size=batch_size))
        results: list[DetectionResult | None] = [None] * len(images)
        timings: dict[int, dict[str, float]] = {}
        # Each batch, in order: (its images, its forward's seconds and detections), or a
        # future of them. With overlap_postprocess a batch's post-processing runs on a helper
        # thread while the next batch's forward runs; with overlap_forward the forwards run
        # on the detector's forward thread (one for every call) while this one builds the
        # next batch's inputs. Each is collected, in order, at the end.
        ran: list[tuple[list[int], Any]] = []
        with ExitStack() as stack:
            post = self._postprocess_lane.for_call(stack) if self.overlap_postprocess else None
            ahead = self._forward_lane.for_call(stack) if self.overlap_forward else None
            batches = self._batches_by_size if ahead is not None else self._batches_in_windows
            for chunk, batch in batches(images, batch_size, timings):
                job = (chunk, batch, images, threshold, float_boxes, post)
                if ahead is None:
                    ran.append((chunk, self._run_batch(*job)))
                    continue
                ran.append((chunk, ahead(self._run_batch, *job)))
                if len(ran) > FORWARDS_AHEAD:
                    # The next batch is built while at most FORWARDS_AHEAD wait or run: the
                    # device always has one queued, and memory holds a few batches' inputs.
                    ran[-1 - FORWARDS_AHEAD][1].result()
            for chunk, run in ran:
                forward_s, done = run.result() if isinstance(run, Future) else run
                for index in chunk:
                    timings[index]["forward"] = forward_s / len(chunk)
                self._collect(
                    results, timings, chunk, done.result() if isinstance(done, Future) else done
                )
        return [result for result in results if result is not None]

    def _batches_in_windows(
        self, images: Sequence[DecodedImage], batch_size: int, timings: dict
    ) -> Iterator[tuple[list[int], dict[str, torch.Tensor]]]:
        """``detect``'s batches, its forwards on the calling thread: windows of
        ``PREFETCH_BATCHES`` batches of images, each preprocessed together and then split
        by input shape."""
        window = batch_size * PREFETCH_BATCHES
        for start in range(0, len(images), window):
            indices = list(range(start, min(start + window, len(images))))
            yield from self._prepared_batches(images, indices, batch_size, timings)

    def _batches_by_size(
        self, images: Sequence[DecodedImage], batch_size: int, timings: dict
    ) -> Iterator[tuple[list[int], dict[str, torch.Tensor]]]:
        """``detect``'s batches, its forwards on a thread of their own: images of one size
        (so of one input shape) together, each batch preprocessed only when the loop asks
        for it, so that it is built while the forwards before it run."""
        sizes: dict[tuple[int, int], list[int]] = {}
        for index, decoded in enumerate(images):
            sizes.setdefault(decoded.image.size, []).append(index)
        for members in sizes.values():
            for chunk in _chunks(members, batch_size):
                yield from self._prepared_batches(images, chunk, batch_size, timings)

    def _prepared_batches(
        self, images: Sequence[DecodedImage], indices: list[int], batch_size: int, timings: dict
    ) -> Iterator[tuple[list[int], dict[str, torch.Tensor]]]:
        """The images at ``indices`` preprocessed together, then as batches of at most
        ``batch_size`` whose inputs have one shape: (their indices, the batch's inputs)."""
        began = time.perf_counter()
        inputs = self.preprocess_many([images[index].image for index in indices])
        share = (time.perf_counter() - began) / len(indices)
        prepared: dict[int, dict[str, torch.Tensor]] = {}
        groups: dict[tuple, list[int]] = {}
        for index, prepared_inputs in zip(indices, inputs, strict=True):
            prepared[index] = prepared_inputs
            timings[index] = {"preprocess": share}
            shape = tuple((name, tuple(t.shape)) for name, t in sorted(prepared_inputs.items()))
            groups.setdefault(shape, []).append(index)
        for members in groups.values():
            for chunk in _chunks(members, batch_size):
                parts = [prepared.pop(i) for i in chunk]
                yield (
                    chunk,
                    {
                        name: torch.cat([part[name] for part in parts]) if len(parts) > 1 else value
                        for name, value in parts[0].items()
                    },
                )

    def _run_batch(
        self,
        indices: list[int],
        inputs: dict[str, torch.Tensor],
        images: Sequence[DecodedImage],
        threshold: float,
        float_boxes: bool,
        post: Callable[..., Future] | None,
    ) -> tuple[float, Any]:
        """A batch's forward, then its post-processing (on ``post`` when given: a future);
        (the forward's seconds, the detections or their future)."""
        outputs, forward_s = self._forward_batch(inputs, to_cpu=post is not None)
        job = (indices, outputs, images, threshold, float_boxes)
        if post is None:
            return forward_s, self._postprocess(*job)
        return forward_s, post(self._postprocess, *job)

    def _forward_batch(self, inputs: dict[str, torch.Tensor], *, to_cpu: bool) -> tuple[Any, float]:
        """A batch's raw outputs and the seconds its forward took; ``to_cpu``: the two that
        post-processing reads (``logits``, ``pred_boxes``) copied to the CPU, so that it
        can run there without waiting for whatever the device is given next."""
        began = time.perf_counter()
        outputs = self.forward(inputs)
        if to_cpu:
            outputs = RawOutputs({name: outputs[name].cpu() for name in ("logits", "pred_boxes")})
        self._synchronize()
        return outputs, time.perf_counter() - began

    def _postprocess(
        self,
        indices: list[int],
        outputs: Any,
        images: Sequence[DecodedImage],
        threshold: float,
        float_boxes: bool = False,
    ) -> tuple[list[list[dict[str, Any]]], float]:
        """Each image's detections from a batch's raw outputs, and the seconds it took."""
        began = time.perf_counter()
        # (height, width) per image, as the pipeline passes them: boxes in each image's pixels.
        sizes = [images[i].image.size for i in indices]
        target_sizes = torch.tensor([[h, w] for w, h in sizes], dtype=torch.int32)
        raw = self.processor.post_process_object_detection(
            outputs, threshold=threshold, target_sizes=target_sizes
        )
        per_image = [
            self._to_detections(r, size, float_boxes=float_boxes)
            for r, size in zip(raw, sizes, strict=True)
        ]
        return per_image, time.perf_counter() - began

    @staticmethod
    def _collect(
        results: list[DetectionResult | None],
        timings: dict[int, dict[str, float]],
        indices: list[int],
        done: tuple[list[list[dict[str, Any]]], float],
    ) -> None:
        per_image, seconds = done
        for index, detections in zip(indices, per_image, strict=True):
            timings[index]["postprocess"] = seconds / len(indices)
            results[index] = DetectionResult(detections, timings[index])

    def _to_detections(
        self, raw: dict[str, torch.Tensor], size: tuple[int, int], *, float_boxes: bool = False
    ) -> list[dict[str, Any]]:
        width, height = size
        # int() truncation of the xyxy floats, as ObjectDetectionPipeline._get_bounding_box.
        boxes = raw["boxes"].int().tolist()
        exact = raw["boxes"].float().tolist()
        detections = []
        for score, label, (xmin, ymin, xmax, ymax), floats in zip(
            raw["scores"].tolist(), raw["labels"].tolist(), boxes, exact, strict=True
        ):
            detection = {
                "label": self.id2label.get(label, f"LABEL_{label}"),
                "score": float(score),
                "box": {
                    "xmin": _clip(xmin, width),
                    "ymin": _clip(ymin, height),
                    "xmax": _clip(xmax, width),
                    "ymax": _clip(ymax, height),
                },
            }
            if float_boxes:
                limits = (width, height, width, height)
                # Unrounded: int() of each is exactly the served integer box.
                detection["box_float"] = {
                    key: min(max(value, 0.0), float(limit))
                    for key, value, limit in zip(
                        ("xmin", "ymin", "xmax", "ymax"), floats, limits, strict=True
                    )
                }
            detections.append(detection)
        detections.sort(key=lambda d: d["score"], reverse=True)  # stable: ties keep query order
        return detections

    def _synchronize(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def warm_up(self) -> None:
        """One pass on a synthetic image: first-call allocations and kernel selection happen now."""
        image = Image.linear_gradient("L").resize(WARM_UP_SIZE).convert("RGB")
        decoded = DecodedImage(image, image.size, image.size, "PNG", "")
        self.detect([decoded], threshold=1.0, batch_size=1)


class _Lane:
    """One long-lived helper thread of a detector, for every call it serves: the same
    thread each time, because CUDA libraries keep per thread what they learned (torch's
    cuDNN execution plans, which ``cudnn.benchmark`` chose by trying each convolution's
    kernels, are cached per thread; cuBLAS handles and workspaces too). A thread made for
    each call tried every convolution's kernels again on every call: on an H200, DETR-R50
    ran at 4-6 img/s instead of 60-135, with 33-80 GB of the GPU's memory taken by the
    trials."""

    def __init__(self, name: str):
        self.name = name
        self._executor: ThreadPoolExecutor | None = None
        self._pid = os.getpid()
        self._lock = threading.Lock()

    def for_call(self, stack: ExitStack) -> Callable[..., Future]:
        """``submit`` for one call: when ``stack`` ends, what the call queued and has not
        started is dropped (a failed call does not run its other batches first) and what
        runs is waited for. The thread is started on first use (again in a forked child,
        which has none of its parent's threads) and ends with the detector."""
        with self._lock:
            if self._executor is None or self._pid != os.getpid():
                self._executor, self._pid = ThreadPoolExecutor(1, self.name), os.getpid()
            executor = self._executor
        futures: list[Future] = []

        def submit(function: Callable[..., Any], *args: Any) -> Future:
            future = executor.submit(function, *args)
            futures.append(future)
            return future

        def end() -> None:
            for future in futures:
                future.cancel()
            wait(futures)

        stack.callback(end)
        return submit


def _chunks(items: list[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _clip(value: float, limit: int) -> float:
    return min(max(value, 0), limit)


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


_threads_configured = False


def configure_torch_threads() -> None:
    """Apply VITRINE_TORCH_THREADS once per process (torch's default: one per core)."""
    global _threads_configured
    if _threads_configured:
        return
    threads = env_int(TORCH_THREADS_ENV, None)
    if threads is not None and threads != torch.get_num_threads():
        torch.set_num_threads(threads)
    _threads_configured = True


def load_detector(
    spec: CheckpointSpec,
    *,
    device: str | torch.device | None = None,
    warm_up: bool = True,
    channels_last: bool | None = None,
    fold_batch_norms: bool | None = None,
    backend: str | None = None,
    precision: str | None = None,
    device_preprocess: bool | None = None,
    fuse_layers: bool | None = None,
) -> Detector:
    """Load ``spec`` (uncached; see ``get_detector``), raising WeightsNotInstalled if absent.

    ``backend`` (default VITRINE_BACKEND, ``auto``): ``torch``; ``openvino`` or
    ``onnxruntime`` (an accepted export of this checkpoint, see ``manage.py export_model``;
    BackendUnavailable when there is none); ``auto``: on the CPU the first export found
    (OpenVINO, then ONNX Runtime; one measured slower than torch on this CPU is left out),
    torch otherwise.
    ``precision`` (default VITRINE_PRECISION, ``f32``): ``bf16`` and ``int8`` are the
    labelled fast options; ``int8`` runs the int8 OpenVINO export or nothing.

    ``channels_last`` (default: VITRINE_CHANNELS_LAST, on) stores conv weights and inputs
    NHWC: a ResNet-50 DETR forward is ~20% faster on CPU, a ViT (YOLOS) unchanged, and the
    outputs differ only by float rounding.

    ``device_preprocess`` (default: VITRINE_DEVICE_PREPROCESS, ``auto``: on CUDA only)
    resizes and normalizes each image on the model's device with Pillow's own arithmetic
    (``runtime/device_preprocess.py``): the same inputs, checked at load, and on a GPU no
    CPU time per image but the decode.

    ``fold_batch_norms`` (default: VITRINE_FOLD_BATCH_NORMS, on) folds each batch norm of
    the torch model into the convolution before it (``runtime/fold.py``): DETR-R50's
    forward 1.32x faster on a Zen 3 EPYC, the outputs again differ only by float rounding.

    ``fuse_layers`` (default: VITRINE_FUSE_LAYERS, on; with the batch norms folded) runs
    each ResNet convolution with its bias, ReLU and residual add as one cuDNN (CUDA) or
    oneDNN (CPU) call (``runtime/fuse.py``): each layer checked on the device at load;
    DETR-R50's forward 1.12x faster on a Zen 4 EPYC, the outputs bit-identical there.
    """
    # Imported here: `import playground.runtime` stays cheap for the web process, which
    # only decodes images.
    from transformers import AutoConfig, AutoImageProcessor, AutoModelForObjectDetection

    configure_torch_threads()
    device = torch.device(device) if device is not None else default_device()
    autocast = AUTOCAST_DTYPES[env_choice(AUTOCAST_ENV, "off", tuple(AUTOCAST_DTYPES))]
    image_backend = env_choice(IMAGE_BACKEND_ENV, DEFAULT_IMAGE_BACKEND, CHOICES[IMAGE_BACKEND_ENV])
    backend = backend or backends.backend_setting()
    precision = precision or backends.precision_setting()
    if backend not in backends.BACKENDS:
        raise ValueError(f"backend must be one of {backends.BACKENDS}, got {backend!r}")
    if precision not in backends.PRECISIONS:
        raise ValueError(f"precision must be one of {backends.PRECISIONS}, got {precision!r}")
    if precision == "bf16" and device.type == "cpu" and not backends.cpu_has_bf16():
        logger.warning(BF16_EMULATED_LOG, spec.label)
        precision = "f32"
    if channels_last is None:
        channels_last = env_bool(CHANNELS_LAST_ENV, True)
    if fold_batch_norms is None:
        fold_batch_norms = env_bool(FOLD_BATCH_NORMS_ENV, True)
    if fuse_layers is None:
        fuse_layers = env_bool(FUSE_LAYERS_ENV, True)
    if device_preprocess is None:
        choice = env_choice(DEVICE_PREPROCESS_ENV, "auto", DEVICE_PREPROCESS_CHOICES)
        device_preprocess = choice == "on" or (choice == "auto" and device.type == "cuda")
    source = resolve_weights(spec)
    began = time.perf_counter()
    try:
        runner = _export_runner(spec, source, backend, precision, device)
        if runner is None:
            model = AutoModelForObjectDetection.from_pretrained(
                source.path, dtype=torch.float32, **source.kwargs
            )
            config = model.config
        else:
            model, config = None, AutoConfig.from_pretrained(source.path, **source.kwargs)
            precision = runner.precision  # what it compiled, which may not be what was asked
        # The model's config is passed so that legacy preprocessor files (e.g. the published
        # DETR's "DetrFeatureExtractor" type, which transformers 5 no longer resolves by
        # name) fall back to the processor registered for the model type.
        processor = AutoImageProcessor.from_pretrained(
            source.path, backend=image_backend, config=config, **source.kwargs
        )
    except OSError as exc:  # missing files, offline, download failure (hub errors are OSErrors)
        raise weights_error(spec, source, exc) from exc
    if model is not None:
        model.eval()
        if fold_batch_norms:
            folded = fold_into_convolutions(model)
            logger.info("%s: %d batch norms folded into their convolutions", spec.label, folded)
        model.to(device)
        if channels_last:
            model.to(memory_format=torch.channels_last)
    # Hashing a folder's files reads them once more (~0.1 s per 100 MB), once per load.
    revision = resolved_revision(
        path=source.path, is_local=source.is_local, repo=spec.repo, revision=spec.revision
    )
    detector = Detector(
        model=model,
        processor=processor,
        spec=spec,
        device=device,
        autocast_dtype=autocast,
        channels_last=channels_last and model is not None,
        config=config,
        runner=runner,
        precision=precision,
        revision=revision,
        image_backend=image_backend,
        device_preprocess=device_preprocess,
    )
    if model is not None and fold_batch_norms and fuse_layers:
        # Each layer checked under the autocast the forward will run in.
        fused = fuse_activations(
            model, autocast=detector.autocast_dtype, channels_last=channels_last
        )
        logger.info("%s: %d layers fused with their activations", spec.label, fused)
    loaded = time.perf_counter()
    if warm_up:
        detector.warm_up()
    logger.info(
        "loaded %r in %.2fs, warm-up %.2fs",
        detector,
        loaded - began,
        time.perf_counter() - loaded,
    )
    return detector


def _local_checkpoint_path(source: Any) -> str | None:
    """The folder holding the checkpoint's files: the source itself, or the Hub cache's
    snapshot at the pinned revision (None when it is not downloaded)."""
    if source.is_local:
        return source.path
    from huggingface_hub import snapshot_download

    try:
        return snapshot_download(
            source.path, revision=source.kwargs.get("revision"), local_files_only=True
        )
    except Exception:  # not in the cache: from_pretrained says so in its own words
        return None


def _export_runner(
    spec: CheckpointSpec,
    source: Any,
    backend: str,
    precision: str,
    device: torch.device,
) -> Any:
    """The loaded export's forward when ``backend`` names one, or when ``auto`` finds one
    (``backends.EXPORT_BACKENDS`` order, or as measured on this CPU: ``backends.auto_order``);
    None for torch. ``int8`` runs the int8 OpenVINO export or raises (auto included):
    nothing else computes it."""
    int8 = precision == "int8"
    if int8 and backend not in ("openvino", "auto"):
        name = backends.BACKEND_NAMES.get(backend, backend)
        raise backends.BackendUnavailable(backends.INT8_OPENVINO_ONLY_MESSAGE.format(name=name))
    if backend == "torch":
        return None
    local_path = _local_checkpoint_path(source)
    if int8:
        candidates: tuple[str, ...] = ("openvino",)
    else:
        candidates = backends.EXPORT_BACKENDS if backend == "auto" else (backend,)
    strict = backend != "auto" or int8
    reasons: list[str] = []
    if not strict and device.type == "cpu" and local_path is not None:
        # What this CPU measured: an export slower than torch here is left out.
        candidates, reasons = backends.auto_order(
            {name: export_dir_for(spec, source, local_path, backend=name) for name in candidates}
        )
    for name in candidates:
        try:
            if device.type != "cpu":
                label = backends.BACKEND_NAMES[name]
                raise backends.BackendUnavailable(
                    backends.CPU_ONLY_MESSAGE.format(name=label, device=device)
                )
            if local_path is None:
                raise backends.BackendUnavailable(
                    backends.no_export_message(name, label=spec.label, path="(no local files)")
                )
            folder = export_dir_for(spec, source, local_path, backend=name, int8=int8)
            return backends.load_export(
                name,
                folder,
                source_path=local_path,
                label=spec.label,
                precision=precision,
                threads=env_int(TORCH_THREADS_ENV, None),
            )
        except backends.BackendUnavailable as exc:
            if strict:
                raise
            reasons.append(exc.message)
    logger.info("%s: torch backend (%s)", spec.label, " ".join(reasons))
    return None


def export_dir_for(
    spec: CheckpointSpec,
    source: Any,
    local_path: str,
    *,
    backend: str = "openvino",
    int8: bool = False,
) -> Any:
    """Where ``spec``'s export for ``backend`` lives (see ``backends.export_dir``)."""
    return backends.export_dir(
        source_path=local_path,
        is_local=source.is_local,
        repo=spec.repo,
        revision=spec.revision,
        backend=backend,
        int8=int8,
    )


class DetectorCache:
    """Loaded detectors of this process, least recently used evicted past the limit.

    Per process: a forked child starts empty rather than sharing its parent's models.
    Concurrent first calls for one checkpoint load it once.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: OrderedDict[tuple[str, ...], Detector] = OrderedDict()
        self._loading: dict[tuple[str, ...], threading.Lock] = {}
        self._pid = os.getpid()

    def _reset_after_fork(self) -> None:
        if self._pid != os.getpid():
            self._items = OrderedDict()
            self._loading = {}
            self._pid = os.getpid()

    def get(self, spec: CheckpointSpec, *, device: str | torch.device | None = None) -> Detector:
        resolved = torch.device(device) if device is not None else default_device()
        # The settings are part of the key: a process that changes them loads anew.
        key = (spec.key, str(resolved), backends.backend_setting(), backends.precision_setting())
        with self._lock:
            self._reset_after_fork()
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
            key_lock = self._loading.setdefault(key, threading.Lock())
        with key_lock:
            with self._lock:
                if key in self._items:
                    self._items.move_to_end(key)
                    return self._items[key]
            detector = load_detector(spec, device=resolved)
            with self._lock:
                self._items[key] = detector
                self._loading.pop(key, None)
                limit = env_int(MAX_MODELS_ENV, DEFAULT_MAX_MODELS) or DEFAULT_MAX_MODELS
                evicted = []
                while len(self._items) > limit:
                    evicted.append(self._items.popitem(last=False)[1])
        if evicted:
            logger.info("evicted %s", ", ".join(map(repr, evicted)))
            del evicted
            if resolved.type == "cuda":
                torch.cuda.empty_cache()
        return detector

    def loaded(self) -> list[str]:
        """Keys of the loaded detectors, least recently used first."""
        with self._lock:
            self._reset_after_fork()
            return [key[0] for key in self._items]

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


_cache = DetectorCache()


def get_detector(spec: CheckpointSpec, *, device: str | torch.device | None = None) -> Detector:
    """The process's detector for ``spec``, loaded (and warmed up) on first use.

    Keeps at most VITRINE_MAX_MODELS (default 2) loaded. Raises WeightsNotInstalled when the
    checkpoint's files are not on this machine.
    """
    return _cache.get(spec, device=device)


def loaded_detectors() -> list[str]:
    return _cache.loaded()


def clear_detector_cache() -> None:
    _cache.clear()
