"""Fidelity per output, and the one definition of top-1 agreement (issue 8, issue 13)."""
from __future__ import annotations

import numpy as np

from edgekit.bundle.fidelity import (
    Task,
    Validation,
    agreeing,
    compare,
    keras_accuracy,
    looks_like_class_scores,
    top1,
)

RNG = np.random.default_rng(0)


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)


def _three_heads(n: int = 50) -> list[np.ndarray]:
    """(box, landmarks, class softmax), like a face detector's heads."""
    return [RNG.random((n, 4)).astype(np.float32), (RNG.random((n, 10)) * 100).astype(np.float32),
            _softmax(RNG.normal(size=(n, 5)) * 3)]


def test_every_output_gets_its_figures_and_class_scores_get_top1() -> None:
    reference = _three_heads()
    produced = [r.copy() for r in reference]
    produced[1] += 0.5  # landmarks off by half a pixel
    scores = produced[2]
    flipped = scores[:5, ::-1].copy()  # five samples now answer another class
    produced[2] = np.concatenate([flipped, scores[5:]])
    task = Task("generic", class_outputs=(2,), output_names=("box", "landmarks", "classes"))
    labels = reference[2].argmax(axis=1)
    f = compare(reference, produced, Validation(np.zeros((50, 1)), labels, reference), task, "x")
    by_name = {o.name: o for o in f.outputs}
    assert list(by_name) == ["box", "landmarks", "classes"]
    assert by_name["box"].max_abs_diff == 0 and by_name["box"].cosine > 0.9999
    assert abs(by_name["landmarks"].max_abs_diff - 0.5) < 1e-4
    assert by_name["box"].top1_agreement is None and by_name["landmarks"].top1_agreement is None
    changed = (reference[2][:5].argmax(1) != flipped.argmax(1)).sum()
    assert by_name["classes"].top1_agreement == 1 - changed / 50
    assert f.top1_agreement == by_name["classes"].top1_agreement and f.worst == "classes"
    assert f.accuracy == f.top1_agreement  # labels are Keras's own answers here
    assert abs(f.max_abs_diff - max(o.max_abs_diff for o in f.outputs)) < 1e-9


def test_nan_outputs_are_counted_and_never_agree() -> None:
    reference = [_softmax(RNG.normal(size=(20, 10)))]
    produced = [reference[0].copy()]
    produced[0][[2, 7]] = np.nan
    f = compare(reference, produced, Validation(np.zeros((20, 1)), None, reference),
                Task("classification"), "x")
    assert f.nonfinite == 2 and f.outputs[0].nonfinite == 2
    assert f.top1_agreement == 18 / 20
    assert f.max_abs_diff == 0.0  # the finite samples agree exactly
    all_nan = compare(reference, [np.full((20, 10), np.nan, np.float32)],
                      Validation(np.zeros((20, 1)), None, reference), Task("classification"), "")
    assert all_nan.max_abs_diff is None and all_nan.top1_agreement == 0.0


def test_class_scores_are_recognised_by_their_values() -> None:
    assert looks_like_class_scores(_softmax(RNG.normal(size=(1, 10))))
    assert looks_like_class_scores(_softmax(RNG.normal(size=(1, 8, 8, 3))))  # per cell
    assert not looks_like_class_scores(RNG.random((1, 4)).astype(np.float32))  # a sigmoid box
    assert not looks_like_class_scores(RNG.normal(size=(1, 10)))  # logits
    assert not looks_like_class_scores(np.ones((1, 1), np.float32))


def test_top1_per_sample_and_per_position() -> None:
    assert top1(np.array([[0.1, 0.9], [0.8, 0.2]])).tolist() == [[1], [0]]
    cells = np.zeros((2, 2, 2, 3))
    cells[..., 2] = 1
    assert top1(cells).shape == (2, 4) and (top1(cells) == 2).all()
    assert top1(np.array([[np.nan, 1.0]])).tolist() == [[-1]]
    assert agreeing([1, 2, None, 4], [1, 3, None, 4]) == 2


def test_keras_accuracy_uses_the_first_class_output() -> None:
    reference = _three_heads(10)
    labels = reference[2].argmax(axis=1)
    labels[0] = (labels[0] + 1) % 5
    validation = Validation(np.zeros((10, 1)), labels, reference)
    assert keras_accuracy(validation, Task("generic", class_outputs=(2,))) == 0.9
    assert keras_accuracy(validation, Task("generic")) is None
