"""Where models agree on one image: their boxes matched across models. Pure, no ORM.

``match_detections`` groups the detections of 2-3 models greedily: every cross-model pair
with the same label and IoU >= ``IOU_MIN`` is a candidate; candidates are taken best IoU
first (ties: higher combined score, then input order), and a pair joins two groups only
when the result still holds at most one box per model and *every* pair of boxes in it has
the same label and IoU >= ``IOU_MIN`` (complete linkage: A~B and B~C with A far from C do
not make one group). A group found by two or more models is "agreed"; a box no other model
matched is "only <model>".

The compare page serves the result in its JSON; its script only draws it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

IOU_MIN = 0.5


def iou(a: Mapping[str, float], b: Mapping[str, float]) -> float:
    """Intersection over union of two ``{xmin, ymin, xmax, ymax}`` boxes (0 when disjoint
    or when both are empty)."""
    width = min(a["xmax"], b["xmax"]) - max(a["xmin"], b["xmin"])
    height = min(a["ymax"], b["ymax"]) - max(a["ymin"], b["ymin"])
    if width <= 0 or height <= 0:
        return 0.0
    inter = width * height
    area_a = (a["xmax"] - a["xmin"]) * (a["ymax"] - a["ymin"])
    area_b = (b["xmax"] - b["xmin"]) * (b["ymax"] - b["ymin"])
    union = area_a + area_b - inter
    return inter / union if union > 0 else 0.0


def match_detections(
    detections: Mapping[str, Sequence[Mapping]], *, iou_min: float = IOU_MIN
) -> dict:
    """Match the boxes of several models on one image.

    ``detections``: model id -> its detections (``{label, score, box}``), already filtered
    to the threshold the reader chose. Returns::

        {"groups": [{"label", "models": [model ids], "boxes": {model: index}}],
         "agreed": <groups found by 2+ models>,
         "only": {model: <its boxes no other model found>},
         "marks": {model: [{"group": i, "with": [other models]}, ...]}}  # per box, in order

    Groups are ordered by when they formed: agreed groups (best IoU first), then unmatched
    boxes by model and index.
    """
    models = list(detections)
    nodes = [(m, i) for m in models for i in range(len(detections[m]))]

    def box(node):
        model, index = node
        return detections[model][index]

    def close(p, q) -> bool:
        a, b = box(p), box(q)
        return a["label"] == b["label"] and iou(a["box"], b["box"]) >= iou_min

    candidates = []
    for x, p in enumerate(nodes):
        for q in nodes[x + 1 :]:
            if p[0] == q[0]:
                continue
            a, b = box(p), box(q)
            if a["label"] != b["label"]:
                continue
            overlap = iou(a["box"], b["box"])
            if overlap >= iou_min:
                candidates.append((-overlap, -(a["score"] + b["score"]), len(candidates), p, q))
    candidates.sort()

    group_of = {node: [node] for node in nodes}  # node -> the list of its group (shared)
    order: list[list] = []  # groups of 2+, in the order they formed
    for *_, p, q in candidates:
        gp, gq = group_of[p], group_of[q]
        if gp is gq:
            continue
        if {n[0] for n in gp} & {n[0] for n in gq}:
            continue  # one box per model in a group
        if not all(close(a, b) for a in gp for b in gq):
            continue
        for node in gq:
            gp.append(node)
            group_of[node] = gp
        if gq in order:
            order.remove(gq)
        if gp not in order:
            order.append(gp)
    singles = [[n] for n in nodes if len(group_of[n]) == 1]

    groups, marks = [], {m: [None] * len(detections[m]) for m in models}
    only = {m: 0 for m in models}
    for number, members in enumerate(order + singles):
        found_by = [m for m in models if any(n[0] == m for n in members)]
        groups.append(
            {
                "label": box(members[0])["label"],
                "models": found_by,
                "boxes": {m: i for m, i in sorted(members, key=lambda n: models.index(n[0]))},
            }
        )
        for model, index in members:
            marks[model][index] = {"group": number, "with": [m for m in found_by if m != model]}
        if len(members) == 1:
            only[members[0][0]] += 1
    return {"groups": groups, "agreed": len(order), "only": only, "marks": marks}
