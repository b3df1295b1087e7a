"""``edgekit demo``: the whole path on the bundled example models."""
from __future__ import annotations

from pathlib import Path

from edgekit.convert import Progress, convert
from edgekit.errors import UsageError
from edgekit.manifest import Manifest

MODELS_DIR = Path(__file__).resolve().parent.parent / "models"


def example_model(name: str) -> Path:
    """Path of a bundled example's .keras file in the repository checkout."""
    path = MODELS_DIR / name / f"{name}.keras"
    if not path.is_file():
        raise UsageError(
            f"the bundled example {name} is not here ({path}); the examples live in the "
            "edgekit repository's models/ folder: run the demo from a checkout"
        )
    return path


def run_demo(out_dir: Path, progress: Progress) -> tuple[Manifest, Path]:
    """Convert LeNet-5 to every format into ``out_dir``; return its manifest and bundle path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    bundle = out_dir / "lenet5_digits"
    manifest = convert(example_model("lenet5_digits"), bundle, force=True, progress=progress)
    return manifest, bundle
