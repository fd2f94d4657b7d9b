"""Small typed readers for the runtime's environment variables (no Django settings here)."""

from __future__ import annotations

import os

TRUE_VALUES = ("1", "true", "yes", "on")
FALSE_VALUES = ("0", "false", "no", "off", "")


def env_int(name: str, default: int | None, *, minimum: int = 1) -> int | None:
    """An integer variable, ``default`` when unset or empty; ValueError on a bad value."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")
    return value


def env_bool(name: str, default: bool = False) -> bool:
    """A yes/no variable; ValueError on anything but the usual spellings."""
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in TRUE_VALUES:
        return True
    if value in FALSE_VALUES:
        return False
    raise ValueError(f"{name} must be one of {TRUE_VALUES + FALSE_VALUES}, got {raw!r}")


def env_choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    """One of ``choices`` (case-insensitive); ValueError otherwise."""
    value = os.environ.get(name, "").strip().lower() or default
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
    return value


# What each of the runtime's variables takes, for ``environment_errors``; the modules that
# read them take their choices from here.
CHOICES: dict[str, tuple[str, ...]] = {
    "VITRINE_BACKEND": ("torch", "openvino", "onnxruntime", "auto"),
    "VITRINE_PRECISION": ("f32", "bf16", "int8"),
    "VITRINE_ALLOCATOR": ("measured", "malloc", "tcmalloc", "jemalloc"),
    "VITRINE_AUTOCAST": ("off", "fp16", "bf16"),
    "VITRINE_IMAGE_BACKEND": ("pil", "torchvision"),
    "VITRINE_DEVICE_PREPROCESS": ("auto", "on", "off"),
}
INTEGERS = (
    "VITRINE_MAX_MODELS",
    "VITRINE_BATCH_SIZE",
    "VITRINE_TORCH_THREADS",
    "VITRINE_DECODE_THREADS",
)  # each at least 1
BOOLEANS = (
    "VITRINE_CHANNELS_LAST",
    "VITRINE_FOLD_BATCH_NORMS",
    "VITRINE_FUSE_LAYERS",
    "VITRINE_ALLOW_DOWNLOAD",
)


def environment_errors() -> list[str]:
    """What is wrong with the runtime's variables as this process has them, one sentence
    each (empty: all good). The runtime reads each where it is used (a worker's first job,
    a command); Django's settings call this so a bad value stops start-up naming the
    variable, as the settings' own do, instead of failing jobs later."""
    errors = []
    checks = [
        *((env_choice, name, choices[0], choices) for name, choices in CHOICES.items()),
        *((env_int, name, None) for name in INTEGERS),
        *((env_bool, name) for name in BOOLEANS),
    ]
    for reader, *args in checks:
        try:
            reader(*args)
        except ValueError as exc:
            errors.append(str(exc))
    return errors
