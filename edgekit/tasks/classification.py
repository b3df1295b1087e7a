"""Classification: top-k classes from a score vector, the same for every runtime."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from edgekit.model import LoadedModel


@dataclass(frozen=True)
class Class:
    """One class and its score (a probability when the model ends in softmax)."""

    id: int
    score: float
    label: str = ""


def top_k(scores: np.ndarray, k: int = 5, labels: Sequence[str] = ()) -> list[Class]:
    """The k best classes, best first; ties keep the lower id."""
    flat = np.asarray(scores, np.float64).reshape(-1)
    order = np.argsort(-flat, kind="stable")[:max(1, k)]
    return [Class(int(i), float(flat[i]), labels[i] if i < len(labels) else "") for i in order]


def classify(model: LoadedModel, image_bgr: np.ndarray, k: int = 5) -> list[Class]:
    """Pre-process one BGR image, run the model, return its top-k classes."""
    scores = model.predict(model.tensor(image_bgr))[0]
    return top_k(scores, k, model.labels)
