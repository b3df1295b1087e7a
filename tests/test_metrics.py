"""Average precision and mAP against hand-worked cases."""
from __future__ import annotations

import numpy as np
import pytest

from edgekit.errors import InvalidData
from edgekit.tasks.detection import Detection
from edgekit.tasks.metrics import (
    average_precision,
    class_average_precisions,
    mean_average_precision,
)


def obj(class_id: int, box: tuple[float, float, float, float], score: float = 1.0) -> Detection:
    return Detection(str(class_id), class_id, score, box)


A = (0.0, 0.0, 10.0, 10.0)
B = (20.0, 20.0, 30.0, 30.0)
C = (40.0, 0.0, 50.0, 10.0)


def test_average_precision_of_a_curve():
    # Precision envelope: 1.0 up to recall 0.5, then 2/3 up to recall 1.0.
    assert average_precision([0.5, 0.5, 1.0], [1.0, 0.5, 2 / 3]) == pytest.approx(0.5 + 1 / 3)
    assert average_precision([], []) == 0.0
    assert average_precision([1.0], [1.0]) == 1.0


def test_perfect_predictions_score_one():
    truth = [[obj(0, A), obj(1, B)], [obj(1, C)], []]
    predictions = [[obj(1, B, 0.6), obj(0, A, 0.9)], [obj(1, C, 0.7)], []]
    assert mean_average_precision(predictions, truth) == 1.0


def test_hand_worked_ranking():
    # Ranked: TP (0.9), FP (0.8, no box there), TP (0.7). Recall 0.5, 0.5, 1;
    # precision 1, 0.5, 2/3. AP = 0.5 * 1 + 0.5 * 2/3 = 5/6.
    truth = [[obj(3, A)], [obj(3, B)]]
    predictions = [[obj(3, A, 0.9), obj(3, C, 0.8)], [obj(3, B, 0.7)]]
    assert mean_average_precision(predictions, truth) == pytest.approx(5 / 6)


def test_duplicates_and_wrong_classes_are_false_positives():
    truth = [[obj(1, A), obj(2, B)]]
    predictions = [[
        obj(1, A, 0.9),  # TP for class 1
        obj(1, A, 0.8),  # duplicate: FP
        obj(2, A, 0.95),  # class 2 at class 1's box: FP, ranked first for class 2
        obj(2, B, 0.5),  # TP for class 2
    ]]
    per_class = class_average_precisions(predictions, truth)
    assert per_class[1] == pytest.approx(1.0)
    assert per_class[2] == pytest.approx(0.5)  # precision 1/2 at recall 1
    assert mean_average_precision(predictions, truth) == pytest.approx(0.75)


def test_missed_objects_and_classes_without_truth():
    truth = [[obj(0, A), obj(0, B), obj(1, C)]]
    predictions = [[obj(0, A, 0.9), obj(1, C, 0.8), obj(7, B, 0.99)]]  # class 7 has no truth
    per_class = class_average_precisions(predictions, truth)
    assert per_class == {0: pytest.approx(0.5), 1: pytest.approx(1.0)}
    assert mean_average_precision(predictions, truth) == pytest.approx(0.75)


def test_iou_threshold_is_inclusive():
    half = (0.0, 0.0, 10.0, 20.0 / 3.0)  # IoU with A is exactly 2/3
    iou_two_thirds = [[obj(0, half, 0.9)]]
    truth = [[obj(0, A)]]
    assert mean_average_precision(iou_two_thirds, truth, iou_threshold=2 / 3 - 1e-9) == 1.0
    assert mean_average_precision(iou_two_thirds, truth, iou_threshold=0.7) == 0.0
    overlap = [[obj(0, (5.0, 0.0, 15.0, 10.0), 0.9)]]  # IoU 1/3
    assert mean_average_precision(overlap, truth, iou_threshold=1 / 3) == 1.0


def test_a_taken_truth_leaves_the_next_best_free():
    # Two true boxes side by side; both predictions overlap the left one most (IoU 1 and
    # 2/3), the second also overlaps the right one enough (IoU 6/14): COCO's rule matches it
    # there once the left one is taken (VOC's rule would call it a false positive).
    truth = [[obj(0, (0.0, 0.0, 10.0, 10.0)), obj(0, (6.0, 0.0, 16.0, 10.0))]]
    predictions = [[obj(0, (0.0, 0.0, 10.0, 10.0), 0.9), obj(0, (2.0, 0.0, 12.0, 10.0), 0.8)]]
    assert mean_average_precision(predictions, truth, iou_threshold=0.4) == 1.0


def test_bad_input_is_reported():
    with pytest.raises(InvalidData, match="one list per image"):
        mean_average_precision([[]], [[], []])
    with pytest.raises(InvalidData, match="ground truth is empty"):
        mean_average_precision([[obj(0, A, 0.5)]], [[]])


def test_order_of_equal_scores_does_not_depend_on_numpy_sorting():
    truth = [[obj(0, A)], [obj(0, B)]]
    predictions = [[obj(0, C, 0.5)], [obj(0, B, 0.5)]]  # tie: the image order decides
    assert mean_average_precision(predictions, truth) == pytest.approx(0.5 * 0.5)
    assert np.isfinite(mean_average_precision(predictions, truth))
