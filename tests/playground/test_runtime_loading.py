"""Finding and loading checkpoints: missing weights, the weights directory, the model cache."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command

from playground.runtime import (
    CheckpointSpec,
    WeightsNotInstalled,
    clear_detector_cache,
    decode_image,
    get_detector,
    load_detector,
    loaded_detectors,
)
from playground.runtime.weights import HUB_MISSING_HINT_OFFLINE
from tests.playground.runtime_helpers import blocks_image, encode

REPO = Path(settings.BASE_DIR)


@pytest.fixture
def no_weights_env(monkeypatch):
    for name in ("VITRINE_WEIGHTS_DIR", "VITRINE_ALLOW_DOWNLOAD", "VITRINE_MAX_MODELS"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.same_on_any_database
def test_importing_the_runtime_imports_neither_django_nor_torch():
    code = (
        "import sys, playground.runtime as r\n"
        "r.decode_image\n"
        "print(sorted(m for m in ('django', 'torch', 'transformers') if m in sys.modules))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


@pytest.mark.same_on_any_database
def test_the_detector_module_runs_without_django():
    code = (
        "import sys\n"
        "from playground.runtime import get_detector, Detector, DetectionResult\n"
        "import playground.runtime.checkpoints, playground.runtime.reference\n"
        "import playground.runtime.backends, playground.runtime.export\n"
        "print('django' in sys.modules, 'torch' in sys.modules)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["False", "True"]


@pytest.mark.same_on_any_database
def test_a_local_dir_that_does_not_exist_is_weights_not_installed(tmp_path, no_weights_env):
    missing = tmp_path / "nowhere"
    with pytest.raises(WeightsNotInstalled) as info:
        get_detector(CheckpointSpec(repo="acme/detector", local_dir=str(missing)))
    assert info.value.code == "weights_not_installed"
    assert str(missing) in info.value.message and "does not exist" in info.value.message


@pytest.mark.same_on_any_database
def test_a_dir_without_the_weights_file_is_weights_not_installed(
    tmp_path, runtime_checkpoint, no_weights_env
):
    partial = tmp_path / "partial"
    partial.mkdir()
    for name in ("config.json", "preprocessor_config.json"):
        shutil.copy(runtime_checkpoint("yolos_tiny") / name, partial / name)
    with pytest.raises(WeightsNotInstalled) as info:
        load_detector(CheckpointSpec(local_dir=str(partial)))
    assert str(partial) in info.value.message and "incomplete" in info.value.message


@pytest.mark.same_on_any_database
def test_a_hub_id_that_is_not_downloaded_is_weights_not_installed_offline(no_weights_env):
    # A repo no cache can hold: without VITRINE_ALLOW_DOWNLOAD nothing goes to the network.
    spec = CheckpointSpec(repo="vitrine-tests/no-such-detector", revision="0123abc")
    with pytest.raises(WeightsNotInstalled) as info:
        get_detector(spec)
    message = info.value.message
    assert "vitrine-tests/no-such-detector at revision 0123abc" in message
    assert HUB_MISSING_HINT_OFFLINE in message


@pytest.mark.same_on_any_database
def test_the_weights_dir_is_looked_up_by_org_name_and_revision(
    tmp_path, monkeypatch, runtime_checkpoint, no_weights_env
):
    monkeypatch.setenv("VITRINE_WEIGHTS_DIR", str(tmp_path))
    spec = CheckpointSpec(repo="hustvl/yolos-tiny", revision="v1")
    with pytest.raises(WeightsNotInstalled) as info:
        load_detector(spec, warm_up=False)
    assert str(tmp_path / "hustvl" / "yolos-tiny" / "v1") in info.value.message

    shutil.copytree(runtime_checkpoint("yolos_tiny"), tmp_path / "hustvl" / "yolos-tiny" / "v1")
    detector = load_detector(spec, warm_up=False)
    assert detector.model_type == "yolos" and detector.untrained
    image = decode_image(encode(blocks_image(64, 48, seed=1)), max_pixels=10_000)
    assert detector.detect([image], threshold=0.0)[0].detections


@pytest.mark.same_on_any_database
def test_the_cache_keeps_the_most_recently_used_models(
    monkeypatch, runtime_checkpoint, no_weights_env
):
    monkeypatch.setenv("VITRINE_MAX_MODELS", "1")
    clear_detector_cache()
    yolos = CheckpointSpec(local_dir=str(runtime_checkpoint("yolos_tiny")))
    rt_detr = CheckpointSpec(local_dir=str(runtime_checkpoint("rt_detr")))
    first = get_detector(yolos, device="cpu")
    assert get_detector(yolos, device="cpu") is first
    get_detector(rt_detr, device="cpu")
    assert loaded_detectors() == [rt_detr.key]
    assert get_detector(yolos, device="cpu") is not first  # evicted, loaded again
    clear_detector_cache()


@pytest.mark.same_on_any_database
def test_make_checkpoints_writes_loadable_untrained_checkpoints(tmp_path):
    call_command("make_checkpoints", "--out", str(tmp_path), "--families", "yolos_tiny")
    folder = tmp_path / "yolos_tiny"
    config = json.loads((folder / "config.json").read_text())
    processor = json.loads((folder / "preprocessor_config.json").read_text())
    assert config["vitrine_untrained"] is True
    assert config["model_type"] == "yolos" and config["hidden_size"] == 192
    assert processor["size"] == {"shortest_edge": 512, "longest_edge": 1333}  # the published
    detector = load_detector(CheckpointSpec(local_dir=str(folder)), warm_up=False)
    assert detector.id2label[17] == "cat" and detector.id2label[12] == "N/A"


@pytest.mark.same_on_any_database
def test_a_test_sized_checkpoint_is_the_same_classes_smaller_and_says_so(test_sized_checkpoint):
    from tests.playground.conftest import TEST_SIZED_ARCHITECTURES

    folder = test_sized_checkpoint("detr")
    config = json.loads((folder / "config.json").read_text())
    assert config["architectures"] == ["DetrForObjectDetection"]
    assert (config["encoder_layers"], config["d_model"]) == (1, 64)  # published: 6, 256
    assert config["backbone_config"]["depths"] == [1, 1, 1, 1]  # published: [3, 4, 6, 3]
    assert config["vitrine_config_overrides"] == sorted(TEST_SIZED_ARCHITECTURES["detr"])
    assert config["vitrine_untrained"] is True
    detector = load_detector(CheckpointSpec(local_dir=str(folder)), warm_up=False)
    [result] = detector.detect(
        [decode_image(encode(blocks_image(96, 64, seed=0)), max_pixels=10**7)], threshold=0.0
    )
    assert len(result.detections) == 100


@pytest.mark.same_on_any_database
def test_make_checkpoints_on_a_database_not_migrated_says_what_to_run(tmp_path):
    # A fresh clone's first command may be this one: a sentence, not a traceback.
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    env |= {"DATABASE_URL": f"sqlite:///{tmp_path / 'empty.sqlite3'}", "DEBUG": "1"}
    out = subprocess.run(
        [sys.executable, "manage.py", "make_checkpoints", "--weights-dir", str(tmp_path / "w"),
         "--families", "yolos_tiny"],
        cwd=REPO, env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert out.returncode == 1
    assert "Traceback" not in out.stderr
    assert "run `manage.py migrate` and `manage.py seed_catalog` first" in out.stderr
    assert not (tmp_path / "w").exists()


@pytest.mark.django_db
def test_make_checkpoints_lays_out_weights_for_the_seeded_cards(tmp_path, monkeypatch):
    from playground.runtime import CheckpointSpec, load_detector

    call_command("seed_catalog", stdout=io.StringIO())
    call_command(
        "make_checkpoints", "--weights-dir", str(tmp_path), "--families", "yolos_tiny,detr",
        stdout=io.StringIO(),
    )  # fmt: skip
    assert (tmp_path / "facebook/detr-resnet-50/no_timm/config.json").exists()
    assert (tmp_path / "hustvl/yolos-tiny/main/config.json").exists()
    # The runtime finds them through VITRINE_WEIGHTS_DIR by the card's repo and revision.
    monkeypatch.setenv("VITRINE_WEIGHTS_DIR", str(tmp_path))
    detector = load_detector(CheckpointSpec(repo="hustvl/yolos-tiny", revision="main"))
    assert detector.untrained is True
