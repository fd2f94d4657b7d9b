"""The allocator of torch workers: the measured choice, applied only where it is safe."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import call_command

from playground.runtime import allocator
from playground.runtime.allocator import library, measured_choice, worker_preload


@pytest.fixture(autouse=True)
def no_setting(monkeypatch):
    monkeypatch.delenv("VITRINE_ALLOCATOR", raising=False)
    monkeypatch.delenv("VITRINE_BACKEND", raising=False)


def write_measurement(path, *, cpu, choice):
    path.write_text(json.dumps({"cpu": cpu, "choice": choice, "rows": {}}))
    return path


def test_the_measured_choice_holds_only_for_the_cpu_it_was_measured_on(tmp_path):
    here = allocator.cpu_model()
    mine = write_measurement(tmp_path / "here.json", cpu=here, choice="jemalloc")
    other = write_measurement(tmp_path / "other.json", cpu=here + " (another)", choice="jemalloc")
    assert measured_choice(mine) == "jemalloc"
    assert measured_choice(other) == "malloc"
    assert measured_choice(tmp_path / "never-measured.json") == "malloc"


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
        write_measurement(tmp_path / "a.json", cpu=allocator.cpu_model(), choice="jemalloc"),
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
