"""Where a conversion writes: the ``-o`` folder checked before anything is read, room to write
checked when a format fails, a failed artifact's files dropped, and the finished bundle moved
into place (an older bundle there replaced only if it is still the one found at the start)."""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from edgekit.bundle.manifest import Artifact, is_bundle
from edgekit.errors import UsageError, WriteFailed
from edgekit.helpers import interrupt
from edgekit.helpers.output_files import (
    Identity,
    cause,
    check_unchanged,
    refuse_bundle_file,
    write_probe,
)


def check_output(output: Path, force: bool) -> None:
    refuse_bundle_file("-o", output)  # a bundle inside another would change that one
    if not output.exists():
        if not output.parent.exists():
            raise UsageError(f"cannot write {output}: {output.parent} does not exist")
        return
    if not force:
        raise UsageError(f"{output} already exists; pass `force` to replace it, or choose "
                         "another folder with -o")
    if not output.is_dir() or (any(output.iterdir()) and not is_bundle(output)):
        raise UsageError(f"{output} exists and is not an edgekit bundle; refusing to replace it "
                         "even with `force`")


def check_room(folder: Path, output: Path) -> None:
    """WriteFailed when ``folder`` cannot be written now (a full disk, a read-only mount):
    a format that failed for that reason must stop the conversion, not be reported failed."""
    problem = write_probe(folder)
    if problem is not None:
        raise WriteFailed(f"-o {output}: writing the bundle failed: {cause(problem)}; nothing "
                          "was written there" + (" (the earlier bundle is kept)"
                                                 if output.exists() else ""))


def drop_files(artifact: Artifact, folder: Path) -> None:
    """A failed artifact leaves the bundle; its record (and figures) stays in the manifest."""
    for name in artifact.files:
        (folder / name).unlink(missing_ok=True)
    artifact.file, artifact.files, artifact.size = "", {}, 0


def move_into_place(tmp: Path, output: Path, before: Identity) -> None:
    """Move the finished bundle into place; an older bundle there is replaced only now, and
    only if it is still the one that was there at the start (``before``: None when nothing
    was), untouched: WriteFailed otherwise, and what is there stays.

    Ctrl-C waits for the two renames: never the old bundle moved aside and the new one not in.
    """
    with interrupt.deferred():
        check_unchanged(output, "-o", before)
        _swap_in(tmp, output)


def _swap_in(tmp: Path, output: Path) -> None:
    if output.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{output.name}.old-", dir=output.parent))
        output.rename(old / output.name)
        tmp.rename(output)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(output)
