"""The model inputs of an image built on the model's device, bit for bit as the processor's.

On a GPU the forward of a batch takes a few milliseconds per image, while the PIL resize and
the rescale/normalize of ``runtime/preprocess.py`` take 10-25 ms of one CPU core per image:
at the issue's 1,500 images/s a worker would need dozens of cores for its preprocessing
alone. Here the decoded image's uint8 pixels go to the device as they are (a quarter of
the bytes of the float32 inputs), and the resize and the value table run there.

The resize is Pillow's own arithmetic (``src/libImaging/Resample.c``, 8 bits per channel),
not an approximation of it: the same filter coefficients (computed in float64 as Pillow
does, then fixed point with 22 fractional bits), the same two passes in the same order
(each rounded and clipped to uint8 in between), the same integer sums. Integer
arithmetic gives the same result on any device, so the inputs are identical to the PIL
path's, and so are the detections. As for the table path, this is checked, not assumed:
``DevicePreprocessor.for_processor`` runs both paths on synthetic images (enlarged and
reduced, landscape, portrait and tall) on the target device and is used only when every
tensor is equal; otherwise the table path (or the processor) is.

The output size is the processor's own: asked of ``processor.resize`` once per input size
with a one-channel nearest-neighbour probe (the size depends only on the input size), and
remembered.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import PIL
import torch
from PIL import Image

from playground.runtime.preprocess import (
    TablePreprocessor,
    _size_dict,
    _value_table,
    checked,
    reference_inputs,
)

PRECISION_BITS = 32 - 8 - 2  # Resample.c: 8 bits of result, 2 for overflow, in an int
PILLOW_MAJOR = int(PIL.__version__.split(".")[0])

# Resample.c's filters and their supports, by PIL's resampling constant.


def _box(x: float) -> float:
    return 1.0 if -0.5 < x <= 0.5 else 0.0


def _bilinear(x: float) -> float:
    x = abs(x)
    return 1.0 - x if x < 1.0 else 0.0


def _hamming(x: float) -> float:
    x = abs(x)
    if x == 0.0:
        return 1.0
    if x >= 1.0:
        return 0.0
    x = x * math.pi
    # 0.54f and 0.46f: C float constants, widened to double.
    return math.sin(x) / x * (float(np.float32(0.54)) + float(np.float32(0.46)) * math.cos(x))


def _bicubic(x: float) -> float:
    a = -0.5
    x = abs(x)
    if x < 1.0:
        return ((a + 2.0) * x - (a + 3.0)) * x * x + 1
    if x < 2.0:
        return (((x - 5) * x + 8) * x - 4) * a
    return 0.0


def _sinc(x: float) -> float:
    if x == 0.0:
        return 1.0
    x = x * math.pi
    return math.sin(x) / x


def _lanczos(x: float) -> float:
    return _sinc(x) * _sinc(x / 3) if -3.0 <= x < 3.0 else 0.0


FILTERS = {
    Image.Resampling.BOX: (_box, 0.5),
    Image.Resampling.BILINEAR: (_bilinear, 1.0),
    Image.Resampling.HAMMING: (_hamming, 1.0),
    Image.Resampling.BICUBIC: (_bicubic, 2.0),
    Image.Resampling.LANCZOS: (_lanczos, 3.0),
}

MAX_REMEMBERED_SIZES = 4096
# Images of one size preprocessed together at most: bounds the int32/int64 intermediates
# (~20 MB per image at DETR's 800x1066) while keeping launches per image negligible.
GROUP_IMAGES = 32
# Check images: enlarged (the usual COCO photo at an 800 short edge), reduced (a phone photo),
# portrait, sizes that do not divide evenly, one already at the output size on one side, and
# a tall one whose height shrinks most (Pillow 13 then runs the vertical pass first).
CHECK_SIZES = ((517, 333), (333, 517), (640, 480), (2017, 1511), (1100, 800), (700, 2600))


@functools.lru_cache(maxsize=256)
def resample_coefficients(
    in_size: int, out_size: int, resample: int
) -> tuple[np.ndarray, np.ndarray]:
    """Resample.c's ``precompute_coeffs`` and ``normalize_coeffs_8bpc`` for one axis: per
    output pixel, the input indices it reads (``ksize`` of them, past the last ones the
    last index with weight 0) and their int32 fixed-point weights."""
    filter_, support = FILTERS[Image.Resampling(resample)]
    scale = in_size / out_size  # (double)(in1 - in0) / outSize, exact for int sizes
    filterscale = max(scale, 1.0)
    support = support * filterscale
    ksize = math.ceil(support) * 2 + 1
    inv_filterscale = 1.0 / filterscale
    indices = np.zeros((out_size, ksize), dtype=np.int64)
    weights = np.zeros((out_size, ksize), dtype=np.int32)
    one = 1 << PRECISION_BITS
    for xx in range(out_size):
        center = (xx + 0.5) * scale
        xmin = max(int(center - support + 0.5), 0)  # C's (int) truncates, as int() does
        xmax = min(int(center + support + 0.5), in_size) - xmin
        k = [filter_((x + xmin - center + 0.5) * inv_filterscale) for x in range(xmax)]
        ww = 0.0
        for w in k:
            ww += w  # summed in order, as the C loop does
        if ww != 0.0:
            k = [w / ww for w in k]
        for x, w in enumerate(k):
            weights[xx, x] = int(-0.5 + w * one) if w < 0 else int(0.5 + w * one)
        indices[xx, :xmax] = np.arange(xmin, xmin + xmax)
        indices[xx, xmax:] = xmin + xmax - 1 if xmax else xmin
    return indices, weights


@functools.lru_cache(maxsize=256)
def _device_coefficients(
    in_size: int, out_size: int, resample: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """``resample_coefficients`` as tensors on ``device``: copied there once per size pair,
    not once per image."""
    indices, weights = resample_coefficients(in_size, out_size, resample)
    return torch.from_numpy(indices).to(device), torch.from_numpy(weights).to(device)


def _resample_axis(pixels: torch.Tensor, axis: int, out_size: int, resample: int) -> torch.Tensor:
    """One of Resample.c's 8bpc passes along ``axis`` (0: vertical, 1: horizontal) of
    (..., H, W, C) uint8 pixels (one image, or a batch of one size): per output pixel, 2^21
    plus the int sum of input x weight, then clip8 (an arithmetic shift by 22 bits, clamped
    to 0..255)."""
    device = pixels.device
    dim = pixels.dim() - 3 + axis
    index, weight = _device_coefficients(pixels.shape[dim], out_size, resample, device)
    source = pixels.to(torch.int32)
    shape = list(pixels.shape)
    shape[dim] = out_size
    total = torch.full(shape, 1 << (PRECISION_BITS - 1), dtype=torch.int32, device=device)
    # One tap at a time (ksize of them): no (H, W, ksize, C) intermediate. The products and
    # their sums stay within an int32, as in Pillow's own int accumulator.
    for tap in range(index.shape[1]):
        if axis == 0:
            total += source.index_select(dim, index[:, tap]) * weight[:, tap, None, None]
        else:
            total += source.index_select(dim, index[:, tap]) * weight[None, :, tap, None]
    return torch.clamp(total >> PRECISION_BITS, 0, 255).to(torch.uint8)


def pillow_resize(pixels: torch.Tensor, size: tuple[int, int], resample: int) -> torch.Tensor:
    """``Image.resize((width, height), resample)`` of an RGB image as an (H, W, 3) uint8
    tensor on any device, equal to Pillow's pixels (``size`` is (height, width)); of each
    image of an (N, H, W, 3) batch of one size likewise."""
    height, width = size
    if resample not in FILTERS:
        raise ValueError(f"no device resize for resampling filter {resample!r}")
    in_height, in_width = pixels.shape[-3:-1]
    # A side already at its size is not resampled. Which pass runs first changes the
    # pixels (each rounds to uint8): Pillow < 13 always ran the horizontal one first;
    # Pillow 13 runs the vertical one first when the height shrinks by more than twice
    # what the width does (ImagingResampleInner).
    vertical_first = (
        PILLOW_MAJOR >= 13
        and in_height - height > 0
        and (in_height - height > (in_width - width) * 2)
    )
    if vertical_first and height != in_height:
        pixels = _resample_axis(pixels, 0, height, resample)
    if width != in_width:
        pixels = _resample_axis(pixels, 1, width, resample)
    if not vertical_first and height != in_height:
        pixels = _resample_axis(pixels, 0, height, resample)
    return pixels


class DevicePreprocessor(TablePreprocessor):
    """``preprocessor(image)`` -> the processor's inputs for one RGB PIL image, built on
    ``device``: its uint8 pixels copied there, resized with Pillow's arithmetic, and put
    through the processor's rescale/normalize table."""

    def __init__(self, processor: Any, table: np.ndarray, mask: bool, device: torch.device):
        super().__init__(processor, table, mask)
        self.device = torch.device(device)
        self.device_table = torch.from_numpy(table).to(self.device)
        self._channels = torch.arange(3, device=self.device)[:, None, None]
        self._sizes: dict[tuple[int, int], tuple[int, int]] = {}

    @classmethod
    def for_processor(  # type: ignore[override]
        cls, processor: Any, device: torch.device | str | None = None
    ) -> DevicePreprocessor | None:
        """The device path for ``processor`` when it gives identical inputs on ``device``,
        else None."""
        if getattr(processor, "backend", None) != "pil":
            return None
        if processor.do_resize and processor.resample not in FILTERS:
            return None  # NEAREST is another code path in Pillow
        return checked(
            lambda: cls(
                processor,
                _value_table(processor),
                mask=bool(getattr(processor, "do_pad", False)),
                device=torch.device(device or "cpu"),
            ),
            processor,
            CHECK_SIZES,
            "device",
        )

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        """(height, width) the processor resizes an image of this size to: asked of the
        processor's own size logic once per input size (a one-channel probe resized
        nearest-neighbour, a small fraction of a real resize's cost), then remembered."""
        size = self._sizes.get((height, width))
        if size is None:
            probe = np.zeros((1, height, width), dtype=np.uint8)
            resized = self.processor.resize(
                probe, size=_size_dict(self.processor), resample=Image.Resampling.NEAREST
            )
            size = int(resized.shape[-2]), int(resized.shape[-1])
            if len(self._sizes) >= MAX_REMEMBERED_SIZES:
                self._sizes.clear()
            self._sizes[(height, width)] = size
        return size

    def __call__(self, image: Image.Image) -> dict[str, torch.Tensor]:
        return self.many([image])[0]

    def many(self, images: Sequence[Image.Image]) -> list[dict[str, torch.Tensor]]:
        """``preprocessor(image)`` of each image, in order. RGB images of one size are built
        together: one copy to the device and one resize and lookup for up to
        ``GROUP_IMAGES`` of them, instead of a copy and ~30 kernels per image (on a GPU,
        per-image launches and copies cost more than the arithmetic). Each image's tensors
        are its rows of the group's: the same values as alone, as integer arithmetic and
        a lookup per pixel do not depend on what else is in the batch."""
        results: list[dict[str, torch.Tensor] | None] = [None] * len(images)
        sizes: dict[tuple[int, int], list[int]] = {}
        for index, image in enumerate(images):
            if image.mode != "RGB":  # the processor's own inputs, on the device like the rest
                inputs = reference_inputs(self.processor, image)
                results[index] = {name: value.to(self.device) for name, value in inputs.items()}
            else:
                sizes.setdefault(image.size, []).append(index)
        for members in sizes.values():
            for start in range(0, len(members), GROUP_IMAGES):
                group = members[start : start + GROUP_IMAGES]
                inputs = self._group([images[index] for index in group])
                for row, index in enumerate(group):
                    results[index] = {name: value[row : row + 1] for name, value in inputs.items()}
        return [inputs for inputs in results if inputs is not None]

    def _group(self, images: list[Image.Image]) -> dict[str, torch.Tensor]:
        """The inputs of RGB images of one size, as one batch on the device."""
        processor = self.processor
        width, height = images[0].size
        cuda = self.device.type == "cuda"
        # Page-locked on a GPU host, so that the copy runs on the device's copy engine
        # while the CPU goes on (from pageable memory it is a synchronous copy).
        host = torch.empty((len(images), height, width, 3), dtype=torch.uint8, pin_memory=cuda)
        array = host.numpy()
        for row, image in enumerate(images):
            array[row] = np.asarray(image)
        pixels = host.to(self.device, non_blocking=True)
        if processor.do_resize:
            size = self.output_size(height, width)
            pixels = pillow_resize(pixels, size, processor.resample)
        count, height, width = pixels.shape[:3]
        # One lookup per value: (N, 3, H, W) float32, the table path's values.
        values = self.device_table[self._channels, pixels.permute(0, 3, 1, 2).to(torch.int64)]
        inputs = {"pixel_values": values}
        if self.mask:
            inputs["pixel_mask"] = torch.ones(
                (count, height, width), dtype=torch.int64, device=self.device
            )
        return inputs
