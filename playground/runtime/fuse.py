"""A ResNet backbone's convolutions with their bias, ReLU and residual add in one kernel.

After the batch norms are folded (``runtime/fold.py``) a ResNet layer is convolution (with
its bias), ReLU, and at the end of each residual block an add of the shortcut and a ReLU.
Run as torch's eager modules each of those is its own pass over the activation: on an
H200, DETR-R50 in bf16 at batch 64 (``bench_gpu.py --profile``, session 30), the bias adds
alone took 33% of the GPU's busy time, the ReLUs 10% and the residual adds 8%, against 14%
for the convolutions themselves. Here each such convolution runs as one fused call that
applies the bias, the add and the ReLU to its output before it is written:

- CUDA: cuDNN's fused kernels, ``torch.cudnn_convolution_relu`` and
  ``torch.cudnn_convolution_add_relu`` (the ones torch's own frozen-graph fusion uses);
- CPU: oneDNN's post-ops, ``torch.ops.mkldnn._convolution_pointwise`` (the ones
  torch.compile's CPU backend emits). Measured on a 2-core Zen 4 EPYC, random-weight DETR-R50
  at 800x1066, channels_last, folded: the forward 1.12x faster, its outputs bit-identical.

Only transformers' ResNet layers (DETR and Conditional DETR's backbone, RT-DETR's) whose
forward is known to be exactly that are replaced, and each replacement is checked on the
model's device: the layer run on a small random input before and after (and again under
the autocast the detector will run with) must agree, else the layer is left as it was.
Under autocast the fused call computes in autocast's dtype, as the convolution it replaces
would; the weights are cast once per dtype and kept.
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch import nn

logger = logging.getLogger(__name__)

CONV_LAYERS = ("ResNetConvLayer", "RTDetrResNetConvLayer")
RESIDUAL_LAYERS = (
    "ResNetBottleNeckLayer",
    "ResNetBasicLayer",
    "RTDetrResNetBottleNeckLayer",
    "RTDetrResNetBasicLayer",
)
# A fused call rounds as the separate ops do in f32 (oneDNN: bit-identical, measured); a
# wrong replacement changes the output by far more.
CHECK_RTOL = 1e-3
# Under bf16/fp16 autocast the fused add rounds once where the separate ops round twice.
AUTOCAST_CHECK_RTOL = 5e-2


def supported(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.backends.cudnn.is_available()
    return device.type == "cpu" and torch.backends.mkldnn.is_available()


def _plain_conv(conv: nn.Module) -> bool:
    return (
        type(conv) is nn.Conv2d
        and conv.padding_mode == "zeros"
        and isinstance(conv.padding, tuple)
        and conv.bias is not None  # folded: the norm's shift is the bias
    )


def _conv_layer_parts(layer: nn.Module, *, relu: bool) -> nn.Conv2d | None:
    """The convolution of a transformers ResNet conv layer whose norm is folded away and
    whose activation is a ReLU (``relu``) or nothing; else None."""
    if type(layer).__name__ not in CONV_LAYERS:
        return None
    conv = getattr(layer, "convolution", None)
    activation = getattr(layer, "activation", None)
    folded = isinstance(getattr(layer, "normalization", None), nn.Identity)
    if not folded or not _plain_conv(conv):
        return None
    wanted = nn.ReLU if relu else nn.Identity
    return conv if type(activation) is wanted else None


def conv_relu(x: torch.Tensor, weight, bias, c: nn.Conv2d) -> torch.Tensor:
    """relu(conv(x) + bias), one fused call on the device."""
    if x.device.type == "cuda":
        return torch.cudnn_convolution_relu(
            x, weight, bias, c.stride, c.padding, c.dilation, c.groups
        )
    return torch.ops.mkldnn._convolution_pointwise(
        x, weight, bias, c.padding, c.stride, c.dilation, c.groups, "relu", [], ""
    )


def conv_add_relu(x: torch.Tensor, weight, bias, residual, c: nn.Conv2d) -> torch.Tensor:
    """relu(conv(x) + bias + residual), one fused call on the device."""
    if x.device.type == "cuda":
        return torch.cudnn_convolution_add_relu(
            x, weight, residual, 1.0, bias, c.stride, c.padding, c.dilation, c.groups
        )
    return torch.ops.mkldnn._convolution_pointwise.binary(
        x, residual, weight, bias, c.padding, c.stride, c.dilation, c.groups,
        "add", 1.0, "relu", [], "",
    )  # fmt: skip


def separate(x: torch.Tensor, weight, bias, c: nn.Conv2d, residual=None) -> torch.Tensor:
    """The same as separate ops: what a fused layer falls back to."""
    out = F.conv2d(x, weight, bias, c.stride, c.padding, c.dilation, c.groups)
    return torch.relu(out if residual is None else out + residual)


class _Fused(nn.Module):
    """A convolution run with its bias, (residual add) and ReLU as one call; should the
    device refuse the call at run time (a shape its fused kernels do not cover; the load
    check runs a small input), the layer logs it once and computes the same with the
    separate ops from then on. Running out of memory is raised as it is."""

    def __init__(self, conv: nn.Conv2d):
        super().__init__()
        self.convolution = conv
        # The weight and bias in each dtype a call computed in (autocast's), cast once.
        self._cast: dict[torch.dtype, tuple[torch.Tensor, torch.Tensor]] = {}
        self.fused = True
        # While its load check runs a refusal is raised (the layer is then left unfused).
        self.strict = False

    def _call(self, x: torch.Tensor, residual: torch.Tensor | None = None) -> torch.Tensor:
        c = self.convolution
        device = x.device.type
        dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else x.dtype
        weight, bias = c.weight, c.bias
        if dtype != weight.dtype:
            if dtype not in self._cast:
                self._cast[dtype] = (weight.detach().to(dtype), bias.detach().to(dtype))
            weight, bias = self._cast[dtype]
        x = x.to(dtype)
        if residual is not None:
            residual = residual.to(dtype)
        if self.fused:
            try:
                if residual is None:
                    return conv_relu(x, weight, bias, c)
                return conv_add_relu(x, weight, bias, residual, c)
            except torch.OutOfMemoryError:
                raise
            except RuntimeError:
                if self.strict:
                    raise
                logger.warning(
                    "fused convolution refused for input %s (%s): separate ops from now on",
                    tuple(x.shape), x.dtype, exc_info=True,
                )  # fmt: skip
                self.fused = False
        return separate(x, weight, bias, c, residual)


class ConvReLU(_Fused):
    """A conv layer: relu(conv(x) + bias)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._call(x)


class ConvAddReLU(_Fused):
    """A residual block: relu(last_conv(head(x)) + bias + shortcut(x)), the last
    convolution, its bias, the add and the ReLU in one call."""

    def __init__(self, shortcut: nn.Module, head: nn.Sequential, conv: nn.Conv2d):
        super().__init__(conv)
        self.shortcut = shortcut
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = self.shortcut(x)
        return self._call(self.head(x), residual)


def _residual_parts(layer: nn.Module) -> tuple[nn.Module, nn.Sequential, nn.Conv2d] | None:
    if type(layer).__name__ not in RESIDUAL_LAYERS:
        return None
    shortcut, body = getattr(layer, "shortcut", None), getattr(layer, "layer", None)
    if shortcut is None or not isinstance(body, nn.Sequential) or len(body) < 2:
        return None
    if type(getattr(layer, "activation", None)) is not nn.ReLU:
        return None
    conv = _conv_layer_parts(body[-1], relu=False)
    return None if conv is None else (shortcut, body[:-1], conv)


def _probe(conv: nn.Conv2d, channels_last: bool) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    probe = torch.randn(1, conv.in_channels, 8, 8, generator=generator)
    probe = probe.to(device=conv.weight.device, dtype=conv.weight.dtype)
    return probe.contiguous(memory_format=torch.channels_last) if channels_last else probe


def _agrees(
    before: nn.Module, after: nn.Module, probe: torch.Tensor, autocast: torch.dtype | None
) -> bool:
    """``after`` gives what ``before`` gives on ``probe``, in f32 and under ``autocast``."""
    runs = [(None, CHECK_RTOL)] + ([(autocast, AUTOCAST_CHECK_RTOL)] if autocast else [])
    after.strict = True
    try:
        return all(_agrees_in(before, after, probe, dtype, rtol) for dtype, rtol in runs)
    finally:
        after.strict = False


def _agrees_in(
    before: nn.Module, after: nn.Module, probe: torch.Tensor, dtype: torch.dtype | None, rtol
) -> bool:
    context = torch.autocast(probe.device.type, dtype=dtype, enabled=dtype is not None)
    try:
        with torch.inference_mode(), context:
            want, got = before(probe.clone()), after(probe.clone())
    except Exception:  # the fused op is not there for this case
        logger.debug("fused layer failed its check", exc_info=True)
        return False
    if not (isinstance(got, torch.Tensor) and got.shape == want.shape):
        return False
    want, got = want.float(), got.float()
    tolerance = rtol * max(float(want.abs().max()), 1e-6)
    return float((got - want).abs().max()) <= tolerance


def fuse_activations(
    model: nn.Module, *, autocast: torch.dtype | None = None, channels_last: bool = True
) -> int:
    """Replace, in place, each folded ResNet layer of ``model`` by its fused call where the
    device has one and the check on the device agrees; returns how many were replaced.
    Call after ``fold_batch_norms`` and after the model is on its device and layout."""
    parameter = next(model.parameters(), None)
    if parameter is None or not supported(parameter.device):
        return 0
    fused = 0
    # The residual blocks first: their head (all but the last conv layer) is then fused in
    # the second pass like any other conv layer.
    for make in (_fused_residual, _fused_conv):
        for owner in list(model.modules()):
            for name, child in list(owner.named_children()):
                replacement = make(child)
                if replacement is None:
                    continue
                probe = _probe(_first_conv(child), channels_last)
                if _agrees(child, replacement, probe, autocast):
                    owner._modules[name] = replacement
                    fused += 1
    return fused


def _fused_residual(layer: nn.Module) -> nn.Module | None:
    parts = _residual_parts(layer)
    return None if parts is None else ConvAddReLU(*parts)


def _fused_conv(layer: nn.Module) -> nn.Module | None:
    conv = _conv_layer_parts(layer, relu=True)
    return None if conv is None else ConvReLU(conv)


def _first_conv(layer: nn.Module) -> nn.Conv2d:
    return next(m for m in layer.modules() if isinstance(m, nn.Conv2d))
