"""The int8 remedy search's own logic: which candidate is kept, what is recorded, and which
layers must stay float for a tensor to stay float. (The real quantisers are exercised in
test_int8_remedy.py; here a candidate writes a few bytes and the judge reads its score.)"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgekit.convert.inputs import calibration_coverage
from edgekit.convert.remedy import (
    Candidate,
    GraphNode,
    Measured,
    RemedyPlan,
    channel_error,
    keep_float,
    search,
)
from edgekit.data.datasets import Samples
from edgekit.errors import ConversionError


def _candidates(scores: dict[str, float | None], built: list[str]) -> list[Candidate]:
    def make(name: str) -> Candidate:
        def build(path: Path) -> list[str]:
            built.append(name)
            if scores[name] is None:
                raise ConversionError(f"{name} cannot be built")
            path.write_text(name)
            return [name] if "float" in name else []
        return Candidate(name, build)
    return [make(n) for n in scores]


def _plan(target: float = 0.99) -> RemedyPlan:
    scores = {}

    def judge(path: Path, fmt: str) -> Measured:
        return Measured(scores[path.read_text()], 0.1)
    plan = RemedyPlan(target, judge)
    plan.scores = scores  # type: ignore[attr-defined]
    return plan


def _run(tmp_path: Path, scores: dict[str, float | None], target: float = 0.99,
         enabled: bool = True) -> tuple[dict, list[str], str]:
    plan = _plan(target)
    plan.enabled = enabled
    plan.scores.update(scores)  # type: ignore[attr-defined]
    built: list[str] = []
    tmp_path.mkdir(exist_ok=True)
    out = tmp_path / "model.bin"
    details = search(out, "tflite-int8", _candidates(scores, built), plan)
    return details, built, out.read_text()


def test_the_first_candidate_that_reaches_the_bar_is_kept(tmp_path: Path) -> None:
    details, built, kept = _run(tmp_path, {"none": 0.93, "per-tensor": 0.95,
                                           "1 float": 0.995, "2 float": 1.0})
    assert kept == "1 float" and built == ["none", "per-tensor", "1 float"]
    assert details["remedy"] == "1 float" and details["passed"]
    assert details["agreement_before"] == 0.93 and details["agreement_after"] == 0.995
    assert [a["remedy"] for a in details["attempts"]] == ["none", "per-tensor", "1 float"]
    assert details["float_layers"] == ["1 float"]
    assert not list(tmp_path.glob("edgekit-remedy-*"))  # the candidates' folder is gone


def test_a_default_that_passes_is_judged_once_and_kept(tmp_path: Path) -> None:
    details, built, kept = _run(tmp_path, {"none": 1.0, "per-tensor": 0.5})
    assert built == ["none"] and kept == "none" and details["passed"]
    assert len(details["attempts"]) == 1


def test_below_the_bar_the_best_is_kept_only_when_it_gains_a_point(tmp_path: Path) -> None:
    details, _, kept = _run(tmp_path / "a", {"none": 0.90, "x": 0.95, "y": 0.97, "z": 0.96})
    assert kept == "y" and not details["passed"]
    details, _, kept = _run(tmp_path / "b", {"none": 0.900, "x": 0.905, "y": 0.903})
    assert kept == "none" and details["remedy"] == "none"


def test_a_remedy_that_cannot_be_built_is_recorded_not_fatal(tmp_path: Path) -> None:
    details, _, kept = _run(tmp_path, {"none": 0.9, "broken": None, "fixed": 1.0})
    assert kept == "fixed"
    broken = details["attempts"][1]
    assert broken["remedy"] == "broken" and "cannot be built" in broken["error"]
    with pytest.raises(ConversionError, match="none cannot be built"):
        _run(tmp_path / "c", {"none": None, "x": 1.0})


def test_no_remedy_builds_the_default_only(tmp_path: Path) -> None:
    details, built, kept = _run(tmp_path, {"none": 0.5, "x": 1.0}, enabled=False)
    assert details == {} and built == ["none"] and kept == "none"


def test_a_tensor_stays_float_with_its_producer_and_consumers_through_pass_through_ops() -> None:
    graph = [GraphNode("conv1", "Conv", ("x", "w1"), ("a",)),
             GraphNode("relu1", "Relu", ("a",), ("b",)),
             GraphNode("t", "Transpose", ("b",), ("c",)),
             GraphNode("conv2", "Conv", ("c", "w2"), ("d",)),
             GraphNode("add", "Add", ("d", "b"), ("e",)),
             GraphNode("fc", "Gemm", ("e", "w3"), ("f",))]
    assert keep_float(graph, ["b"]) == ["conv1", "relu1", "t", "conv2", "add"]
    assert keep_float(graph, ["e"]) == ["add", "fc"]


def test_channel_error_sees_quiet_channels_flattened_by_a_loud_one() -> None:
    rng = np.random.default_rng(0)
    x = rng.random((100, 6, 6, 8))
    x[..., 0] *= 300  # one loud channel
    scale = x.max() / 255
    flattened = np.round(x / scale) * scale  # one int8 scale for the whole tensor
    assert channel_error(x, flattened) > 0.5
    fine = x.copy()
    fine[..., 0] /= 300
    assert channel_error(fine, np.round(fine / (fine.max() / 255)) * (fine.max() / 255)) < 0.05


def test_calibration_far_narrower_than_validation_is_warned_about() -> None:
    rng = np.random.default_rng(1)
    val = Samples(rng.random((50, 4, 4, 1)).astype(np.float32), None, "val")
    assert calibration_coverage(Samples(val.x.copy(), None, "c"), val) is None
    dark = Samples(val.x * 0.3, None, "c")
    assert "calibration data span 0.000783..0.3" in calibration_coverage(dark, val)
