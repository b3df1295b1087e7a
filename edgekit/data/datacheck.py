"""Checks on calibration and validation data before anything is converted.

A wrong number is worse than an error: data holding NaN, no samples, labels the
model does not have, or values on another scale than the input spec gives
(0..255 data for a model whose spec makes pixels 0..1) would quantise or score
a model silently wrong. Each check raises InvalidData with what is wrong and
what to do.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from edgekit.data.datasets import Samples
from edgekit.errors import InvalidData
from edgekit.preprocess import InputSpec

SLACK = 0.05  # of the spec's range: data may overshoot it this much (resampling, rounding)
NARROWEST = 0.05  # data covering less of the spec's range than this is on another scale
# Common pre-processings: the range of the tensor, and the --mean/--std that give it.
COMMON_SCALES = (((0.0, 1.0), (0.0, 255.0)), ((-1.0, 1.0), (127.5, 127.5)),
                 ((0.0, 255.0), (0.0, 1.0)), ((-128.0, 127.0), (128.0, 1.0)))


def check_samples(samples: Samples, spec: InputSpec, what: str,
                  classes: int | None = None) -> None:
    """Refuse samples that would make wrong numbers; InvalidData naming the fix."""
    where = f"{what} in {samples.source}"
    if len(samples) == 0:
        raise InvalidData(f"{where} hold no samples: give at least one (100+ for calibration)")
    finite = np.isfinite(samples.x.reshape(len(samples), -1)).all(axis=1)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        raise InvalidData(f"{where}: {len(bad)} of {len(samples)} samples hold NaN or inf "
                          f"(the first is sample {bad[0]}): remove or repair them")
    if not samples.from_images:  # images were made with the spec; arrays must match it
        check_scale(samples.x, spec, where)
    if samples.y is not None and classes is not None:
        check_labels(samples.y, classes, where)
    if samples.masks is not None and classes is not None and samples.masks.max() >= classes:
        raise InvalidData(f"{where}: the masks hold class {int(samples.masks.max())}, outside "
                          f"the model's {classes} classes (0..{classes - 1})")


def check_scale(x: np.ndarray, spec: InputSpec, where: str) -> None:
    """The data's values must lie on the scale the input spec makes of 0..255 pixels."""
    lo, hi = spec.pixel_range()
    span = hi - lo
    dmin, dmax = float(x.min()), float(x.max())
    too_wide = dmin < lo - SLACK * span or dmax > hi + SLACK * span
    too_narrow = (dmax - dmin) < NARROWEST * span
    if not (too_wide or too_narrow):
        return
    spec_text = (f"the input spec (mean {_values(spec.mean)}{_origin(spec, 'mean')}, std "
                 f"{_values(spec.std)}{_origin(spec, 'std')}) makes 0..255 pixels "
                 f"{lo:g}..{hi:g}")
    raise InvalidData(f"{where} span {dmin:.4g}..{dmax:.4g}, but {spec_text}: the data and "
                      f"the spec disagree. Pass images (a folder) instead, or {_fix(dmin, dmax)}")


def _fix(dmin: float, dmax: float) -> str:
    for (lo, hi), (mean, std) in COMMON_SCALES:
        span = hi - lo
        inside = dmin >= lo - SLACK * span and dmax <= hi + SLACK * span
        if inside and (dmax - dmin) >= 0.25 * span:
            return f"the spec that matches the data: --preprocess mean={mean:g},std={std:g}"
    return ("give the --preprocess mean=,std= with which (pixel - mean) / std spans the data's "
            f"range {dmin:.4g}..{dmax:.4g}")


def check_labels(y: np.ndarray, classes: int, where: str) -> None:
    """Labels must name the model's classes, 0..classes-1."""
    if len(y) and (y.min() < 0 or y.max() >= classes):
        outside = np.unique(y[(y < 0) | (y >= classes)])
        shown = ", ".join(str(v) for v in outside[:8]) + (", ..." if len(outside) > 8 else "")
        raise InvalidData(f"{where}: labels {shown} are outside the model's {classes} classes "
                          f"(0..{classes - 1}): give each sample's class number")


def check_label_names(labels: Sequence[str], classes: int, source: str) -> None:
    """A labels file must name every class of the model, no more, no fewer."""
    if labels and len(labels) != classes:
        raise InvalidData(f"labels: {source} names {len(labels)} classes; the model has "
                          f"{classes}: give one label per class, in the model's class order")


def one_to_one(counts: np.ndarray) -> list[int]:
    """A one-to-one assignment of the rows of a square matrix to its columns that covers
    many of its counts, greedily: the largest cell first, then the largest whose row and
    column are both still free. (Not always the optimum the Hungarian method finds, which
    needs scipy; close enough to see a contradiction.) ``result[row]`` is its column."""
    n = len(counts)
    order = np.argsort(counts, axis=None, kind="stable")[::-1]
    assigned = [-1] * n
    taken = np.zeros(n, bool)
    for cell in order:
        row, column = divmod(int(cell), n)
        if assigned[row] < 0 and not taken[column]:
            assigned[row], taken[column] = column, True
    return assigned


def check_folder_order(names: Sequence[str], y: np.ndarray, answers: np.ndarray,
                       source: str) -> None:
    """Labels taken from sub-folder names in sorted order are a guess: refuse it
    (InvalidData, naming the assignment the model suggests) when the model's own top-1
    ``answers`` on the validation samples fit another one-to-one assignment of folders to
    classes far better: it explains at least twice the samples, and at least half of them."""
    n = len(names)
    known = (answers >= 0) & (answers < n)
    confusion = np.zeros((n, n), np.int64)
    np.add.at(confusion, (y[known], answers[known]), 1)
    assumed = int(np.trace(confusion))
    suggested = one_to_one(confusion)
    explained = int(sum(confusion[i, c] for i, c in enumerate(suggested)))
    if explained <= assumed or explained < max(2 * assumed, len(y) / 2):
        return
    by_class = sorted(range(n), key=lambda i: suggested[i])
    pairs = ", ".join(f"{names[i]} -> {suggested[i]}" for i in by_class)
    raise InvalidData(
        f"{source}: the sub-folders' names were taken as the labels in sorted order "
        f"({', '.join(f'{name}={i}' for i, name in enumerate(names))}), but the model's own "
        f"answers contradict it: it agrees with {assumed} of {len(y)} samples that way and "
        f"with {explained} as {pairs}; give --labels FILE with the labels in the model's "
        f"class order, one per line (as its answers suggest: "
        f"{', '.join(names[i] for i in by_class)})")


def _values(values: Sequence[float]) -> str:
    return ",".join(f"{v:g}" for v in values)


def _origin(spec: InputSpec, key: str) -> str:
    where = spec.origin.get(key)
    return f" [{where}]" if where else ""
