"""The allocator of torch workers: the measured choice, applied only where it is safe."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import call_command

from playground.runtime import allocator
from playground.runtime.allocator import library, measured_choice, worker_preload

pytestmark = pytest.mark.same_on_any_database


@pytest.fixture(autouse=True)
def no_setting(monkeypatch):
    monkeypatch.delenv("VITRINE_ALLOCATOR", raising=False)
    monkeypatch.delenv("VITRINE_BACKEND", raising=False)


def write_measurement(path, *, cpu, choice, others=None):
    by_cpu = {**(others or {}), cpu: {"choice": choice, "rows": {}}}
    path.write_text(json.dumps({"by_cpu": by_cpu}))
    return path


def test_the_measured_choice_holds_only_for_the_cpu_it_was_measured_on(tmp_path):
    here = allocator.cpu_identity()
    mine = write_measurement(
        tmp_path / "here.json",
        cpu=here,
        choice="jemalloc",
        others={"Another CPU (family 6, model 106)": {"choice": "tcmalloc"}},
    )
    other = write_measurement(tmp_path / "other.json", cpu=here + " (another)", choice="jemalloc")
    assert measured_choice(mine) == "jemalloc"
    assert measured_choice(other) == "malloc"
    assert measured_choice(tmp_path / "never-measured.json") == "malloc"


def test_one_model_name_on_two_generations_is_two_cpus(tmp_path, monkeypatch):
    """Behind a hypervisor Zen 3 and Zen 4 are both "AMD EPYC": a choice measured on one
    does not carry over to the other."""
    zen3 = {"model name": "AMD EPYC", "cpu family": "25", "model": "1"}
    zen4 = {**zen3, "model": "17"}
    monkeypatch.setattr(allocator, "cpuinfo_fields", lambda: zen4)
    measured_on_zen4 = write_measurement(
        tmp_path / "a.json", cpu=allocator.cpu_identity(), choice="tcmalloc"
    )
    assert allocator.cpu_identity() == "AMD EPYC (family 25, model 17)"
    assert measured_choice(measured_on_zen4) == "tcmalloc"
    monkeypatch.setattr(allocator, "cpuinfo_fields", lambda: zen3)
    assert measured_choice(measured_on_zen4) == "malloc"


def test_a_file_of_another_shape_is_no_measurement(tmp_path):
    """The flat file of before (one CPU, named by model name alone) does not apply."""
    flat = tmp_path / "flat.json"
    flat.write_text(json.dumps({"cpu": allocator.cpu_model(), "choice": "jemalloc"}))
    assert measured_choice(flat) == "malloc"
    (tmp_path / "list.json").write_text("[]")
    assert measured_choice(tmp_path / "list.json") == "malloc"


@pytest.mark.parametrize(
    ("backend", "setting", "expected"),
    [
        ("torch", "jemalloc", "jemalloc"),
        ("torch", "tcmalloc", "tcmalloc"),
        ("torch", "malloc", None),
        # OpenVINO's compile_model crashes with either preloaded; auto may pick OpenVINO.
        ("openvino", "jemalloc", None),
        ("auto", "tcmalloc", None),
        ("onnxruntime", "jemalloc", None),
    ],
)
def test_only_torch_workers_get_a_preload(backend, setting, expected):
    want = library(expected) if expected else None
    assert worker_preload(backend=backend, setting=setting) == want


def test_measured_is_the_default_setting(tmp_path, monkeypatch):
    monkeypatch.setattr(
        allocator,
        "MEASURED_FILE",
        write_measurement(tmp_path / "a.json", cpu=allocator.cpu_identity(), choice="jemalloc"),
    )
    assert worker_preload(backend="torch") == library("jemalloc")
    monkeypatch.setenv("VITRINE_ALLOCATOR", "malloc")
    assert worker_preload(backend="torch") is None
    monkeypatch.setenv("VITRINE_ALLOCATOR", "hoard")
    with pytest.raises(ValueError, match="VITRINE_ALLOCATOR"):
        worker_preload(backend="torch")


def test_the_allocator_command_prints_the_library_for_start_scripts(monkeypatch):
    monkeypatch.setenv("VITRINE_ALLOCATOR", "jemalloc")
    out = io.StringIO()
    call_command("allocator", "--backend", "torch", stdout=out)
    assert out.getvalue().strip() == (library("jemalloc") or "")
    out = io.StringIO()
    call_command("allocator", "--backend", "openvino", stdout=out)
    assert out.getvalue().strip() == ""
