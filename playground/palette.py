"""The box colours: one per class, the same on the page's canvas and in the server's PNG.

``PALETTE`` is the one list both use: the try page renders it with ``{% box_palette %}``
(``<script id="box-palette">``) for static/playground/playground.js, and
``exports.png_render`` draws with it. A label's colour is
``PALETTE[label_hash(label) % len(PALETTE)]``; the script's ``boxColour`` computes the same
hash, so a class keeps its colour across the canvas and the PNG. White label text reads on
every colour: each is at least 4.5:1 against white (WCAG AA for the labels' 12 px text; the
green, purple, orange, teal, olive and gold were darkened to it, kept apart in hue), and
static/catalog/site.css's ``.swatch-N`` rules repeat the list.
"""

from __future__ import annotations

PALETTE: tuple[str, ...] = (
    "#d62728",  # red
    "#1f77b4",  # blue
    "#258625",  # green
    "#8f60ba",  # purple
    "#c05400",  # orange
    "#8c564b",  # brown
    "#c51b8a",  # magenta
    "#0e7f81",  # teal
    "#393b79",  # navy
    "#637000",  # olive
    "#5f6b7a",  # slate
    "#966c10",  # dark gold
)
# Keeps the running hash small (exact in JavaScript's doubles too).
HASH_MODULUS = 65521


def label_hash(label: str) -> int:
    """A small stable hash of a label's code points (the script's loop, step for step)."""
    value = 7
    for char in label:
        value = (value * 31 + ord(char)) % HASH_MODULUS
    return value


def label_colour_index(label: str) -> int:
    """The label's place in ``PALETTE``; a page's swatch is ``class="swatch swatch-N"``
    (static/catalog/site.css has one rule per colour: pages carry no style attributes,
    catalog/csp.py)."""
    return label_hash(label) % len(PALETTE)


def label_colour(label: str) -> str:
    """The label's colour, ``#rrggbb``."""
    return PALETTE[label_colour_index(label)]
