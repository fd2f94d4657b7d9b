"""The second backend: exporting a checkpoint, the check that refuses a bad export, and
VITRINE_BACKEND / VITRINE_PRECISION choosing what runs the forward."""

from __future__ import annotations

import io
import json
import shutil

import numpy as np
import pytest
import torch
from django.core.management import CommandError, call_command

from playground.runtime import CheckpointSpec, backends, decode_image, load_detector
from playground.runtime.allocator import cpu_identity
from playground.runtime.backends import (
    F32_ONLY_MESSAGE,
    BackendUnavailable,
    compare_outputs,
    no_export_message,
)
from tests.playground.runtime_helpers import assert_same_detections, blocks_image, encode

pytest.importorskip("openvino")

FAMILY = "yolos_tiny"  # the quickest to convert; every family's export is checked in fidelity
THRESHOLD = 0.15


@pytest.fixture
def checkpoint(test_sized_checkpoint, tmp_path):
    """A private copy of the test-sized checkpoint (the tests write exports next to it)."""
    folder = tmp_path / FAMILY
    shutil.copytree(test_sized_checkpoint(FAMILY), folder)
    return folder


@pytest.fixture
def exported(runtime_export, tmp_path):
    """A private copy of a checkpoint with an accepted export."""
    folder = tmp_path / "exported"
    shutil.copytree(runtime_export(FAMILY), folder)
    return folder


@pytest.fixture
def image():
    return decode_image(encode(blocks_image(160, 120, seed=1)), max_pixels=10_000_000)


@pytest.fixture(autouse=True)
def default_settings(monkeypatch):
    for name in ("VITRINE_BACKEND", "VITRINE_PRECISION", "LD_PRELOAD"):
        monkeypatch.delenv(name, raising=False)


def detect(folder, image, **kwargs):
    detector = load_detector(
        CheckpointSpec(local_dir=str(folder)), device="cpu", warm_up=False, **kwargs
    )
    return detector, detector.detect([image], threshold=THRESHOLD)[0].detections


def measured(folder, x_torch, *, cpu=None, backend="openvino"):
    """Plant a measurement of the export's forward against torch's in its manifest, as
    export_model writes one (``x_torch=None`` removes this CPU's): the real one depends on
    this machine's speed, and what auto runs depends on it."""
    manifest = backends.read_manifest(folder / backend)
    speeds = manifest.setdefault("speed", {})
    speeds.pop(cpu or cpu_identity(), None)
    if x_torch is not None:
        speeds[cpu or cpu_identity()] = {
            "x_torch": x_torch, "torch_forward_ms": 100.0, "export_forward_ms": 100 / x_torch,
            "images": 3, "threads": 2, "measured": "2026-12-02T08:00:00Z",
        }  # fmt: skip
    backends.write_manifest(folder / backend, manifest)


@pytest.mark.same_on_any_database
def test_export_model_writes_a_checked_export_that_auto_then_runs(checkpoint, image):
    out = io.StringIO()
    call_command("export_model", "any/id", "--checkpoint", str(checkpoint), stdout=out)
    printed = out.getvalue()
    assert "max |logit difference|" in printed and "max |box difference|" in printed
    assert "accepted" in printed

    folder = checkpoint / "openvino"
    manifest = json.loads((folder / "export.json").read_text())
    assert {"openvino", "torch", "transformers"} <= set(manifest["exporter"])
    assert set(manifest["source"]["files"]) == {"config.json", "model.safetensors"}
    assert manifest["check"]["max_logit_difference"] <= manifest["check"]["logit_tolerance"]
    assert manifest["check"]["images"] == 3 and manifest["dynamic_shapes"] is True
    assert (folder / "model.xml").is_file() and (folder / "model.bin").is_file()
    # Its forward timed against torch's on this CPU (what auto weighs here), and printed.
    [(cpu, speed)] = manifest["speed"].items()
    assert cpu == cpu_identity() and speed["images"] == 3 and speed["threads"] >= 1
    assert speed["x_torch"] > 0 and speed["torch_forward_ms"] > 0
    assert speed["export_forward_ms"] > 0
    assert "x torch" in printed and cpu_identity() in printed

    measured(checkpoint, 1.5)  # what this machine measured must not decide the test
    torch_detector, expected = detect(checkpoint, image, backend="torch")
    auto_detector, got = detect(checkpoint, image)  # VITRINE_BACKEND unset: auto
    assert (torch_detector.backend, auto_detector.backend) == ("torch", "openvino")
    assert auto_detector.model is None  # the torch weights are not loaded beside it
    assert_same_detections(got, expected, threshold=THRESHOLD)


@pytest.mark.same_on_any_database
def test_an_export_beyond_the_tolerance_is_refused_and_nothing_is_written(checkpoint):
    with pytest.raises(CommandError, match="beyond the tolerance"):
        call_command(
            "export_model", "any/id", "--checkpoint", str(checkpoint),
            "--logit-tolerance", "1e-12", "--box-tolerance", "1e-12",
            stdout=io.StringIO(),
        )  # fmt: skip
    assert not (checkpoint / "openvino").exists()
    assert [p.name for p in checkpoint.iterdir() if p.name.startswith(".")] == []
    # And the runtime, asked for OpenVINO, says there is no export.
    with pytest.raises(BackendUnavailable) as info:
        load_detector(CheckpointSpec(local_dir=str(checkpoint)), backend="openvino")
    assert "No OpenVINO export" in info.value.message


@pytest.mark.same_on_any_database
def test_export_model_to_onnx_runtime_and_what_auto_picks(checkpoint, image, monkeypatch):
    pytest.importorskip("onnxruntime")
    out = io.StringIO()
    call_command(
        "export_model", "any/id", "--checkpoint", str(checkpoint), "--backend", "onnxruntime",
        stdout=out,
    )  # fmt: skip
    assert "max |logit difference|" in out.getvalue() and "accepted" in out.getvalue()
    folder = checkpoint / "onnxruntime"
    manifest = json.loads((folder / "export.json").read_text())
    assert manifest["backend"] == "onnxruntime"
    assert {"onnx", "onnxruntime", "torch", "transformers", "opset"} <= set(manifest["exporter"])
    assert set(manifest["ir"]) == {"model.onnx"}
    assert manifest["check"]["max_logit_difference"] <= manifest["check"]["logit_tolerance"]

    assert manifest["speed"][cpu_identity()]["images"] == 3
    measured(checkpoint, 1.2, backend="onnxruntime")
    _, expected = detect(checkpoint, image, backend="torch")
    ort_detector, got = detect(checkpoint, image)  # auto: the only export is ONNX Runtime's
    assert ort_detector.backend == "onnxruntime" and ort_detector.model is None
    assert "onnxruntime forward" in ort_detector.provenance["backend"]
    assert_same_detections(got, expected, threshold=THRESHOLD)
    # bf16 is not an ONNX Runtime option: asked for, it says so; auto runs torch instead
    # (on a CPU with bf16 arithmetic; without it bf16 runs f32, see the precision test).
    monkeypatch.setattr(backends, "cpu_has_bf16", lambda: True)
    with pytest.raises(BackendUnavailable) as info:
        detect(checkpoint, image, backend="onnxruntime", precision="bf16")
    assert info.value.message == F32_ONLY_MESSAGE
    assert detect(checkpoint, image, precision="bf16")[0].backend == "torch"

    call_command("export_model", "any/id", "--checkpoint", str(checkpoint), stdout=out)
    measured(checkpoint, None)  # not measured here: the default order, OpenVINO first
    assert detect(checkpoint, image)[0].backend == "openvino"
    assert detect(checkpoint, image, backend="onnxruntime")[0].backend == "onnxruntime"

    with pytest.raises(CommandError, match="Unknown backend 'tensorrt'"):
        call_command("export_model", "any/id", "--checkpoint", str(checkpoint), "--backend",
                     "tensorrt")  # fmt: skip


def _tamper(folder):
    """Scale a stretch of the IR's weights: a hand-edited export that still compiles. Only
    normal floats are scaled: the file also holds the graph's integer constants (shapes,
    axes), which read as zeros, denormals or NaNs here and would stop it compiling."""
    path = folder / "openvino" / "model.bin"
    data = np.fromfile(path, dtype=np.float32)
    middle = len(data) // 2
    stretch = data[middle : middle + 20_000]
    weights = np.isfinite(stretch) & (np.abs(stretch) > 1e-30)
    stretch[weights] *= 1.5
    data.tofile(path)


@pytest.mark.same_on_any_database
def test_a_tampered_export_fails_the_check_and_the_runtime_falls_back(exported, image):
    out = io.StringIO()
    call_command("export_model", "any/id", "--checkpoint", str(exported), "--check", stdout=out)
    assert "within the tolerance" in out.getvalue()

    _tamper(exported)
    with pytest.raises(CommandError, match="does not match its manifest"):
        call_command("export_model", "any/id", "--checkpoint", str(exported), "--check")
    measured(exported, 2.0)  # measured faster: still not used
    detector, _ = detect(exported, image)  # auto: torch, not the tampered IR
    assert detector.backend == "torch"
    with pytest.raises(BackendUnavailable, match="does not match its manifest"):
        detect(exported, image, backend="openvino")


@pytest.mark.same_on_any_database
def test_an_export_that_no_longer_compiles_is_refused_cleanly(exported, image):
    path = exported / "openvino" / "model.bin"
    path.write_bytes(b"\xff" * path.stat().st_size)  # every constant garbage
    with pytest.raises(CommandError, match=r"does not match its manifest.*does not load"):
        call_command("export_model", "any/id", "--checkpoint", str(exported), "--check")
    detector, _ = detect(exported, image)  # auto: torch
    assert detector.backend == "torch"
    # Its manifest made to match (as after a runtime upgrade that no longer reads a file
    # it wrote): refused for not loading, not failed with the runtime's own error.
    manifest_path = exported / "openvino" / "export.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["ir"]["model.bin"] = backends._sha256(path)
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(BackendUnavailable, match=r"does not load .*export it again"):
        detect(exported, image, backend="openvino")
    detector, _ = detect(exported, image)
    assert detector.backend == "torch"


@pytest.mark.same_on_any_database
def test_changed_weights_make_the_export_stale(exported, image):
    config = exported / "config.json"
    config.write_text(config.read_text().replace('"hidden_act"', '"vitrine_note": 1, "hidden_act"'))
    detector, _ = detect(exported, image)
    assert detector.backend == "torch"
    with pytest.raises(BackendUnavailable, match=r"made from other files .*config\.json"):
        detect(exported, image, backend="openvino")


@pytest.mark.same_on_any_database
def test_the_backend_setting(exported, checkpoint, image, monkeypatch):
    monkeypatch.setenv("VITRINE_BACKEND", "torch")
    assert detect(exported, image)[0].backend == "torch"
    monkeypatch.setenv("VITRINE_BACKEND", "openvino")
    assert detect(exported, image)[0].backend == "openvino"
    with pytest.raises(BackendUnavailable) as info:
        detect(checkpoint, image)  # no export: openvino asked for, so no fallback
    assert info.value.message == no_export_message(
        "openvino", label=str(checkpoint), path=checkpoint / "openvino"
    )
    monkeypatch.setenv("VITRINE_BACKEND", "onnxruntime")
    with pytest.raises(BackendUnavailable) as info:
        detect(checkpoint, image)
    assert "No ONNX Runtime export" in info.value.message
    assert "export_model <model id> --backend onnxruntime" in info.value.message
    monkeypatch.setenv("VITRINE_BACKEND", "auto")
    assert detect(checkpoint, image)[0].backend == "torch"  # no export: falls back
    monkeypatch.setenv("VITRINE_BACKEND", "fastest")
    with pytest.raises(ValueError, match="VITRINE_BACKEND"):
        detect(checkpoint, image)


@pytest.mark.same_on_any_database
def test_auto_leaves_out_an_export_measured_slower_than_torch_on_this_cpu(exported, image, caplog):
    measured(exported, 0.84)  # YOLOS tiny's OpenVINO forward on a Zen 3, say
    with caplog.at_level("INFO", logger="playground.runtime.detector"):
        detector, got = detect(exported, image)
    assert detector.backend == "torch"
    assert "ran its forward at 0.84x torch's speed on this CPU" in caplog.text
    assert cpu_identity() in caplog.text and "--check` measures again" in caplog.text
    _, expected = detect(exported, image, backend="torch")
    assert_same_detections(got, expected, threshold=THRESHOLD)
    # Asked for by name it runs: the measurement only steers auto.
    assert detect(exported, image, backend="openvino")[0].backend == "openvino"
    # Another CPU's measurement says nothing about this one; this one's faster: used.
    measured(exported, None)
    measured(exported, 0.5, cpu="Other CPU (family 1, model 1)")
    assert detect(exported, image)[0].backend == "openvino"
    measured(exported, 1.0)  # as fast as torch: kept (the bound is "slower")
    assert detect(exported, image)[0].backend == "openvino"


@pytest.mark.same_on_any_database
def test_auto_tries_the_faster_export_first_when_both_were_measured_here(
    runtime_export, tmp_path, image
):
    pytest.importorskip("onnxruntime")
    folder = tmp_path / "both"
    shutil.copytree(runtime_export(FAMILY), folder)
    shutil.copytree(runtime_export(FAMILY, "onnxruntime") / "onnxruntime", folder / "onnxruntime")
    measured(folder, 1.3)
    measured(folder, 1.9, backend="onnxruntime")
    assert detect(folder, image)[0].backend == "onnxruntime"
    measured(folder, 2.4)
    assert detect(folder, image)[0].backend == "openvino"
    measured(folder, None, backend="onnxruntime")  # one unmeasured: the default order
    measured(folder, 0.9)
    assert detect(folder, image)[0].backend == "onnxruntime"  # OpenVINO left out
    measured(folder, 0.7, backend="onnxruntime")
    assert detect(folder, image)[0].backend == "torch"  # both slower here


@pytest.mark.same_on_any_database
def test_check_measures_again_on_this_cpu_and_keeps_other_cpus(exported):
    measured(exported, 0.5)
    measured(exported, 3.0, cpu="Other CPU (family 1, model 1)")
    out = io.StringIO()
    call_command("export_model", "any/id", "--checkpoint", str(exported), "--check", stdout=out)
    assert "x torch" in out.getvalue() and "kept in export.json" in out.getvalue()
    speeds = json.loads((exported / "openvino" / "export.json").read_text())["speed"]
    assert speeds["Other CPU (family 1, model 1)"]["x_torch"] == 3.0
    mine = speeds[cpu_identity()]
    assert mine["measured"] != "2026-12-02T08:00:00Z" and mine["images"] == 3
    assert mine["torch_forward_ms"] > 0 and mine["export_forward_ms"] > 0
    # The rewritten manifest still vouches for the export.
    detector = load_detector(
        CheckpointSpec(local_dir=str(exported)), device="cpu", warm_up=False, backend="openvino"
    )
    assert detector.backend == "openvino"


@pytest.mark.same_on_any_database
def test_openvino_is_not_used_with_a_preloaded_allocator(exported, image, monkeypatch):
    # tcmalloc or jemalloc preloaded make OpenVINO's compile_model crash the process.
    monkeypatch.setenv("LD_PRELOAD", "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2")
    assert detect(exported, image)[0].backend == "torch"
    with pytest.raises(BackendUnavailable, match="jemalloc"):
        detect(exported, image, backend="openvino")


def openvino_runs_bf16() -> bool:
    """Whether OpenVINO's CPU plugin compiles bf16 on this machine when asked: a one-matmul
    model compiled with the bf16 hint, and the precision it says it compiled. Not its
    capability list: on an AVX-512 CPU whose bf16 the hypervisor hides (a model-207 Xeon,
    session 44) the list has no BF16, yet the plugin compiles bf16 (emulated)."""
    import numpy as np
    import openvino as ov
    from openvino import opset13 as ops

    x = ops.parameter([1, 8], np.float32)
    model = ov.Model([ops.matmul(x, ops.constant(np.ones((8, 8), np.float32)), False, False)], [x])
    compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "bf16"})
    return compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name() == "bf16"


@pytest.mark.parametrize("hardware_bf16", [True, False], ids=["bf16 CPU", "no bf16"])
@pytest.mark.parametrize("backend", ["torch", "openvino"])
@pytest.mark.same_on_any_database
def test_precision_is_f32_unless_bf16_is_asked_for(
    exported, image, backend, hardware_bf16, monkeypatch, caplog
):
    # Both kinds of CPU on any machine: without bf16 hardware the libraries emulate it
    # (slower than f32), so the runtime runs f32 and says so; with it, bf16 as asked.
    monkeypatch.setattr(backends, "cpu_has_bf16", lambda: hardware_bf16)
    detector, _ = detect(exported, image, backend=backend)
    assert detector.precision == "f32"
    if backend == "openvino":
        # Asked explicitly: on a CPU with bf16 OpenVINO would otherwise pick bf16.
        hint = detector.runner.compiled.get_property("INFERENCE_PRECISION_HINT")
        assert hint.get_type_name() == "f32"
    monkeypatch.setenv("VITRINE_PRECISION", "bf16")
    fast, _ = detect(exported, image, backend=backend)
    expected = "bf16" if hardware_bf16 else "f32"
    if backend == "openvino" and hardware_bf16 and not openvino_runs_bf16():
        # Told the CPU has bf16, but OpenVINO's plugin cannot run it on this machine (an
        # AVX2-only CPU): it compiles f32, and the detector says what runs, not what it asked.
        expected = "f32"
        assert "OpenVINO's CPU plugin compiled f32" in caplog.text
    assert fast.precision == expected and expected in repr(fast)
    assert fast.provenance["precision"] == {"bf16": "bf16", "f32": "fp32"}[expected]
    emulated = "no bf16 arithmetic" in caplog.text
    assert emulated is not hardware_bf16
    if backend == "openvino":
        hint = fast.runner.compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
        assert hint == expected
    else:
        assert fast.autocast_dtype == (torch.bfloat16 if hardware_bf16 else None)
    inputs = fast.preprocess(image.image)
    outputs = fast.forward(inputs)
    # Post-processing always gets float32, whatever the forward computed in.
    assert outputs["logits"].dtype == outputs["pred_boxes"].dtype == torch.float32
    assert outputs["logits"].shape == detector.forward(inputs)["logits"].shape


@pytest.mark.same_on_any_database
def test_query_order_does_not_count_but_a_missing_query_does():
    logits, boxes = torch.randn(1, 5, 3), torch.rand(1, 5, 4)
    reference = {"logits": logits, "pred_boxes": boxes}
    order = [0, 2, 1, 3, 4]
    swapped = {"logits": logits[:, order], "pred_boxes": boxes[:, order]}
    result = compare_outputs(reference, swapped)
    assert (result.unmatched, result.permuted, result.logits) == (0, 2, 0.0)
    replaced = {"logits": logits.clone(), "pred_boxes": boxes.clone()}
    replaced["logits"][0, 4] += 1.0
    result = compare_outputs(reference, replaced)
    assert result.unmatched == 1 and result.logits == pytest.approx(1.0)


@pytest.mark.django_db
def test_export_model_by_catalogue_id(tmp_path, monkeypatch):
    call_command("seed_catalog", stdout=io.StringIO())
    call_command(
        "make_checkpoints", "--weights-dir", str(tmp_path), "--families", FAMILY,
        stdout=io.StringIO(),
    )  # fmt: skip
    monkeypatch.setenv("VITRINE_WEIGHTS_DIR", str(tmp_path))
    with pytest.raises(CommandError, match="No model 'acme/nothing'"):
        call_command("export_model", "acme/nothing")
    out = io.StringIO()
    call_command("export_model", "hustvl/yolos-tiny", stdout=out)
    folder = tmp_path / "hustvl" / "yolos-tiny" / "main" / "openvino"
    assert f"written to {folder}" in out.getvalue()
    manifest = json.loads((folder / "export.json").read_text())
    assert manifest["source"]["repo"] == "hustvl/yolos-tiny"
    assert manifest["source"]["revision"] == "main"
    assert manifest["speed"][cpu_identity()]["images"] == 3
    # This machine's measurement would decide what auto runs (YOLOS tiny's export is about
    # as fast as torch on some CPUs): the test plants its own.
    measured(folder.parent, 1.5)
    detector = load_detector(CheckpointSpec(repo="hustvl/yolos-tiny", revision="main"))
    assert detector.backend == "openvino"


@pytest.mark.worker
@pytest.mark.parametrize("precision", ["f32", "int8"])
def test_a_worker_runs_jobs_on_the_export(start_worker, exported, settings, tmp_path, precision):
    from playground import services
    from tests import factories
    from tests.conftest import wait_for

    if precision == "int8":
        pytest.importorskip("nncf")
        from playground.runtime.export import export_checkpoint

        export_checkpoint(CheckpointSpec(local_dir=str(exported)), precision="int8")
    settings.VITRINE_JOB_STORAGE = tmp_path / "jobs"
    worker = start_worker(
        env_extra={
            "VITRINE_BACKEND": "openvino",
            "VITRINE_PRECISION": precision,
            "VITRINE_DETECTION_FLOOR": str(THRESHOLD),
        }
    )
    upload = encode(blocks_image(320, 240, seed=4))
    card = factories.card(checkpoint_local_dir=str(exported))
    job = services.job_create(card=card, image_bytes=upload)

    def finished():
        job.refresh_from_db()
        return job.is_final

    wait_for(finished, timeout=240, interval=0.5, message=worker.output())
    assert job.status == "succeeded", worker.output()
    # The worker's detector ran the export, and the job says in what arithmetic.
    assert f"(openvino, {precision})" in worker.output()
    assert job.runtime_precision == {"f32": "fp32", "int8": "int8"}[precision]
    if precision == "int8":
        return  # its detections move (the labelled fast variant): the bench states how far
    _, expected = detect(exported, decode_image(upload, max_pixels=10_000_000), backend="torch")
    assert_same_detections(job.result, expected, threshold=THRESHOLD, min_count=1)


@pytest.mark.same_on_any_database
def test_an_int8_export_is_the_labelled_fast_variant(checkpoint, image, tmp_path, monkeypatch):
    pytest.importorskip("nncf")
    photos = tmp_path / "photos"
    photos.mkdir()
    for seed in range(3):
        (photos / f"{seed}.png").write_bytes(encode(blocks_image(200, 150, seed=10 + seed)))
    out = io.StringIO()
    call_command(
        "export_model", "any/id", "--checkpoint", str(checkpoint), "--precision", "int8",
        "--calibration-images", str(photos), "--calibration-limit", "2", stdout=out,
    )  # fmt: skip
    printed = out.getvalue()
    assert "quantized to int8" in printed and "not held to the f32 tolerance" in printed
    folder = checkpoint / "openvino-int8"
    manifest = json.loads((folder / "export.json").read_text())
    assert manifest["precision"] == "int8" and "nncf" in manifest["exporter"]
    assert manifest["quantization"]["calibration_images"] == 2
    assert manifest["quantization"]["calibration_source"] == str(photos)
    assert manifest["quantization"]["scope"] == "transformer"
    assert manifest["check"]["logit_tolerance"] is None
    assert manifest["check"]["nonfinite_values"] == 0
    assert "FakeQuantize" in (folder / "model.xml").read_text()
    assert not (checkpoint / "openvino").exists()  # the f32 export is another folder

    # f32 (the default) does not run it: auto finds no f32 export and runs torch.
    torch_detector, _ = detect(checkpoint, image)
    assert torch_detector.backend == "torch"
    monkeypatch.setattr(backends, "cpu_has_bf16", lambda: False)
    monkeypatch.setenv("VITRINE_PRECISION", "int8")
    fast, detections = detect(checkpoint, image)  # auto
    assert all(d["score"] > THRESHOLD for d in detections)
    assert (fast.backend, fast.precision) == ("openvino", "int8") and fast.model is None
    assert "(openvino, int8)" in repr(fast) and fast.provenance["precision"] == "int8"
    # Its other operations in f32 on a CPU without bf16 arithmetic.
    assert fast.runner.compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name() == "f32"
    inputs = fast.preprocess(image.image)
    outputs = fast.forward(inputs)
    assert outputs["logits"].dtype == outputs["pred_boxes"].dtype == torch.float32
    reference = torch_detector.forward(inputs)
    # Quantized for real: beyond the f32 export's tolerance, and still the same model.
    difference = compare_outputs(reference, outputs)
    assert difference.logits > backends.LOGIT_TOLERANCE or difference.unmatched
    assert (outputs["pred_boxes"] - reference["pred_boxes"]).abs().max() < 0.25

    for backend in ("torch", "onnxruntime"):
        with pytest.raises(BackendUnavailable, match="int8 OpenVINO export only"):
            detect(checkpoint, image, backend=backend)
    out = io.StringIO()
    call_command(
        "export_model", "any/id", "--checkpoint", str(checkpoint), "--precision", "int8",
        "--check", stdout=out,
    )  # fmt: skip
    assert "max |logit difference|" in out.getvalue()
    assert "int8: differences recorded" in out.getvalue()
    with pytest.raises(CommandError, match="calibrates an int8 export"):
        call_command("export_model", "any/id", "--checkpoint", str(checkpoint),
                     "--calibration-images", str(photos))  # fmt: skip
    with pytest.raises(CommandError, match="OpenVINO export"):
        call_command("export_model", "any/id", "--checkpoint", str(checkpoint), "--precision",
                     "int8", "--backend", "onnxruntime")  # fmt: skip


@pytest.mark.same_on_any_database
def test_int8_runs_its_own_export_or_nothing(exported, image):
    # `exported` has an f32 OpenVINO export only: int8 does not quietly run f32.
    for backend in ("auto", "openvino"):
        with pytest.raises(BackendUnavailable) as info:
            detect(exported, image, backend=backend, precision="int8")
        assert "No int8 OpenVINO export" in info.value.message
        assert "--precision int8" in info.value.message
    # An f32 export put where the int8 one goes is refused by its manifest.
    shutil.copytree(exported / "openvino", exported / "openvino-int8")
    with pytest.raises(BackendUnavailable, match="not an int8 export"):
        detect(exported, image, precision="int8")
    shutil.rmtree(exported / "openvino-int8")

    # NNCF's default preset (--int8-scope all) also quantizes the attention's matmuls.
    from playground.runtime.export import export_checkpoint

    folder, manifest = export_checkpoint(
        CheckpointSpec(local_dir=str(exported)), precision="int8", int8_scope="all"
    )
    assert folder == exported / "openvino-int8"
    assert manifest["quantization"]["scope"] == "all"
    assert manifest["quantization"]["calibration_source"] == "generated images"
    fast, _ = detect(exported, image, precision="int8")
    assert (fast.backend, fast.precision) == ("openvino", "int8")
    assert detect(exported, image)[0].precision == "f32"  # the f32 export is still there
