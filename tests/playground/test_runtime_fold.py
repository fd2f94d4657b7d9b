"""Batch norms folded into their convolutions (runtime/fold.py): the same outputs, fewer
passes, and nothing folded where a module's forward is not convolution -> norm."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from transformers import AutoModelForObjectDetection

from playground.runtime import CheckpointSpec, decode_image, load_detector
from playground.runtime.backends import BOX_TOLERANCE, LOGIT_TOLERANCE, compare_outputs
from playground.runtime.fold import fold_batch_norms
from tests.playground.runtime_helpers import assert_same_detections, blocks_image, encode

pytestmark = pytest.mark.same_on_any_database

# The export tolerance on logits (runtime/backends.py): scores then move by at most 1e-4.
LOGIT_TOL = LOGIT_TOLERANCE


def is_batch_norm(module) -> bool:
    return isinstance(module, nn.BatchNorm2d) or type(module).__name__.endswith("FrozenBatchNorm2d")


def with_real_statistics(model: nn.Module, seed: int = 0) -> nn.Module:
    """Every batch norm given statistics and an affine map far from the identity, as
    trained weights have (a fresh checkpoint's mean 0 and variance 1 would make a wrong
    fold look right)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if is_batch_norm(module):
                n = module.running_mean.numel()
                module.running_mean.copy_(torch.randn(n, generator=generator) * 0.5)
                module.running_var.copy_(torch.rand(n, generator=generator) * 2 + 0.1)
                module.weight.copy_(torch.randn(n, generator=generator) * 0.5 + 1)
                module.bias.copy_(torch.randn(n, generator=generator) * 0.2)
    return model


@pytest.mark.parametrize("family", ["detr", "conditional_detr", "rt_detr"])
def test_a_folded_model_gives_the_same_outputs(family, test_sized_checkpoint):
    model = AutoModelForObjectDetection.from_pretrained(test_sized_checkpoint(family)).eval()
    with_real_statistics(model)
    norms = sum(is_batch_norm(m) for m in model.modules())
    folded_model = copy.deepcopy(model)
    folded = fold_batch_norms(folded_model)
    # Every batch norm of these models follows a convolution: all of them go.
    assert folded == norms > 0
    assert not any(is_batch_norm(m) for m in folded_model.modules())
    # RT-DETR picks its 300 queries among the encoder's positions: enough of them.
    pixels = torch.rand(1, 3, 256, 320, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        want, got = model(pixel_values=pixels), folded_model(pixel_values=pixels)
    # RT-DETR picks its queries by a top-k over scores that rounding may reorder: queries
    # are matched as the export check matches them.
    comparison = compare_outputs(want, got, logit_tol=LOGIT_TOL, box_tol=BOX_TOLERANCE)
    assert comparison.within(LOGIT_TOL, BOX_TOLERANCE), comparison.as_dict()


def test_a_vit_has_nothing_to_fold(test_sized_checkpoint):
    model = AutoModelForObjectDetection.from_pretrained(test_sized_checkpoint("yolos_tiny"))
    assert fold_batch_norms(model.eval()) == 0


class NormUnused(nn.Module):
    """Named like a conv -> norm layer, but its forward skips the norm."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.norm = nn.BatchNorm2d(4)

    def forward(self, x):
        return self.conv(x)


class NormFirst(nn.Module):
    """Named like one, but its norm runs on the convolution's input."""

    def __init__(self) -> None:
        super().__init__()
        self.convolution = nn.Conv2d(4, 4, 3, padding=1)
        self.normalization = nn.BatchNorm2d(4)

    def forward(self, x):
        return self.convolution(self.normalization(x))


class NormAttributeRead(NormUnused):
    """Reads the norm's statistics itself: without them its forward fails."""

    def forward(self, x):
        return self.norm(self.conv(x)) * self.norm.running_var.reshape(1, -1, 1, 1)


class TwoOutputs(NormUnused):
    def forward(self, x):
        y = self.norm(self.conv(x))
        return y, y


def test_a_layer_whose_forward_is_not_conv_then_norm_is_left_as_it_was():
    for layer in (NormUnused(), NormFirst(), NormAttributeRead(), TwoOutputs()):
        with_real_statistics(layer.eval(), seed=2)
        before = copy.deepcopy(layer.state_dict())
        assert fold_batch_norms(layer) == 0
        after = layer.state_dict()
        assert before.keys() == after.keys()
        assert all(torch.equal(before[k], after[k]) for k in before)
        assert any(isinstance(m, nn.BatchNorm2d) for m in layer.modules())


def test_a_sequential_conv_then_norm_is_folded_and_a_training_norm_is_not():
    stack = nn.Sequential(nn.Conv2d(3, 8, 3, bias=True), nn.BatchNorm2d(8), nn.ReLU())
    with_real_statistics(stack.eval(), seed=3)
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(4))
    want = stack(x)
    assert fold_batch_norms(stack) == 1
    assert isinstance(stack[1], nn.Identity)
    torch.testing.assert_close(stack(x), want, rtol=1e-5, atol=1e-5)
    # In train mode a batch norm normalises by the batch, not a fixed map: never folded.
    training = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8)).train()
    assert fold_batch_norms(training) == 0
    # Without an affine map (weight 1, bias 0), and a depthwise convolution.
    plain = nn.Sequential(nn.Conv2d(8, 8, 3, groups=8), nn.BatchNorm2d(8, affine=False))
    plain[1].running_mean.uniform_(-1, 1)
    plain[1].running_var.uniform_(0.5, 2)
    x = torch.rand(1, 8, 12, 12, generator=torch.Generator().manual_seed(5))
    want = plain.eval()(x)
    assert fold_batch_norms(plain) == 1
    torch.testing.assert_close(plain(x), want, rtol=1e-5, atol=1e-5)
    # A norm over other channels than the convolution's: not a pair (and no error).
    mismatched = nn.Sequential(nn.Conv2d(3, 8, 1), nn.BatchNorm2d(3)).eval()
    assert fold_batch_norms(mismatched) == 0


def test_the_runtime_folds_by_default_and_detects_the_same(test_sized_checkpoint, monkeypatch):
    spec = CheckpointSpec(local_dir=str(test_sized_checkpoint("detr")))
    image = decode_image(encode(blocks_image(160, 120, seed=5)), max_pixels=10_000_000)
    monkeypatch.delenv("VITRINE_FOLD_BATCH_NORMS", raising=False)
    folded = load_detector(spec, device="cpu", warm_up=False, backend="torch")
    monkeypatch.setenv("VITRINE_FOLD_BATCH_NORMS", "0")
    plain = load_detector(spec, device="cpu", warm_up=False, backend="torch")
    assert not any(is_batch_norm(m) for m in folded.model.modules())
    assert any(is_batch_norm(m) for m in plain.model.modules())
    threshold = 0.18  # test_runtime_fidelity's for this checkpoint: a few detections kept
    [want] = plain.detect([image], threshold=threshold)
    [got] = folded.detect([image], threshold=threshold)
    assert_same_detections(got.detections, want.detections, threshold=threshold, min_count=1)
