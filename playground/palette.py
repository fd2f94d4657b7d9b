"""The box colours: one per class, the same on the page's canvas and in the server's PNG.

``PALETTE`` is the one list both use: templates render it with ``json_script`` (id
``box-palette``) for static/playground/playground.js, and ``exports.png_render`` draws with
it. A label's colour is ``PALETTE[label_hash(label) % len(PALETTE)]``; the script computes
the same hash (its ``boxColour``), so a class keeps its colour across the page and the file.
White label text reads on every colour.
"""

from __future__ import annotations

PALETTE: tuple[str, ...] = (
    "#d62728",
    "#1f77b4",
    "#2ca02c",
    "#9467bd",
    "#e6550d",
    "#8c564b",
    "#d6336c",
    "#0f8b8d",
    "#5254a3",
    "#b5651d",
    "#3b7d23",
    "#c51b8a",
)
# Keeps the running hash small (exact in JavaScript's doubles too).
HASH_MODULUS = 65521


def label_hash(label: str) -> int:
    """A small stable hash of a label's code points (the script's loop, step for step)."""
    value = 7
    for char in label:
        value = (value * 31 + ord(char)) % HASH_MODULUS
    return value


def label_colour(label: str) -> str:
    """The label's colour, ``#rrggbb``."""
    return PALETTE[label_hash(label) % len(PALETTE)]
