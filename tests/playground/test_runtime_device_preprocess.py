"""The device preprocessing (resize and table on the model's device, for GPU hosts) gives the
image processor's inputs bit for bit, and the detector's answers do not change with it.

Run on the CPU here (torch's integer arithmetic is the same on a CUDA device); the check at
load runs on whatever device the detector is on."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from playground.runtime.checkpoints import FAMILIES, TEST_PROCESSOR_SIZES
from playground.runtime.device_preprocess import (
    FILTERS,
    DevicePreprocessor,
    pillow_resize,
    resample_coefficients,
)
from playground.runtime.images import DecodedImage, decode_image, decode_many
from playground.runtime.preprocess import reference_inputs
from tests.playground.runtime_helpers import blocks_image, encode
from tests.playground.test_runtime_preprocess import (
    SIZES,
    _assert_identical,
    _image,
    _processor,
)

pytestmark = pytest.mark.same_on_any_database

# (input width, height) -> (output width, height): enlarged, reduced by several times (a
# phone photo to DETR's size), each side alone, unchanged, 1 px, strips, odd ratios.
RESIZES = [
    ((640, 480), (1066, 800)),
    ((480, 640), (800, 1066)),
    ((4032, 3024), (1067, 800)),
    ((517, 333), (1242, 800)),
    ((640, 480), (640, 800)),
    ((640, 480), (900, 480)),
    ((640, 480), (640, 480)),
    ((1, 1), (5, 3)),
    ((1500, 97), (13, 1)),
    ((31, 17), (640, 640)),
    ((333, 517), (256, 256)),  # the height shrinks most: Pillow 13's vertical pass first
    ((700, 2600), (410, 1333)),
    ((300, 200), (290, 100)),
]


@pytest.mark.parametrize("resample", list(FILTERS), ids=lambda f: Image.Resampling(f).name)
@pytest.mark.parametrize("sizes", RESIZES, ids=lambda s: f"{s[0][0]}x{s[0][1]}-{s[1][0]}x{s[1][1]}")
def test_the_device_resize_gives_pillows_pixels(resample, sizes):
    (width, height), (out_width, out_height) = sizes
    rng = np.random.default_rng(width * 7 + height)
    pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    want = np.asarray(Image.fromarray(pixels).resize((out_width, out_height), resample=resample))
    got = pillow_resize(torch.from_numpy(pixels), (out_height, out_width), resample)
    assert got.dtype == torch.uint8
    assert np.array_equal(got.numpy(), want)


def test_coefficients_are_pillows_fixed_point_weights():
    """Each output pixel's weights sum to one in 22-bit fixed point (give or take the
    rounding of each), and read only pixels of the image."""
    for resample in FILTERS:
        indices, weights = resample_coefficients(640, 1066, resample)
        assert indices.min() >= 0 and indices.max() <= 639
        assert np.all(np.abs(weights.sum(axis=1) - (1 << 22)) <= weights.shape[1])


@pytest.mark.parametrize("family", list(FAMILIES))
@pytest.mark.parametrize("sized", [False, True], ids=["published size", "test size"])
def test_the_device_path_gives_the_processors_inputs_exactly(family, sized):
    processor = _processor(family, TEST_PROCESSOR_SIZES[family] if sized else None)
    fast = DevicePreprocessor.for_processor(processor, "cpu")
    assert fast is not None, f"{family}: the device path was not accepted"
    for seed, size in enumerate([*SIZES, (4032, 3024)]):
        image = _image(size, seed)
        _assert_identical(fast(image), reference_inputs(processor, image))


def test_the_output_size_is_asked_of_the_processor_once_per_input_size():
    processor = _processor("detr")
    fast = DevicePreprocessor.for_processor(processor, "cpu")
    calls = []
    resize = processor.resize

    def counting(image, **kwargs):
        calls.append(image.shape)
        return resize(image, **kwargs)

    processor.resize = counting
    assert fast.output_size(600, 800) == (800, 1066)
    assert fast.output_size(600, 800) == (800, 1066)
    assert fast.output_size(800, 600) == (1066, 800)
    assert calls == [(1, 600, 800), (1, 800, 600)]  # one-channel probes, once per size


def test_a_processor_it_cannot_reproduce_is_not_used():
    processor = _processor("detr")
    processor.resample = Image.Resampling.NEAREST  # Pillow's other code path
    assert DevicePreprocessor.for_processor(processor, "cpu") is None

    class ShiftedResize(type(_processor("detr"))):
        """A resize that is not Pillow's: the check must catch it."""

        def resize(self, image, size, resample=None, **kwargs):
            out = super().resize(image, size, resample=resample, **kwargs)
            return np.roll(out, 1, axis=-1) if out.shape[0] == 3 else out

    assert DevicePreprocessor.for_processor(ShiftedResize(), "cpu") is None


@pytest.mark.parametrize("family", list(FAMILIES))
def test_the_load_check_notices_the_other_pass_order(monkeypatch, family):
    """Which pass runs first is Pillow's version's choice; the check images include one
    where it matters, so a device resize in the other order is refused at load."""
    import PIL

    from playground.runtime import device_preprocess

    processor = _processor(family)
    assert DevicePreprocessor.for_processor(processor, "cpu") is not None
    other = 12 if int(PIL.__version__.split(".")[0]) >= 13 else 13
    monkeypatch.setattr(device_preprocess, "PILLOW_MAJOR", other)
    assert DevicePreprocessor.for_processor(processor, "cpu") is None


@pytest.mark.parametrize("family", ["detr", "yolos_tiny"])
def test_detections_are_the_same_with_the_device_path(runtime_checkpoint, family, monkeypatch):
    """The loaded detector with VITRINE_DEVICE_PREPROCESS=on answers exactly what it answers
    with the table path, in a batch of mixed sizes, and records where it preprocessed."""
    from playground.runtime import CheckpointSpec
    from playground.runtime.detector import load_detector

    spec = CheckpointSpec(local_dir=str(runtime_checkpoint(family)))
    monkeypatch.setenv("VITRINE_DEVICE_PREPROCESS", "on")
    on_device = load_detector(spec, device="cpu", backend="torch", warm_up=False)
    monkeypatch.setenv("VITRINE_DEVICE_PREPROCESS", "auto")  # auto: CUDA only
    table = load_detector(spec, device="cpu", backend="torch", warm_up=False)
    assert on_device.device_preprocess and isinstance(
        on_device.table_preprocessor, DevicePreprocessor
    )
    assert not table.device_preprocess
    assert "pil on cpu preprocessing" in on_device.provenance["backend"]
    assert "pil preprocessing" in table.provenance["backend"]
    images = [
        decode_image(encode(blocks_image(w, h, seed), "JPEG", quality=90), max_pixels=10**8)
        for seed, (w, h) in enumerate([(320, 240), (240, 320), (320, 240), (401, 257)])
    ]
    got = on_device.detect(images, threshold=0.0, batch_size=4, float_boxes=True)
    want = table.detect(images, threshold=0.0, batch_size=4, float_boxes=True)
    assert [r.detections for r in got] == [r.detections for r in want]
    assert all(r.detections for r in got)


def test_images_of_one_size_are_built_together_each_as_alone(monkeypatch):
    """``many`` groups images by size (at most GROUP_IMAGES at a time), keeps the order, and
    every image's inputs are the processor's."""
    from playground.runtime import device_preprocess

    monkeypatch.setattr(device_preprocess, "GROUP_IMAGES", 2)
    processor = _processor("detr", TEST_PROCESSOR_SIZES["detr"])
    fast = DevicePreprocessor.for_processor(processor, "cpu")
    groups = []
    build = fast._group

    def recording(images):
        groups.append([image.size for image in images])
        return build(images)

    monkeypatch.setattr(fast, "_group", recording)
    images = [
        _image((160, 120), 0),
        _image((120, 160), 1),
        _image((160, 120), 2),
        _image((160, 120), 3),
        _image((160, 120), 4),
        _image((97, 61), 5),
    ]
    got = fast.many(images)
    assert len(got) == len(images)
    for inputs, image in zip(got, images, strict=True):
        _assert_identical(inputs, reference_inputs(processor, image))
    assert groups == [[(160, 120)] * 2, [(160, 120)] * 2, [(120, 160)], [(97, 61)]]


@pytest.mark.parametrize("family", ["detr", "yolos_tiny"])
def test_post_processing_beside_the_next_forward_gives_the_same_answers(runtime_checkpoint, family):
    """On a GPU each batch is post-processed on a helper thread while the next forward runs
    (``overlap_postprocess``, on for CUDA): the same detections, in the images' order, as
    post-processing each batch in turn; run here on the CPU with the switch turned on."""
    import threading

    from playground.runtime import CheckpointSpec
    from playground.runtime.detector import STAGES, load_detector

    spec = CheckpointSpec(local_dir=str(runtime_checkpoint(family)))
    detector = load_detector(spec, device="cpu", backend="torch", warm_up=False)
    assert not detector.overlap_postprocess  # off on a CPU: nothing to overlap with
    images = [
        decode_image(encode(blocks_image(w, h, seed), "JPEG", quality=90), max_pixels=10**8)
        for seed, (w, h) in enumerate([(320, 240), (240, 320), (320, 240), (401, 257), (320, 240)])
    ]
    want = detector.detect(images, threshold=0.0, batch_size=2)
    threads = []
    postprocess = detector._postprocess

    def recording(*args, **kwargs):
        threads.append(threading.current_thread().name)
        return postprocess(*args, **kwargs)

    detector._postprocess = recording
    detector.overlap_postprocess = True
    got = detector.detect(images, threshold=0.0, batch_size=2)
    assert [r.detections for r in got] == [r.detections for r in want]
    assert all(r.detections for r in got)
    # Batches: three 320x240 (2 + 1), one each of the other two sizes.
    assert len(threads) == 4 and all(name.startswith("postprocess") for name in threads)
    assert all(set(r.timings) == set(STAGES) for r in got)


@pytest.mark.parametrize("family", ["detr", "yolos_tiny"])
def test_forwards_on_their_own_thread_give_the_same_answers(runtime_checkpoint, family):
    """On a GPU the forwards run on a thread of their own while the calling thread builds
    the next batch's inputs (``overlap_forward``, on for CUDA), a few batches ahead at most:
    the same detections, in the images' order, as one thread doing each in turn; run here on
    the CPU with the switches turned on."""
    import threading

    from playground.runtime import CheckpointSpec
    from playground.runtime.detector import FORWARDS_AHEAD, STAGES, load_detector

    spec = CheckpointSpec(local_dir=str(runtime_checkpoint(family)))
    detector = load_detector(spec, device="cpu", backend="torch", warm_up=False)
    assert not detector.overlap_forward  # off on a CPU: both would share its cores
    sizes = [(320, 240), (240, 320), (320, 240), (401, 257), (320, 240)] * 2
    images = [
        decode_image(encode(blocks_image(w, h, seed), "JPEG", quality=90), max_pixels=10**8)
        for seed, (w, h) in enumerate(sizes)
    ]
    want = {batch: detector.detect(images, threshold=0.0, batch_size=batch) for batch in (1, 3)}
    events = []
    forward, preprocess_many = detector._forward_batch, detector.preprocess_many

    def forwarding(inputs, **kwargs):
        outputs = forward(inputs, **kwargs)
        events.append(("forward", threading.current_thread().name))
        return outputs

    def preprocessing(batch):
        events.append(("preprocess", [image.size for image in batch]))
        return preprocess_many(batch)

    detector._forward_batch, detector.preprocess_many = forwarding, preprocessing
    detector.overlap_forward = detector.overlap_postprocess = True
    for batch, expected in want.items():
        events.clear()
        got = detector.detect(images, threshold=0.0, batch_size=batch)
        assert [r.detections for r in got] == [r.detections for r in expected]
        assert all(set(r.timings) == set(STAGES) for r in got)
        forwards = [name for kind, name in events if kind == "forward"]
        assert forwards and all(name.startswith("forward") for name in forwards)
        # One batch's images at a time, all of one size, preprocessed as the forwards go:
        # before the k-th batch is built, all but FORWARDS_AHEAD of those before it ran.
        built = [i for i, (kind, _) in enumerate(events) if kind == "preprocess"]
        assert len(built) == len(forwards)
        assert all(len(set(events[i][1])) == 1 and len(events[i][1]) <= batch for i in built)
        for k, at in enumerate(built):
            assert sum(kind == "forward" for kind, _ in events[:at]) >= k - FORWARDS_AHEAD
    assert len(forwards) == 4  # batches of 3: (320, 240) x 6 in two, then two of 2

    # A forward that fails (a GPU out of memory) fails the call with its error, and the
    # batches after those already queued are neither built nor run.
    calls = []

    def failing(inputs, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("CUDA out of memory")
        return forward(inputs, **kwargs)

    detector._forward_batch = failing
    with pytest.raises(RuntimeError, match="out of memory"):
        detector.detect(images, threshold=0.0, batch_size=1)
    assert 2 <= len(calls) <= FORWARDS_AHEAD + 2
    detector._forward_batch = forwarding

    # Every forward of every call, one batch (the worker's call) or many, on the same thread:
    # CUDA libraries keep per thread what they learned (cuDNN's benchmarked plans).
    seen = set()

    def identifying(inputs, **kwargs):
        seen.add(threading.get_ident())
        return forward(inputs, **kwargs)

    detector._forward_batch = identifying
    detector.detect(images[:3], threshold=0.0, batch_size=4)  # one batch per size
    detector.detect(images, threshold=0.0, batch_size=3)
    detector.warm_up()
    assert len(seen) == 1 and threading.get_ident() not in seen


LANE_ACROSS_A_FORK = """
import os, sys, threading
from contextlib import ExitStack
from playground.runtime.detector import _Lane

lane = _Lane("forward")

def ident():
    return threading.get_ident()

def on_lane():
    with ExitStack() as stack:
        return lane.for_call(stack)(ident).result(timeout=60)

first, parents = on_lane(), lane._executor
assert on_lane() == first and lane._executor is parents  # one thread for every call
pid = os.fork()
if pid == 0:  # the child has no copy of the parent's thread: the lane starts its own
    try:
        ok = on_lane() is not None and lane._executor is not parents
    except BaseException:  # the parent's executor would never run it: a timeout
        ok = False
    os._exit(0 if ok else 3)
_, status = os.waitpid(pid, 0)
sys.exit(os.waitstatus_to_exitcode(status))
"""


def test_a_lane_is_one_thread_for_every_call_and_a_forked_child_starts_its_own():
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-c", LANE_ACROSS_A_FORK], cwd=repo, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_lane_drops_what_a_failed_call_queued_and_serves_the_next_call():
    from contextlib import ExitStack
    from threading import Event, Timer

    from playground.runtime.detector import _Lane

    lane, started, release, ran = _Lane("forward"), Event(), Event(), []

    def first():
        started.set()
        release.wait(timeout=120)
        return "a"

    def later(name):
        ran.append(name)
        return name

    with pytest.raises(RuntimeError, match="failed"), ExitStack() as stack:
        submit = lane.for_call(stack)
        running = submit(first)
        queued = [submit(later, name) for name in ("b", "c")]
        assert started.wait(timeout=120)
        # The call fails while "a" runs: "b" and "c" are dropped, "a" is waited for
        # (released from another thread once the call's end is waiting on it).
        Timer(0.2, release.set).start()
        raise RuntimeError("failed")
    assert running.result() == "a" and release.is_set()
    assert all(future.cancelled() for future in queued) and ran == []
    with ExitStack() as stack:
        assert lane.for_call(stack)(later, "next").result(timeout=60) == "next"
    assert ran == ["next"]


def test_decode_many_keeps_order_and_returns_each_failure_in_its_place():
    good = [encode(blocks_image(64 + i, 48, i), "JPEG") for i in range(6)]
    items = [good[0], b"not an image", *good[1:]]
    outcomes = decode_many(items, lambda data: decode_image(data, max_pixels=10**6), threads=3)
    assert isinstance(outcomes[1], Exception) and outcomes[1].code == "unsupported_format"
    decoded = [o for i, o in enumerate(outcomes) if i != 1]
    assert all(isinstance(o, DecodedImage) for o in decoded)
    assert [o.image.size for o in decoded] == [(64 + i, 48) for i in range(6)]
    # The same outcomes on one thread as on several.
    alone = decode_many(items, lambda data: decode_image(data, max_pixels=10**6), threads=1)
    assert [o.sha256 for i, o in enumerate(alone) if i != 1] == [o.sha256 for o in decoded]
