"""What convert needs to know before it converts anything, each value with its origin.

The input spec (colour, mean, std, resize), the model's outputs (their names and
which of them are class scores), the labels, and the calibration and validation
data: all settled and checked here, so a wrong setting stops the run before a
single artifact is written, with one line that says which setting and how to fix it.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.bundle.fidelity import looks_like_class_scores, top1
from edgekit.data.datacheck import check_folder_order, check_label_names, check_samples
from edgekit.data.datasets import Samples, load_samples
from edgekit.errors import InvalidData, InvalidModel, UsageError
from edgekit.preprocess import InputSpec, SpecOptions, parse_resize, setting_name
from edgekit.tasks.detection import DetectionOptions, configure, decode, read_anchors

CARD, FLAG, DEFAULT, MODEL = "model card", "flag", "default", "model"
MIN_CALIBRATION = 100


def input_spec(shape: tuple[int, ...], card: dict[str, Any], options: SpecOptions | None,
               name: str, shape_origin: str = MODEL) -> InputSpec:
    """The input spec from the flags (and a --reference), else the model card, else the
    defaults; the spec's ``origin`` records which for every value (shown at the top of
    convert's output, kept in the manifest)."""
    from_card = card.get("input", {})
    channels = shape[-1]
    defaults = {"color": "gray" if channels == 1 else "rgb", "mean": (0.0,) * channels,
                "std": (255.0,) * channels, "resize": "stretch", "interpolation": "bilinear",
                "antialias": False}
    given = options.given() if options is not None else {}
    values: dict[str, Any] = {}
    origin = {"shape": shape_origin}
    for key, default in defaults.items():
        if key in given:
            values[key], origin[key] = given[key]
        elif from_card.get(key) is not None:
            values[key], origin[key] = from_card[key], CARD
        else:
            values[key], origin[key] = default, DEFAULT
    for key in ("mean", "std"):
        values[key] = tuple(float(v) for v in (values[key] if isinstance(values[key], (
            list, tuple)) else [values[key]]))
    if not isinstance(values["antialias"], bool):
        raise UsageError(f"antialias in the model card is {values['antialias']!r}; give true "
                         "or false")
    values["resize"] = str(parse_resize(values["resize"], setting_name("resize", origin["resize"])))
    return InputSpec(shape=(1, *shape), name=name, origin=origin, **values)


def decoder_settings(task: str, card: dict[str, Any], detect: DetectionOptions | None,
                     labels: Sequence[str], output_shapes: Sequence[tuple[int, ...]],
                     spec: InputSpec) -> dict[str, Any]:
    """A detector's decoder: the model card's ``decoder`` with the flags on top, checked (and
    tried once on outputs of the model's shapes); ``origin`` says where each value came from.
    Detection flags for a model that is not a detector are refused."""
    asked = detect is not None and (detect.decoder is not None or bool(detect.given()))
    if task != "detection":
        if asked:
            raise UsageError(f"the detection options (`decoder`, `iou`, ...) are for a "
                             f"detector; this model's task is {task} (give `task` detection "
                             "if it is one)")
        return {}
    card_decoder = dict(card.get("decoder") or {})
    if not card_decoder and not asked:
        return {}
    card_decoder.pop("origin", None)
    decoder, origin = configure(card_decoder, detect, CARD)
    try:
        decode([np.zeros((1, *shape[1:]), np.float32) for shape in output_shapes], decoder,
               (spec.width, spec.height), labels)
    except InvalidModel as exc:
        raise UsageError(f"the {decoder['name']} decoder does not fit this model's outputs "
                         f"{[tuple(s) for s in output_shapes]}: {exc}") from None
    return {**decoder, "origin": origin}


ANCHORS_NAME = "anchors.npy"


def bundled_decoder(decoder: dict[str, Any], folder: Path) -> dict[str, Any]:
    """The decoder as the manifest keeps it: an anchors file given at convert is copied into
    the bundle (``anchors.npy``) and named relative to it, so the bundle stands alone."""
    if not decoder.get("anchors"):
        return decoder
    np.save(folder / ANCHORS_NAME, read_anchors(decoder["anchors"]))
    return {**decoder, "anchors": ANCHORS_NAME}


@dataclass
class Outputs:
    """The Keras model's outputs: names, and which are class scores (top-1 applies)."""

    names: tuple[str, ...]
    class_scores: tuple[int, ...]
    classes: int | None  # the class count of the first class-score output


def output_names(model: Any, count: int, card: dict[str, Any],
                 keys: Sequence[str] | None = None) -> tuple[str, ...]:
    """From the card's ``output_names``, a dict output's keys, the model's own output names
    (a Sequential's last layer), else "output 0", "output 1", ..."""
    named = card.get("output_names")
    if named:
        if len(named) != count:
            raise UsageError(f"output_names in the model card lists {len(named)} names; the "
                             f"model has {count} outputs")
        return tuple(str(n) for n in named)
    names = list(keys or getattr(model, "output_names", None) or [])
    if not names and count == 1 and getattr(model, "layers", None):
        names = [model.layers[-1].name]
    return tuple(names) if len(names) == count else tuple(f"output {i}" for i in range(count))


def describe_outputs(model: Any, outputs: Sequence[np.ndarray], task: str,
                     card: dict[str, Any], keys: Sequence[str] | None = None) -> Outputs:
    """Names, and the class-score outputs: named in the card (``class_scores``, names or
    positions), a softmax over the last axis, or a classifier's one output."""
    names = output_names(model, len(outputs), card, keys)
    if card.get("class_scores") is not None:
        scores = []
        for item in card["class_scores"]:
            index = names.index(item) if item in names else item
            if not isinstance(index, int) or not 0 <= index < len(outputs):
                raise UsageError(f"class_scores in the model card names {item!r}, which is not "
                                 f"an output (they are {', '.join(names)})")
            scores.append(index)
    elif task == "detection":
        scores = []  # a detector is scored by its decoded boxes
    else:
        scores = [i for i, o in enumerate(outputs) if looks_like_class_scores(o)]
        if task == "classification" and not scores:
            scores = [0]
    classes = int(outputs[scores[0]].shape[-1]) if scores else None
    return Outputs(names, tuple(scores), classes)


def check_labels_file(labels: Sequence[str], outputs: Outputs, source: str) -> None:
    if outputs.classes is not None:
        check_label_names(labels, outputs.classes, source)


def load_data(path: str | None, spec: InputSpec, labels: Sequence[str], what: str,
              classes: int | None, warnings: list[str]) -> Samples | None:
    """Calibration or validation samples, checked (shape, NaN, range, labels)."""
    if not path:
        return None
    calibration = what == "calibration data"
    samples = load_samples(path, spec, labels, what, classes, labelled=not calibration)
    check_samples(samples, spec, what, classes)
    if calibration and len(samples) < MIN_CALIBRATION:
        warnings.append(f"only {len(samples)} calibration samples; int8 accuracy is more "
                        f"reliable with {MIN_CALIBRATION} or more")
    if samples.label_names and not labels and not all(n.isdigit() for n in samples.label_names):
        mapping = ", ".join(f"{n}={i}" for i, n in enumerate(samples.label_names))
        warnings.append(f"labels taken from the validation sub-folders, in sorted order "
                        f"({mapping}); give --labels if the model numbers its classes otherwise")
    return samples


def check_learnt_labels(samples: Samples, predicted: Sequence[np.ndarray],
                        outputs: Outputs) -> None:
    """Labels learnt from the validation sub-folders' names (sorted, not numbers) must not
    be contradicted by the Keras model's own answers on them (``check_folder_order``)."""
    names = samples.label_names
    if not names or all(n.isdigit() for n in names) or samples.y is None \
            or not outputs.class_scores:
        return
    answers = top1(predicted[outputs.class_scores[0]])
    if answers.shape[1] == 1:  # one class per sample
        check_folder_order(names, samples.y, answers[:, 0], samples.source)


def calibration_coverage(calibration: Samples | None, validation: Samples | None) -> str | None:
    """A warning when the validation data reach well beyond the calibration data's range:
    int8 ranges come from calibration, so the rest is clipped (dark calibration images for
    bright scenes, say). Percentiles 0.1 and 99.9, so one stray value does not count."""
    if calibration is None or validation is None:
        return None
    clo, chi = np.percentile(calibration.x, [0.1, 99.9])
    vlo, vhi = np.percentile(validation.x, [0.1, 99.9])
    span = vhi - vlo
    if span <= 0 or max(clo - vlo, vhi - chi) <= 0.1 * span:
        return None
    return (f"the calibration data span {clo:.3g}..{chi:.3g} but the validation data "
            f"{vlo:.3g}..{vhi:.3g}: int8 takes its ranges from the calibration data and clips "
            "the rest; calibrate on data like what the model will see")


def check_reference(outputs: Sequence[np.ndarray], source: str) -> None:
    """The Keras model's own outputs on the validation set must be numbers."""
    bad = np.zeros(len(outputs[0]), bool)
    for o in outputs:
        bad |= ~np.isfinite(o.reshape(len(o), -1)).all(axis=1)
    if bad.any():
        raise InvalidData(f"the Keras model itself outputs NaN or inf on {int(bad.sum())} of "
                          f"{len(bad)} validation samples from {source}: there is nothing "
                          "faithful to compare with; check the data and the model")


def default_spec_warning(spec: InputSpec) -> str | None:
    """A line when the normalisation was guessed, not given."""
    if spec.origin.get("mean") == DEFAULT and spec.origin.get("std") == DEFAULT:
        return ("no --preprocess mean=,std= and no model card: assuming the model takes "
                "pixels / 255 (mean 0, std 255); give --preprocess mean=M,std=S (or a "
                "MODEL.edgekit.json) if it was trained on other inputs")
    return None
