"""Server-side SVG for the compare page: COCO AP against speed, from benchmark tables.

Points come from benchmark rows whose table has an ``AP`` column and an ``FPS...`` column
(the column name says on which GPU the speed was measured). No JavaScript: the SVG is
part of the HTML and readable without scripts.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

WIDTH, HEIGHT = 640, 360
LEFT, RIGHT, TOP, BOTTOM = 56, 24, 20, 48


@dataclass(frozen=True)
class Point:
    label: str
    fps: Decimal
    ap: Decimal
    speed_column: str
    dataset: str
    is_compared: bool  # the row is one of the models being compared


def _number(text: str) -> Decimal | None:
    try:
        return Decimal(str(text).strip().rstrip("%"))
    except (InvalidOperation, ValueError):
        return None


def points_from_cards(cards) -> list[Point]:
    points: dict[str, Point] = {}
    for card in cards:
        for table in card.benchmarks.all():
            columns = list(table.columns)
            fps_col = next((i for i, c in enumerate(columns) if c.upper().startswith("FPS")), None)
            ap_col = columns.index("AP") if "AP" in columns else None
            if fps_col is None or ap_col is None:
                continue
            for row in table.rows.all():
                fps, ap = _number(row.values[fps_col]), _number(row.values[ap_col])
                if fps is None or ap is None or row.label in points:
                    continue
                points[row.label] = Point(
                    label=row.label,
                    fps=fps,
                    ap=ap,
                    speed_column=columns[fps_col],
                    dataset=table.dataset,
                    is_compared=row.is_this_model or row.model_id in {c.pk for c in cards},
                )
    return sorted(points.values(), key=lambda p: (p.fps, p.ap))


# Column names that differ only in spelling name one figure: "GFLOPs", "GFLOPS", "FLOPs (G)".
_COLUMN_ALIASES = {"flopsg": "gflops"}


def _column_key(name: str) -> str:
    key = "".join(ch for ch in name.lower() if ch.isalnum())
    return _COLUMN_ALIASES.get(key, key)


def benchmarks_by_dataset(cards) -> list[dict]:
    """Rows of every compared card's tables, merged per dataset: columns by name (spellings
    of one figure are one column, shown as first seen), rows by label where they agree. Two
    rows with one label and different figures (DETR-R50 after 50 and after 500 epochs in
    Conditional DETR's table) stay two rows: merging them would drop one."""
    merged: dict[str, dict] = {}
    for card in cards:
        for table in card.benchmarks.all():
            group = merged.setdefault(table.dataset, {"columns": {}, "rows": [], "sources": []})
            keys = [_column_key(column) for column in table.columns]
            for key, column in zip(keys, table.columns, strict=True):
                group["columns"].setdefault(key, column)
            if table.source not in group["sources"]:
                group["sources"].append(table.source)
            for row in table.rows.all():
                values = dict(zip(keys, row.values, strict=False))
                same = next(
                    (
                        r for r in group["rows"]
                        if r["label"] == row.label
                        and all(r["values"].get(k, v) == v for k, v in values.items())
                    ),
                    None,
                )  # fmt: skip
                if same is None:
                    group["rows"].append({"label": row.label, "values": values, "card": card})
                else:
                    same["values"].update(values)
    return [
        {
            "dataset": dataset,
            "columns": list(group["columns"].values()),
            "rows": [
                {"label": r["label"], "cells": [r["values"].get(k, "—") for k in group["columns"]]}
                for r in group["rows"]
            ],
            "sources": group["sources"],
        }
        for dataset, group in merged.items()
    ]


def nice_ticks(low: Decimal, high: Decimal, target: int = 5) -> list[Decimal]:
    """Round tick values (steps of 1, 2 or 5 x 10^n) covering low..high."""
    raw = (high - low) / target
    magnitude = Decimal(10) ** raw.adjusted()
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    start = (low / step).to_integral_value(rounding="ROUND_FLOOR") * step
    ticks = [start]
    while ticks[-1] < high:
        ticks.append(ticks[-1] + step)
    return ticks


def _frame(x_ticks: list[Decimal], y_ticks: list[Decimal], *, x_text, y_text):
    """A plot's coordinate functions (value -> SVG coordinate, as a string) and its grid with
    tick labels, spanning the first to the last tick on each axis."""
    x_low, x_high, y_low, y_high = x_ticks[0], x_ticks[-1], y_ticks[0], y_ticks[-1]
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    # format_html escapes its arguments to strings, so coordinates are formatted first.
    def x(value: Decimal, shift: float = 0) -> str:
        return f"{float(LEFT + (value - x_low) / (x_high - x_low) * plot_w) + shift:.1f}"

    def y(value: Decimal, shift: float = 0) -> str:
        return f"{float(TOP + plot_h - (value - y_low) / (y_high - y_low) * plot_h) + shift:.1f}"

    grid = format_html_join(
        "",
        '<line x1="{0}" y1="{1}" x2="{0}" y2="{2}" class="grid"/>'
        '<text x="{0}" y="{3}" class="tick" text-anchor="middle">{4}</text>',
        ((x(t), TOP, TOP + plot_h, TOP + plot_h + 16, x_text(t)) for t in x_ticks),
    )
    grid += format_html_join(
        "",
        '<line x1="{0}" y1="{1}" x2="{2}" y2="{1}" class="grid"/>'
        '<text x="{3}" y="{4}" class="tick" text-anchor="end">{5}</text>',
        ((LEFT, y(t), LEFT + plot_w, LEFT - 6, y(t, 4), y_text(t)) for t in y_ticks),
    )
    return x, y, grid


def scatter_svg(points: list[Point]) -> SafeString:
    fps = [p.fps for p in points]
    aps = [p.ap for p in points]
    x_ticks = nice_ticks(Decimal(0), max(fps) * Decimal("1.05"))
    y_ticks = nice_ticks(min(aps) - 1, max(aps) + 1)
    x_high = x_ticks[-1]
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    x, y, grid = _frame(x_ticks, y_ticks, x_text=lambda t: f"{t:.0f}", y_text=lambda t: f"{t:f}")
    dots = format_html_join(
        "",
        '<g class="point{0}"><title>{1}: {2} AP at {3} {4}</title>'
        '<circle cx="{5}" cy="{6}" r="5"/>'
        '<text x="{7}" y="{8}" class="label" text-anchor="{9}">{1}</text></g>',
        (
            (
                " compared" if p.is_compared else "",
                p.label,
                p.ap,
                p.fps,
                p.speed_column,
                x(p.fps),
                y(p.ap),
                x(p.fps, -7 if p.fps > x_high * Decimal("0.6") else 7),
                y(p.ap, -7),
                "end" if p.fps > x_high * Decimal("0.6") else "start",
            )
            for p in points
        ),
    )
    speed_columns = sorted({p.speed_column for p in points})
    return format_html(
        '<svg class="scatter" viewBox="0 0 {0} {1}" role="img" '
        'aria-label="COCO AP against frames per second">'
        '<rect x="{2}" y="{3}" width="{4}" height="{5}" class="plot"/>{6}{7}'
        '<text x="{8}" y="{9}" text-anchor="middle" class="axis">{10}</text>'
        '<text x="14" y="{11}" text-anchor="middle" class="axis" '
        'transform="rotate(-90 14 {11})">COCO AP</text></svg>',
        WIDTH,
        HEIGHT,
        LEFT,
        TOP,
        plot_w,
        plot_h,
        grid,
        dots,
        LEFT + plot_w / 2,
        HEIGHT - 8,
        mark_safe(" / ".join(format_html("{}", c) for c in speed_columns)),
        TOP + plot_h / 2,
    )


# --- speed against cost ------------------------------------------------------------------
@dataclass(frozen=True)
class CostPoint:
    label: str
    model_id: str
    ms: Decimal  # model time p50 measured here, or 1000 / published FPS
    measured: bool  # False: from the paper's FPS (another GPU, batch 1)
    per_1k: Decimal  # USD per 1,000 images on Vitrine's own route
    speed_source: str  # "measured on Vitrine" or the FPS column, e.g. "FPS (V100)"
    is_compared: bool
    estimated: bool = False  # the price is an estimate, set at launch (shown "~$0.047")

    @property
    def price_text(self) -> str:
        from catalog.pricing import format_usd

        return ("~" if self.estimated else "") + format_usd(self.per_1k)


def published_ms(card) -> tuple[Decimal, str] | None:
    """The card's own published speed as milliseconds per image (1000 / FPS) and the column
    it came from; from prefetched ``benchmarks`` and their rows."""
    for table in card.benchmarks.all():
        columns = list(table.columns)
        fps_col = next((i for i, c in enumerate(columns) if c.upper().startswith("FPS")), None)
        if fps_col is None:
            continue
        for row in table.rows.all():
            if row.is_this_model or row.model_id == card.pk:
                fps = _number(row.values[fps_col])
                if fps is not None and fps > 0:
                    return (Decimal(1000) / fps).quantize(Decimal("0.1")), columns[fps_col]
    return None


def cost_points(cards, *, compared=()) -> list[CostPoint]:
    """One point per card that has a price per image on its own route and a speed: the
    measured model time p50 (``card.stats``, when there are enough runs), else the
    published one. ``cards`` need ``routes``, ``stats`` and ``benchmarks`` loaded."""
    compared_ids = {c.pk for c in compared}
    points = []
    for card in cards:
        own = [r for r in card.routes.all() if r.is_own and r.unit == "image"]
        if not own:
            continue
        stats = getattr(card, "stats", None)
        if stats is not None and stats.enough_runs:
            speed = (Decimal(stats.model_p50_ms), "measured on Vitrine", True)
        elif (published := published_ms(card)) is not None:
            speed = (published[0], published[1], False)
        else:
            continue
        points.append(
            CostPoint(
                label=card.display_name,
                model_id=card.model_id,
                ms=speed[0],
                measured=speed[2],
                per_1k=(cheapest := min(own, key=lambda r: r.price)).price * 1000,
                speed_source=speed[1],
                is_compared=card.pk in compared_ids,
                estimated=cheapest.is_estimate,
            )
        )
    return sorted(points, key=lambda p: (p.ms, p.per_1k, p.label))


def cost_svg(points: list[CostPoint]) -> SafeString:
    """Model time (ms per image, lower is faster) against price per 1k images: one labelled
    point per model; hollow points are published speeds, filled ones measured here. Titled
    and described for screen readers; the page puts the same figures in a table."""
    from catalog.pricing import format_usd

    xs = [p.ms for p in points]
    ys = [p.per_1k for p in points]
    x_ticks = nice_ticks(Decimal(0), max(max(xs) * Decimal("1.1"), Decimal(1)))
    y_ticks = nice_ticks(Decimal(0), max(max(ys) * Decimal("1.15"), Decimal("0.01")))
    x_high = x_ticks[-1]
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    x, y, grid = _frame(x_ticks, y_ticks, x_text=lambda t: f"{t.normalize():f}", y_text=format_usd)
    right = x_high * Decimal("0.6")
    dots = format_html_join(
        "",
        '<g class="point{0}{1}" data-model-id="{2}"><title>{3}: {4} ms per image ({5}), '
        "{6} per 1k images</title>"
        '<circle cx="{7}" cy="{8}" r="5"/>'
        '<text x="{9}" y="{10}" class="label" text-anchor="{11}">{3}</text></g>',
        (
            (
                " compared" if p.is_compared else "",
                " measured" if p.measured else " published",
                p.model_id,
                p.label,
                f"{p.ms.normalize():f}",
                p.speed_source,
                p.price_text + (" estimated" if p.estimated else ""),
                x(p.ms),
                y(p.per_1k),
                x(p.ms, -7 if p.ms > right else 7),
                y(p.per_1k, -7),
                "end" if p.ms > right else "start",
            )
            for p in points
        ),
    )
    return format_html(
        '<svg class="costplot" viewBox="0 0 {0} {1}" role="img" '
        'aria-labelledby="cost-title cost-desc">'
        '<title id="cost-title">Model time against price per 1,000 images</title>'
        '<desc id="cost-desc">One point per model: milliseconds per image on the horizontal '
        "axis (left is faster), US dollars per 1,000 images on the vertical axis (lower is "
        "cheaper). Filled points are measured on Vitrine's workers, hollow ones are the "
        "published speed. The table below lists the same figures.</desc>"
        '<rect x="{2}" y="{3}" width="{4}" height="{5}" class="plot"/>{6}{7}'
        '<text x="{8}" y="{9}" text-anchor="middle" class="axis">'
        "Model time, ms per image (p50)</text>"
        '<text x="14" y="{10}" text-anchor="middle" class="axis" '
        'transform="rotate(-90 14 {10})">USD per 1k images</text></svg>',
        WIDTH,
        HEIGHT,
        LEFT,
        TOP,
        plot_w,
        plot_h,
        grid,
        dots,
        LEFT + plot_w / 2,
        HEIGHT - 8,
        TOP + plot_h / 2,
    )
