"""runtime/fuse.py: a ResNet backbone's convolutions run with their bias, ReLU and residual
add in one call (oneDNN's post-ops here on the CPU; cuDNN's fused kernels on a GPU), with
the same outputs; a layer whose forward is not the known one is left alone."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from playground.runtime import CheckpointSpec
from playground.runtime.fuse import ConvAddReLU, ConvReLU, fuse_activations, supported
from tests.playground.runtime_helpers import assert_same_detections, blocks_image, encode

pytestmark = [
    pytest.mark.same_on_any_database,
    pytest.mark.skipif(not supported(torch.device("cpu")), reason="torch built without oneDNN"),
]


def _load(checkpoint, **kwargs):
    from playground.runtime.detector import load_detector

    spec = CheckpointSpec(local_dir=str(checkpoint))
    return load_detector(spec, device="cpu", backend="torch", warm_up=False, **kwargs)


def _fused(model) -> list[type]:
    return [type(m) for m in model.modules() if isinstance(m, ConvReLU | ConvAddReLU)]


@pytest.mark.parametrize(
    "family, published",
    [
        ("detr", True),  # ResNet-50's bottleneck blocks
        ("detr", False),  # the test-sized basic blocks, and below for each family
        ("conditional_detr", False),
        ("rt_detr", False),
    ],
)
def test_fused_layers_give_the_same_detections(
    runtime_checkpoint, test_sized_checkpoint, family, published
):
    from playground.runtime.images import decode_image

    checkpoint = (runtime_checkpoint if published else test_sized_checkpoint)(family)
    plain = _load(checkpoint, fuse_layers=False)
    fused = _load(checkpoint)
    assert not _fused(plain.model)
    kinds = _fused(fused.model)
    # Every residual block's last convolution with its add, every other conv layer with its
    # ReLU (the stem's too).
    assert kinds.count(ConvAddReLU) >= 2 and kinds.count(ConvReLU) > kinds.count(ConvAddReLU)
    images = [
        decode_image(encode(blocks_image(w, h, seed), "JPEG", quality=90), max_pixels=10**8)
        for seed, (w, h) in enumerate([(320, 240), (240, 320)])
    ]
    for image in images:
        inputs = plain.preprocess(image.image)
        want, got = plain.forward(inputs), fused.forward(inputs)
        for name in ("logits", "pred_boxes"):
            # Bit-identical on the Zen 4 measured; within float rounding anywhere.
            torch.testing.assert_close(got[name], want[name], rtol=1e-4, atol=1e-5)
    want = plain.detect(images, threshold=0.0)
    got = fused.detect(images, threshold=0.0)
    for mine, theirs in zip(got, want, strict=True):
        # Boxes within 1 px, scores within 1e-4 (near-equal random-weight scores may swap).
        assert_same_detections(
            mine.detections, theirs.detections, threshold=0.0, min_count=1, max_count=10**4
        )


def test_a_vit_has_nothing_to_fuse(test_sized_checkpoint):
    assert not _fused(_load(test_sized_checkpoint("yolos_tiny")).model)


def test_nothing_is_fused_without_the_folded_norms(test_sized_checkpoint):
    """The fused call applies the convolution's bias: with the norm still there the layer
    is conv -> norm -> ReLU, not this."""
    detector = _load(test_sized_checkpoint("detr"), fold_batch_norms=False)
    assert not _fused(detector.model)


class ResNetConvLayer(nn.Module):
    """Named as transformers' layer, laid out as it, but its forward is not conv -> ReLU."""

    def __init__(self, scale: float = 2.0):
        super().__init__()
        self.convolution = nn.Conv2d(4, 4, 3, padding=1)
        self.normalization = nn.Identity()
        self.activation = nn.ReLU()
        self.scale = scale

    def forward(self, x):
        return self.activation(self.convolution(x) * self.scale)


def test_a_layer_whose_forward_is_not_the_known_one_is_left_alone():
    model = nn.Sequential(ResNetConvLayer(scale=2.0), ResNetConvLayer(scale=1.0)).eval()
    assert fuse_activations(model, channels_last=False) == 1
    assert isinstance(model[0], ResNetConvLayer)  # its check disagreed
    assert isinstance(model[1], ConvReLU)


def test_under_bf16_autocast_the_fused_call_computes_in_bf16(test_sized_checkpoint):
    """The labelled bf16 option: the fused layers pass their check under autocast and give
    what the unfused model gives within bf16's rounding."""
    plain = _load(test_sized_checkpoint("detr"), precision="bf16", fuse_layers=False)
    fused = _load(test_sized_checkpoint("detr"), precision="bf16")
    if plain.precision != "bf16":
        pytest.skip("this CPU has no bf16: the option falls back to f32")
    assert _fused(fused.model)
    from playground.runtime.images import decode_image

    image = decode_image(encode(blocks_image(320, 240, 0), "JPEG"), max_pixels=10**8)
    inputs = plain.preprocess(image.image)
    want, got = plain.forward(inputs), fused.forward(inputs)
    assert got["logits"].dtype == torch.float32
    assert float((got["pred_boxes"] - want["pred_boxes"]).abs().max()) < 0.05


def test_the_setting_turns_it_off(test_sized_checkpoint, monkeypatch):
    monkeypatch.setenv("VITRINE_FUSE_LAYERS", "0")
    assert not _fused(_load(test_sized_checkpoint("detr")).model)
    monkeypatch.delenv("VITRINE_FUSE_LAYERS")
    assert _fused(_load(test_sized_checkpoint("detr")).model)


def test_a_fused_call_the_device_refuses_falls_back_to_the_same_arithmetic(
    test_sized_checkpoint, monkeypatch, caplog
):
    """A shape the device's fused kernels do not cover (the load check runs a small input)
    costs the speed, not the answer: the layers compute the same with separate ops."""
    from playground.runtime import fuse
    from playground.runtime.images import decode_image

    plain = _load(test_sized_checkpoint("detr"), fuse_layers=False)
    fused = _load(test_sized_checkpoint("detr"))
    images = [decode_image(encode(blocks_image(320, 240, 3), "JPEG"), max_pixels=10**8)]
    want = plain.detect(images, threshold=0.0)

    def refused(*args, **kwargs):
        raise RuntimeError("cuDNN error: no engine for this convolution")

    monkeypatch.setattr(fuse, "conv_relu", refused)
    monkeypatch.setattr(fuse, "conv_add_relu", refused)
    got = fused.detect(images, threshold=0.0)
    assert [r.detections for r in got] == [r.detections for r in want]
    layers = [m for m in fused.model.modules() if isinstance(m, ConvReLU | ConvAddReLU)]
    assert layers and not any(layer.fused for layer in layers)
    assert "separate ops from now on" in caplog.text

    # A refusal at load (the check on the device) leaves the layer as it was.
    refusing = _load(test_sized_checkpoint("detr"))
    assert not _fused(refusing.model)

    # Out of memory is not a refusal: the call fails, as any forward that runs out would.
    monkeypatch.undo()
    fresh = _load(test_sized_checkpoint("detr"))

    def out_of_memory(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(fuse, "conv_relu", out_of_memory)
    with pytest.raises(torch.OutOfMemoryError):
        fresh.forward(fresh.preprocess(images[0].image))
    assert all(m.fused for m in fresh.model.modules() if isinstance(m, ConvReLU | ConvAddReLU))
