"""Matching boxes across models: greedy, same label, IoU >= 0.5, complete linkage."""

from __future__ import annotations

import pytest

from playground.matching import iou, match_detections

pytestmark = pytest.mark.same_on_any_database


def box(xmin, ymin, xmax, ymax) -> dict:
    return {"xmin": xmin, "ymin": ymin, "xmax": xmax, "ymax": ymax}


def det(label, score, *coords) -> dict:
    return {"label": label, "score": score, "box": box(*coords)}


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        (box(0, 0, 10, 10), box(0, 0, 10, 10), 1.0),
        (box(0, 0, 10, 10), box(5, 0, 15, 10), 50 / 150),
        (box(0, 0, 10, 10), box(10, 0, 20, 10), 0.0),  # touching edges
        (box(0, 0, 10, 10), box(20, 20, 30, 30), 0.0),
        (box(0, 0, 10, 10), box(2, 2, 8, 8), 36 / 100),  # one inside the other
        (box(0, 0, 0, 0), box(0, 0, 0, 0), 0.0),  # empty boxes
    ],
)
def test_iou(a, b, expected):
    assert iou(a, b) == pytest.approx(expected)
    assert iou(b, a) == pytest.approx(expected)


def test_two_models_agree_on_one_box_and_each_finds_one_alone():
    result = match_detections(
        {
            "a/one": [det("cat", 0.9, 0, 0, 10, 10), det("dog", 0.8, 50, 50, 60, 60)],
            "b/two": [det("cat", 0.7, 1, 0, 11, 10), det("car", 0.6, 100, 100, 120, 120)],
        }
    )
    assert result["agreed"] == 1
    assert result["only"] == {"a/one": 1, "b/two": 1}
    assert result["groups"][0] == {
        "label": "cat",
        "models": ["a/one", "b/two"],
        "boxes": {"a/one": 0, "b/two": 0},
    }
    assert result["marks"]["a/one"][0]["with"] == ["b/two"]
    assert result["marks"]["b/two"][0]["with"] == ["a/one"]
    assert result["marks"]["a/one"][1]["with"] == []
    assert result["marks"]["b/two"][1]["with"] == []


@pytest.mark.parametrize(
    ("a", "b", "agreed"),
    [
        (det("cat", 0.9, 0, 0, 10, 10), det("dog", 0.9, 0, 0, 10, 10), 0),  # other label
        (det("cat", 0.9, 0, 0, 10, 10), det("cat", 0.9, 5, 0, 15, 10), 0),  # IoU 0.33
        (det("cat", 0.9, 0, 0, 10, 10), det("cat", 0.9, 0, 0, 10, 20), 1),  # IoU exactly 0.5
        (det("cat", 0.9, 0, 0, 10, 10), det("cat", 0.1, 0, 0, 10, 10), 1),  # scores don't gate
    ],
)
def test_the_rule_is_same_label_and_iou_at_least_one_half(a, b, agreed):
    assert match_detections({"a": [a], "b": [b]})["agreed"] == agreed


def test_greedy_takes_the_best_overlap_first():
    # b's two cats both overlap a's cat; the closer one wins, the other stays alone.
    result = match_detections(
        {
            "a": [det("cat", 0.5, 0, 0, 10, 10)],
            "b": [det("cat", 0.9, 2, 0, 12, 10), det("cat", 0.4, 0, 0, 10, 11)],
        }
    )
    assert result["groups"][0]["boxes"] == {"a": 0, "b": 1}
    assert result["only"] == {"a": 0, "b": 1}


def test_boxes_of_one_model_never_match_each_other():
    result = match_detections(
        {"a": [det("cat", 0.9, 0, 0, 10, 10), det("cat", 0.8, 0, 0, 10, 10)], "b": []}
    )
    assert result["agreed"] == 0
    assert result["only"] == {"a": 2, "b": 0}


def test_three_models_all_agree():
    result = match_detections(
        {
            "a": [det("cat", 0.9, 0, 0, 10, 10)],
            "b": [det("cat", 0.9, 0, 0, 10, 10)],
            "c": [det("cat", 0.9, 1, 1, 10, 10)],
        }
    )
    assert result["agreed"] == 1
    assert result["groups"][0]["models"] == ["a", "b", "c"]
    assert result["marks"]["c"][0]["with"] == ["a", "b"]


def test_a_chain_is_not_a_group():
    # a~b (IoU 0.67, taken first) and b~c (IoU 0.54), but a and c overlap only 0.33:
    # complete linkage keeps c out of a and b's group.
    result = match_detections(
        {
            "a": [det("cat", 0.9, 0, 0, 10, 10)],
            "b": [det("cat", 0.9, 2, 0, 12, 10)],
            "c": [det("cat", 0.9, 5, 0, 15, 10)],
        }
    )
    assert result["agreed"] == 1
    assert result["only"] == {"a": 0, "b": 0, "c": 1}
    assert len(result["groups"]) == 2


def test_a_model_with_no_boxes():
    result = match_detections({"a": [], "b": [det("cat", 0.9, 0, 0, 10, 10)]})
    assert result == {
        "groups": [{"label": "cat", "models": ["b"], "boxes": {"b": 0}}],
        "agreed": 0,
        "only": {"a": 0, "b": 1},
        "marks": {"a": [], "b": [{"group": 0, "with": []}]},
    }
