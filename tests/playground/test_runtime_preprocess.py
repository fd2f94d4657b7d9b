"""The table preprocessing gives the image processor's inputs bit for bit, or is not used."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from playground.runtime.checkpoints import FAMILIES, TEST_PROCESSOR_SIZES
from playground.runtime.preprocess import TablePreprocessor, reference_inputs

pytestmark = pytest.mark.same_on_any_database

# Odd sizes, both orientations, a thin strip, a tiny image and one larger than the
# longest edge: the resize rounds differently in each.
SIZES = [(640, 480), (480, 640), (333, 517), (1500, 97), (31, 17), (1700, 1300)]


def _image(size: tuple[int, int], seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    # Noise with a gradient: every uint8 value, and smooth areas the resize interpolates.
    noise = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    ramp = np.linspace(0, 255, size[0], dtype=np.float32)[None, :, None]
    return Image.fromarray(((noise.astype(np.float32) + ramp) / 2).astype(np.uint8), "RGB")


def _processor(family: str, size: dict | None = None):
    _, processor_class = FAMILIES[family]()
    return processor_class(**({"size": size} if size else {}))


def _assert_identical(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert a[name].dtype == b[name].dtype, name
        assert a[name].shape == b[name].shape, name
        assert torch.equal(a[name], b[name]), name


@pytest.mark.parametrize("family", list(FAMILIES))
@pytest.mark.parametrize("sized", [False, True], ids=["published size", "test size"])
def test_the_table_gives_the_processors_inputs_exactly(family, sized):
    processor = _processor(family, TEST_PROCESSOR_SIZES[family] if sized else None)
    fast = TablePreprocessor.for_processor(processor)
    assert fast is not None, f"{family}: the table path was not accepted"
    for seed, size in enumerate(SIZES):
        image = _image(size, seed)
        _assert_identical(fast(image), reference_inputs(processor, image))


def test_the_table_follows_the_processors_own_mean_and_std():
    processor = _processor("detr")
    processor.image_mean = [0.1, 0.2, 0.3]
    processor.image_std = [0.5, 0.25, 0.125]
    fast = TablePreprocessor.for_processor(processor)
    image = _image((300, 200), 1)
    _assert_identical(fast(image), reference_inputs(processor, image))


def test_a_processor_the_table_cannot_reproduce_is_used_as_it_is():
    processor = _processor("detr")

    class PositionDependent(type(processor)):
        """Not elementwise: a value depends on where it is, which no table can give."""

        def normalize(self, image, mean, std, **kwargs):
            out = super().normalize(image, mean, std, **kwargs)
            return out + np.arange(out.shape[-1], dtype=out.dtype) * 1e-3

    odd = PositionDependent()
    assert TablePreprocessor.for_processor(odd) is None


def test_an_image_that_is_not_rgb_goes_through_the_processor():
    """The runtime decodes to RGB; anything else gets exactly what the processor does with it
    (here its error: a 3-channel mean on a 1-channel image)."""
    processor = _processor("yolos_tiny")
    fast = TablePreprocessor.for_processor(processor)
    gray = _image((120, 90), 2).convert("L")
    with pytest.raises(ValueError) as expected:
        reference_inputs(processor, gray)
    with pytest.raises(ValueError) as got:
        fast(gray)
    assert str(got.value) == str(expected.value)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_loaded_detectors_use_the_table(runtime_checkpoint, family):
    from playground.runtime import CheckpointSpec
    from playground.runtime.detector import load_detector

    spec = CheckpointSpec(local_dir=str(runtime_checkpoint(family)))
    detector = load_detector(spec, device="cpu", backend="torch", warm_up=False)
    assert detector.table_preprocessor is not None
    image = _image((200, 150), 3)
    _assert_identical(detector.preprocess(image), reference_inputs(detector.processor, image))
