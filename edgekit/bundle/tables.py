"""The bundle's tables: the convert/inspect table of every format with its fidelity, the int8
remedies' note, a tensor's quantisation in words. (The table machinery itself, which knows no
bundle, is ``edgekit.helpers.render``.)"""
from __future__ import annotations

from edgekit.bundle.manifest import Artifact, Fidelity, Manifest
from edgekit.bundle.tensors import TensorInfo
from edgekit.helpers.render import Notes, number, percent, render_table, seconds, size
from edgekit.helpers.text import printable


def _runtimes(a: Artifact) -> str:
    if not a.runtimes:
        return ""
    return ", ".join(f"{label} {'ok' if verdict == 'ok' else 'FAILS'}"
                     for label, verdict in a.runtimes.items())


def remedy_note(a: Artifact) -> str:
    """What the int8 remedies did for an artifact ("" when its default quantisation passed)."""
    r = a.details.get("int8_remedy")
    if not r or len(r.get("attempts", [])) < 2:
        return ""
    attempts = r["attempts"]
    default = attempts[0]
    kept = next(x for x in attempts if x["remedy"] == r["remedy"])
    floats = r.get("float_layers") or []
    if r["passed"]:
        head = f"int8 remedy: {kept['remedy']}"
    elif kept is default:
        head = (f"int8 remedy: none reached {percent(r['target'])} or gained a point; kept "
                "the default quantisation")
    else:
        head = f"int8 remedy: none reached {percent(r['target'])}; kept the best, {kept['remedy']}"
    if floats:
        head += f" ({', '.join(_short(n) for n in floats)})"
    tried = ", ".join(f"{x['remedy']} {percent(x['agreement'])}" if not x.get("error") else
                      f"{x['remedy']} failed" for x in attempts[1:])
    return (f"{head}; agreement {percent(default['agreement'])} -> "
            f"{percent(kept['agreement'])}, size {size(default['size'])} -> "
            f"{size(kept['size'])}, latency here {_ms(default['latency_ms'])} -> "
            f"{_ms(kept['latency_ms'])}; tried: {tried} (+{r['remedy_seconds']:.1f} s)")


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g} ms"


def _short(name: str) -> str:
    """A TFLite tensor name such as "m/conv1_1/Relu;m/conv1_1/BiasAdd;..." -> "m/conv1_1/Relu"."""
    return name.split(";")[0]


def _worst(value: str, f: Fidelity | None) -> str:
    return f"{value} ({f.worst})" if f is not None and f.worst and value != "-" else value


def _agreement(f: Fidelity) -> str:
    """Agreement with Keras; a segmenter's mean IoU with Keras's masks beside it."""
    text = _worst(percent(f.top1_agreement), f)
    return f"{text} (mIoU {f.miou_agreement:.3f})" if f.miou_agreement is not None else text


def _largest_diff(f: Fidelity) -> str:
    """The largest |diff| over the outputs, naming the output when there are several."""
    known = [o for o in f.outputs if o.max_abs_diff is not None]
    if len(f.outputs) < 2 or not known:
        return number(f.max_abs_diff)
    top = max(known, key=lambda o: o.max_abs_diff)
    return f"{number(top.max_abs_diff)} ({top.name})"


CONVERSION_HEADERS = ["format", "status", "size", "time", "agreement", "accuracy",
                      "max |diff|", "TFLite runtimes that load it"]


def conversion_table(manifest: Manifest, output: str = "text") -> str:
    """The convert/inspect table: one row per format, notes with reasons below it, as "text",
    "markdown" or "csv". The input spec, with where each value came from, heads it (not in
    CSV, which holds the rows alone)."""
    rows: list[list[object]] = []
    notes = Notes()
    keras_acc = manifest.validation.get("keras_accuracy")
    rows.append(["keras (reference)", "-", size(None), "-", "-", percent(keras_acc), "-", ""])
    for a in manifest.artifacts:
        texts = [a.reason] + a.warnings + [remedy_note(a)] + [
            f"{label}: {v}" for label, v in a.runtimes.items() if v != "ok"]
        f = a.fidelity
        rows.append([a.format, notes.mark(a.status, *texts), size(a.size), seconds(a.seconds),
                     _agreement(f) if f else "-",
                     percent(f.accuracy) if f else "-",
                     _largest_diff(f) if f else "-", _runtimes(a)])
    if output == "csv":
        return render_table(CONVERSION_HEADERS, rows, output, notes)
    footer = ""
    if manifest.validation.get("metric") == "mAP@0.5":
        footer = ("agreement and accuracy are mAP@0.5: against the Keras model's own "
                  "detections, and against the validation boxes")
    elif manifest.validation.get("metric") == "pixel":
        footer = ("agreement and accuracy are per pixel: the share of pixels of the same class "
                  "as in the Keras model's masks, and as in the validation masks; mIoU: the "
                  "mean IoU of the masks and Keras's")
    separator = "\n\n" if output == "markdown" else "\n"
    body = render_table(CONVERSION_HEADERS, rows, output, notes, footer)
    if output == "markdown" and footer:
        body += f"\n\n{footer}"
    return printable(manifest.input.describe()) + separator + body + "".join(
        f"{separator}warning: {printable(w)}" for w in manifest.source.get("warnings", []))


def quantisation(t: TensorInfo) -> str:
    """A tensor's quantisation in a few words ("-" for none)."""
    q = t.quantization
    if q is None:
        return "-"
    if q.per_channel:
        return f"per-channel ({len(q.scale)} scales, axis {q.axis})"
    return f"scale {q.scale[0]:.6g}, zero point {q.zero_point[0]}"
