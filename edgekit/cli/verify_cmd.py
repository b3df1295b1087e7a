"""``edgekit verify``: a bundle checked where it lies."""
from __future__ import annotations

import json
from pathlib import Path

import click

from edgekit.cli import options
from edgekit.cli.app import cli, debug_option
from edgekit.errors import EdgekitError


@cli.command()
@click.argument("bundle", type=click.Path(path_type=Path))
@options.backend
@options.infer(("device", "threads"))
@options.fmt
@options.samples
@click.option("--allow-empty", is_flag=True,
              help="Pass a bundle without validation samples after one inference on zeros "
                   "(without it there is nothing to compare, and verify exits 1).")
@options.json_output
@options.quiet
@debug_option
def verify(bundle: Path, backend: str | None, device: str | None, threads: int | None,
           fmt: str | None, samples: int, allow_empty: bool, view: str, quiet: bool) -> None:
    """Check a bundle where it lies: file hashes, then a few validation samples.

    \b
    Every artifact file is checked against the sha256 and size in the
    manifest; if all match, SAMPLES samples of the bundle's validation set run
    through the backend and are compared with the Keras model's outputs
    (top-1 agreement for class-score outputs, and accuracy when labels are
    known). Exit code 1 when a file does not match, when an output holds NaN
    or inf, or when the bundle has no validation samples to compare (unless
    --allow-empty). edgekit deploy runs this on the device as its smoke test.

    \b
    Example:
      edgekit verify ~/edgekit/current/bundle --backend tflite --samples 20
    """
    from edgekit.bundle.verify import summary, verify_bundle

    report = verify_bundle(bundle, backend=backend, device=device, fmt=fmt, samples=samples,
                           threads=threads)
    click.echo(json.dumps(report.to_dict(), indent=2) if view == "json" else summary(report))
    problem = report.problem()
    if problem:
        raise EdgekitError(problem)
    if not report.validation and not allow_empty:
        raise EdgekitError(f"nothing to compare: {bundle} has no validation samples (convert "
                           "with --val to keep some); pass --allow-empty to accept a check "
                           "that the artifact only runs")
