"""``edgekit targets`` and ``edgekit verify``."""
from __future__ import annotations

import json
from pathlib import Path

import click

from edgekit.cli.app import cli, debug_option
from edgekit.errors import EdgekitError, UsageError


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print every profile in full as JSON.")
@debug_option
def targets(as_json: bool) -> None:
    """List the device profiles that edgekit deploy --target takes.

    \b
    Built-in profiles live in the repository's targets/ folder (inside the
    package once installed); your own go in ~/.config/edgekit/targets/NAME.toml
    (a file there replaces a built-in one of the same name), or pass a file
    directly: edgekit deploy ... --target ./my-device.toml
    """
    from edgekit.render import table
    from edgekit.targets import list_targets, user_dir

    found = list_targets()
    if as_json:
        click.echo(json.dumps([t.to_dict() for t in found], indent=2))
        return
    rows = [[t.name, t.description, t.arch, f"{t.python}", t.tflite_runtime.split(" (")[0],
             ", ".join(t.formats), t.backend + (f" ({t.device})" if t.device else ""),
             "" if t.origin == "built-in" else t.origin] for t in found]
    click.echo(table(["target", "device", "arch", "python", "tflite runtime", "formats",
                      "backend", "from"], rows))
    click.echo(f"\nyour own profiles: {user_dir()}/NAME.toml; details: edgekit targets --json")


@cli.command()
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option("--backend", help="Backend to run the samples on (default: tflite).")
@click.option("--device", help="The backend's device (CPU, MYRIAD, usb, pci:0, ...).")
@click.option("--format", "fmt", help="Which artifact to run (default: the best one for the "
              "backend).")
@click.option("--samples", default=10, show_default=True,
              help="Validation samples to run (0: all).")
@click.option("--threads", type=int, help="CPU threads for the runtime.")
@click.option("--json", "as_json", is_flag=True, help="Print the findings as JSON.")
@debug_option
def verify(bundle: Path, backend: str | None, device: str | None, fmt: str | None,
           samples: int, threads: int | None, as_json: bool) -> None:
    """Check a bundle where it lies: file hashes, then a few validation samples.

    \b
    Every artifact file is checked against the sha256 and size in the
    manifest; if all match, SAMPLES samples of the bundle's validation set run
    through the backend and are compared with the Keras model's outputs
    (top-1 agreement for classification, and accuracy when labels are known).
    Exit code 1 when a file does not match. edgekit deploy runs this on the
    device as its smoke test.

    \b
    Example:
      edgekit verify ~/edgekit/current/bundle --backend tflite --samples 20
    """
    from edgekit.verify import summary, verify_bundle

    if samples < 0:
        raise UsageError("--samples takes 0 (all) or more")
    report = verify_bundle(bundle, backend=backend, device=device, fmt=fmt, samples=samples,
                           threads=threads)
    click.echo(json.dumps(report.to_dict(), indent=2) if as_json else summary(report))
    if not report.files_ok:
        bad = [f.name for f in report.files if not f.ok]
        raise EdgekitError(f"{len(bad)} artifact file(s) of {bundle} do not match the manifest "
                           f"({', '.join(bad)}): copy the bundle again")
