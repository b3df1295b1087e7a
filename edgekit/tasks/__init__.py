"""What a model's numbers mean: pre- and post-processing, the same for every runtime.

Modules here import numpy only (OpenCV lazily, for pixel resizing): never
TensorFlow or a model runtime. ``base`` is the contract the camera loop asks of a task;
``make_task`` builds the one a loaded model needs.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from edgekit.errors import InvalidModel, UsageError
from edgekit.helpers.records import keyword_only
from edgekit.tasks.base import TASKS, LoopTask

if TYPE_CHECKING:
    from edgekit.model import LoadedModel

__all__ = ["TASKS", "LoopTask", "TaskOptions", "check_task", "make_task"]


@keyword_only
@dataclass(frozen=True)
class TaskOptions:
    """What a person asks of the task on top of the model's own: which task (None: the
    model's), a classifier's top-k and smoothing, the detection score shown (None: the
    decoder's) and whether every candidate is kept (to score mAP)."""

    task: str | None = None
    top_k: int = 5
    smooth: int = 1
    score_threshold: float | None = None
    keep_all: bool = False


def check_task(declared: str, asked: str | None, from_bundle: bool) -> str:
    """The task to run: ``asked`` when given, else ``declared`` (the model's). Asking a
    bundle for another task than the one it declares is refused, except ``generic`` (any
    model's outputs can be shown as they are) and a bundle that declares none."""
    if asked is None:
        return declared
    if asked not in TASKS:
        raise UsageError(f"unknown task {asked!r}; choose from {', '.join(TASKS)}")
    if from_bundle and declared not in (asked, "generic") and asked != "generic":
        raise UsageError(f"the bundle holds a {declared} model, not a {asked} one: leave "
                         f"`task` out (or give `task` generic for its raw outputs)")
    return asked


def make_task(model: LoadedModel, options: TaskOptions | None = None) -> LoopTask:
    """The loop's task for ``model`` (``model.task``, which ``check_task`` settled), checked
    against the shapes of its outputs before a frame is read."""
    options = options or TaskOptions()
    size = (model.spec.width, model.spec.height)
    if model.task == "detection":
        from edgekit.tasks.detection import DetectionTask

        return DetectionTask(model.decoder, model.decoder_origin, size, model.labels,
                             options.score_threshold, options.keep_all)
    if model.task == "classification":
        from edgekit.tasks.classification import ClassificationTask

        classes = _class_count(model)
        if not 1 <= options.top_k <= classes:
            raise UsageError(f"top-k is 1 to the model's {classes} classes, not {options.top_k}")
        if options.smooth < 1:
            raise UsageError(f"smoothing takes 1 frame or more, not {options.smooth}")
        return ClassificationTask(model.labels, options.top_k, options.smooth)
    if model.task == "segmentation":
        from edgekit.tasks.segmentation import SegmentationTask, mask_layout

        mask_layout(model.blank_outputs()[0].shape)
        return SegmentationTask(model.labels, size)
    from edgekit.tasks.generic import GenericTask

    return GenericTask()


def _class_count(model: LoadedModel) -> int:
    """A classifier's classes: the length of its score vector (ones in front allowed)."""
    shape = tuple(int(d) for d in model.blank_outputs()[0].shape)
    if not shape or int(np.prod(shape)) != shape[-1]:
        raise InvalidModel(f"a classifier's first output is a vector of class scores, not "
                           f"{shape} (--postprocess task=generic shows any output)")
    return shape[-1]
