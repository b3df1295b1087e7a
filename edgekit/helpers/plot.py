"""Figures as PNG (or SVG, PDF): latency distributions, and the loop comparison with FPS and
mAP beside them. matplotlib is an optional extra; figures are written aside and renamed into
place like every other output."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edgekit.errors import BackendUnavailable
from edgekit.helpers.output_files import PendingFile

SUFFIXES = (".png", ".svg", ".pdf")


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise BackendUnavailable("plots need matplotlib",
                                 "pip install 'edgekit[plot]' (or matplotlib)") from None
    return plt


def _log_axis(axis: Any) -> None:
    """A log scale whose ticks read as plain numbers (0.02, 0.05, 0.1, 0.2 ...), not 10^-1."""
    from matplotlib.axis import XAxis
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    # The Axes sets the scale (an Axis has no public setter); the ticks come after it, since
    # setting a scale resets them.
    (axis.axes.set_xscale if isinstance(axis, XAxis) else axis.axes.set_yscale)("log")
    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_locator(LogLocator(base=10, subs=tuple(range(2, 10))))
    axis.set_minor_formatter(NullFormatter())


def _footer(fig: Any, notes: Sequence[str]) -> float:
    """The rows that did not run, listed under the plot; returns the room they need (0..1)."""
    if not notes:
        return 0.0
    shown = list(notes[:8]) + ([f"... and {len(notes) - 8} more"] if len(notes) > 8 else [])
    text = "\n".join(n if len(n) <= 150 else n[:147] + "..." for n in shown)
    fig.text(0.01, 0.01, text, fontsize=7, va="bottom", ha="left", family="monospace",
             color="#444444")
    return min(0.5, (len(shown) + 1) * 0.14 / fig.get_size_inches()[1])


def distributions(series: dict[str, list[float]], title: str, xlabel: str, path: Path,
                  notes: Sequence[str] = ()) -> Path:
    """One horizontal box per named series (whiskers p1-p99, log scale); ``notes`` (rows that
    did not run, and why) are listed under it. Written atomically."""
    plt = _pyplot()
    named = {k: v for k, v in series.items() if v}
    if not named:
        raise BackendUnavailable("nothing ran, so there is nothing to plot")
    height = 0.45 * len(named) + 1.6 + 0.14 * min(len(notes), 9)
    fig, ax = plt.subplots(figsize=(10, height))
    ax.boxplot(list(named.values()), vert=False, whis=(1, 99), showfliers=True,
               flierprops={"markersize": 2})
    ax.set_yticks(range(1, len(named) + 1), list(named))
    _log_axis(ax.xaxis)
    ax.grid(axis="x", which="major", alpha=0.3)
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    ax.invert_yaxis()
    fig.tight_layout(rect=(0, _footer(fig, notes), 1, 1))
    return _save(fig, path, plt)


def comparison(rows: dict[str, dict[str, Any]], title: str, path: Path,
               notes: Sequence[str] = ()) -> Path:
    """The loop comparison: per row (a backend) its end-to-end latency distribution, its FPS
    and its mAP, side by side on one line each. ``rows``: name -> {"latency_ms": [...],
    "fps": float, "map": float | None}."""
    plt = _pyplot()
    names = [name for name, row in rows.items() if row.get("latency_ms")]
    if not names:
        raise BackendUnavailable("nothing ran, so there is nothing to plot")
    height = 0.5 * len(names) + 1.8 + 0.14 * min(len(notes), 9)
    fig, (lat, fps, maps) = plt.subplots(
        1, 3, figsize=(12, height), sharey=True, gridspec_kw={"width_ratios": (3, 1.2, 1.2)})
    positions = list(range(1, len(names) + 1))
    lat.boxplot([rows[n]["latency_ms"] for n in names], vert=False, whis=(1, 99),
                showfliers=True, flierprops={"markersize": 2})
    lat.set_yticks(positions, names)
    _log_axis(lat.xaxis)
    lat.grid(axis="x", which="major", alpha=0.3)
    lat.set_xlabel("end to end, capture to result, ms\n(box: p25-p75, whiskers: p1-p99)")
    for axis, key, label, fmt in ((fps, "fps", "frames per second", "{:.0f}"),
                                  (maps, "map", "mAP@0.5", "{:.3f}")):
        values = [rows[n].get(key) for n in names]
        bars = axis.barh(positions, [v or 0 for v in values], color="#4c72b0")
        for bar, value in zip(bars, values):
            axis.text(bar.get_width(), bar.get_y() + bar.get_height() / 2,
                      " -" if value is None else " " + fmt.format(value), va="center",
                      fontsize=8)
        axis.set_xlabel(label)
        axis.set_xlim(0, max([v or 0 for v in values] + [1e-9]) * 1.3)
        axis.grid(axis="x", alpha=0.3)
    lat.invert_yaxis()
    fig.suptitle(title)
    fig.tight_layout(rect=(0, _footer(fig, notes), 1, 1))
    return _save(fig, path, plt)


def _save(fig: Any, path: Path, plt: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pending = PendingFile(path, "plot")
    try:
        fig.savefig(pending.tmp, dpi=110)
    except OSError as exc:
        raise pending.failure(exc) from None
    except BaseException:
        pending.discard()
        raise
    finally:
        plt.close(fig)
    pending.commit()
    return path
