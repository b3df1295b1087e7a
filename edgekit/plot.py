"""Latency distributions as PNG box plots (matplotlib is an optional extra)."""
from __future__ import annotations

from pathlib import Path

from edgekit.errors import BackendUnavailable
from edgekit.outputs import PendingFile

SUFFIXES = (".png", ".svg", ".pdf")


def distributions(series: dict[str, list[float]], title: str, xlabel: str, path: Path) -> Path:
    """One horizontal box per named series (whiskers p1-p99, log scale), written atomically."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise BackendUnavailable("plots need matplotlib",
                                 "pip install 'edgekit[plot]' (or matplotlib)") from None
    named = {k: v for k, v in series.items() if v}
    if not named:
        raise BackendUnavailable("nothing ran, so there is nothing to plot")
    fig, ax = plt.subplots(figsize=(9, 0.5 * len(named) + 1.5))
    ax.boxplot(list(named.values()), vert=False, whis=(1, 99), showfliers=True,
               flierprops={"markersize": 2})
    ax.set_yticks(range(1, len(named) + 1), list(named))
    ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    ax.invert_yaxis()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    pending = PendingFile(path, "plot")
    try:
        fig.savefig(pending.tmp, dpi=110)
    except OSError as exc:
        raise pending.failure(exc) from None
    finally:
        plt.close(fig)
    pending.commit()
    return path
