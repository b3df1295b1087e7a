"""What a release ships to a target, worked out on the workstation before anything is sent.

Only the artifacts the target runs (its profile's formats that the bundle has built), the
manifest rewritten to list only those, the validation set, edgekit's wheel and, with
``--offline``, the runtime's wheels. Every file is hashed here; the device checks the same
hashes. The Python environment the device needs is keyed by a hash of what goes into it.
"""
from __future__ import annotations

import hashlib
import socket
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from edgekit.bundle.formats import runs
from edgekit.bundle.integrity import check_artifact, sha256_file
from edgekit.bundle.manifest import (
    VALIDATION_NAME,
    Artifact,
    Manifest,
    bundle_folder,
    read_manifest,
    write_manifest,
)
from edgekit.deploy import checks
from edgekit.deploy.agent.imx500_device import is_sensor
from edgekit.deploy.targets import Target
from edgekit.deploy.wheels import WheelInfo, merge_requirements
from edgekit.errors import UsageError
from edgekit.helpers.files import refuse_special


@dataclass(frozen=True)
class ShippedFile:
    """One file of a release: where it goes inside the release, its bytes' hash and size."""

    path: str  # "bundle/lenet5_digits_int8.tflite", "wheels/edgekit-0.1.0-py3-none-any.whl"
    local: Path
    sha256: str
    size: int

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "sha256": self.sha256, "size": self.size}


@dataclass
class ReleasePlan:
    """Everything one deploy sends, and what the device does with it."""

    bundle: Path
    model: str  # the bundle's model name
    target: Target
    formats: list[str]  # shipped, in the profile's order
    missing_formats: dict[str, str]  # profile formats the bundle lacks, and why
    files: list[ShippedFile]
    requirements: list[str]  # pip requirements of the device's environment
    edgekit: WheelInfo
    wheel: ShippedFile
    offline: bool
    backend: str  # what the smoke test and the service run
    device: str
    notes: list[str] = field(default_factory=list)
    run_args: list[str] = field(default_factory=list)  # more `edgekit run` options: events
    imx500: str = ""  # the AI Camera's packerOut.zip in the release, made into an .rpk there

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)

    def content_hash(self) -> str:
        """A hash of what the release holds (files, target, environment)."""
        lines = [f"{f.path} {f.sha256}" for f in self.files]
        lines += [f"target {self.target.name}", *self.requirements]
        return hashlib.sha256("\n".join(lines).encode()).hexdigest()

    def venv_inputs(self) -> dict[str, Any]:
        """What the device's environment is made from, besides the device's Python."""
        return {"requirements": self.requirements,
                "extra_index_urls": list(self.target.extra_index_urls),
                "system_site_packages": self.target.system_site_packages,
                "edgekit": self.wheel.sha256}

    def venv_key(self, python: str, version: tuple[int, ...]) -> str:
        """The device environment's name: the same inputs give the same environment."""
        return checks.venv_key(python, version, self.venv_inputs())

    def venv_payload(self) -> dict[str, Any]:
        """The agent's ``venv`` arguments, besides the release and the environment's key."""
        return {"requirements": self.requirements, "wheel": self.wheel.path,
                "offline": self.offline,
                "system_site_packages": self.target.system_site_packages,
                "pip_options": [a for url in self.target.extra_index_urls
                                for a in ("--extra-index-url", url)]}

    def smoke_payload(self) -> dict[str, Any]:
        """The agent's ``smoke`` arguments, besides the release and the samples."""
        return {"backend": self.backend, "device": self.device,
                "environment": self.target.environment,
                "allow_empty": not (self.bundle / VALIDATION_NAME).is_file()}

    def meta(self) -> dict[str, Any]:
        """What release.json records beside the files."""
        return {"target": self.target.name, "bundle": self.model, "formats": self.formats,
                "edgekit": self.edgekit.version, "requirements": self.requirements,
                "offline": self.offline, "backend": self.backend,
                "deployed_from": socket.gethostname()}


def shipped_formats(manifest: Manifest, target: Target) -> tuple[list[str], dict[str, str]]:
    """The target's formats that the bundle has built, and why the others are missing."""
    built = {a.format: a for a in manifest.artifacts}
    ship = [f for f in target.formats if f in built and built[f].ok]
    missing = {f: (built[f].reason or built[f].status) if f in built else "not converted"
               for f in target.formats if f not in ship}
    if not ship:
        have = ", ".join(a.format for a in manifest.artifacts if a.ok) or "none"
        why = "; ".join(f"{f}: {r}" for f, r in missing.items())
        raise UsageError(f"the bundle has nothing target {target.name} runs: it takes "
                         f"{', '.join(target.formats)}, the bundle has {have} ({why}). Convert "
                         f"again with `formats` {','.join(target.formats)}")
    if is_sensor(target.camera) and "imx500" not in ship:
        raise UsageError(f"target {target.name}'s camera {target.camera} runs the bundle's "
                         "imx500 artifact in the sensor, and the bundle has none that ships "
                         f"({missing.get('imx500', 'not in the target formats')}): convert "
                         "again with `formats` imx500 (make setup-imx500 first)")
    return ship, missing


def choose_backend(target: Target, formats: list[str], missing: dict[str, str] | None = None
                   ) -> tuple[str, str, list[str]]:
    """(backend, device, notes): the target's default, else its fallback for what ships.
    ``missing``: why the target's other formats do not ship (``shipped_formats``)."""
    if any(runs(target.backend, f) for f in formats):
        return target.backend, target.device, []
    if target.fallback_backend and any(runs(target.fallback_backend, f) for f in formats):
        note = (f"nothing in this bundle runs on {target.backend} (it ships "
                f"{', '.join(formats)}): the smoke test and the service use "
                f"{target.fallback_backend}")
        return target.fallback_backend, "", [note]
    if is_sensor(target.camera):  # the sensor runs imx500; the smoke test needs a CPU artifact
        cpu = [f for f in target.formats if runs(target.backend, f)]
        why = "; ".join(f"{f}: {(missing or {}).get(f, 'not converted')}" for f in cpu)
        raise UsageError(f"target {target.name}'s smoke test checks the model with "
                         f"{target.backend} on the device's CPU before the switch (no CPU "
                         f"runtime runs the sensor's imx500 artifact), and the bundle has no "
                         f"{' or '.join(cpu)} ({why}): convert again with `formats` "
                         f"{','.join(target.formats)}")
    raise UsageError(f"target {target.name}'s backend {target.backend} runs none of "
                     f"{', '.join(formats)}, and it names no fallback_backend that does")


def _bundle_files(bundle: Path, artifact: Artifact) -> list[ShippedFile]:
    check_artifact(bundle, artifact)  # a changed or missing file is never shipped
    return [ShippedFile(f"bundle/{name}", bundle / name, r.sha256, r.size)
            for name, r in artifact.files.items()]


def _file(path: Path, inside: str) -> ShippedFile:
    return ShippedFile(f"{inside}/{path.name}", path, sha256_file(path), path.stat().st_size)


def plan_release(bundle: Path | Manifest, target: Target, wheel: ShippedFile,
                 edgekit: WheelInfo, staging: Path, offline: bool = False,
                 offline_wheels: tuple[Path, ...] = ()) -> ReleasePlan:
    """Choose, check and hash what goes to ``target``; the shipped manifest is written to
    ``staging`` (a folder the caller owns). ``offline_wheels`` ship in wheels/. ``bundle`` may
    be a bundle already opened (``read_manifest``): it is not read again."""
    manifest = bundle if isinstance(bundle, Manifest) else read_manifest(bundle)
    bundle = bundle_folder(manifest)
    formats, missing = shipped_formats(manifest, target)
    backend, device, notes = choose_backend(target, formats, missing)
    files: list[ShippedFile] = []
    for artifact in manifest.artifacts:
        if artifact.format in formats:
            files += _bundle_files(bundle, artifact)
    sensor = next((f"bundle/{a.file}" for a in manifest.artifacts
                   if a.format == "imx500" and a.format in formats), "")
    shipped = replace(manifest, artifacts=[a for a in manifest.artifacts if a.format in formats])
    files.insert(0, _file(write_manifest(shipped, staging), "bundle"))
    anchors = manifest.decoder.get("anchors")
    if anchors and Path(str(anchors)).name == anchors and (bundle / anchors).is_file():
        files.append(_file(bundle / str(anchors), "bundle"))
    refuse_special(bundle / VALIDATION_NAME, "the bundle's validation set")  # not "none"
    if (bundle / VALIDATION_NAME).is_file():
        files.append(_file(bundle / VALIDATION_NAME, "bundle"))
    else:
        notes.append(f"the bundle has no {VALIDATION_NAME}: the smoke test runs one inference "
                     "on zeros instead of validation samples")
    files.append(wheel)
    files += [_file(path, "wheels") for path in offline_wheels]
    names = [f.path for f in files]
    if len(set(names)) != len(names):
        raise UsageError("two shipped files have the same name: " + ", ".join(
            sorted({n for n in names if names.count(n) > 1})))
    from edgekit.events.service import run_args, service_options

    return ReleasePlan(bundle, manifest.name, target, formats, missing, files,
                       merge_requirements(edgekit.requires, target), edgekit, wheel,
                       offline, backend, device, notes,
                       run_args(service_options(target.service, target.path or Path())),
                       imx500=sensor)
