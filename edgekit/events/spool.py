"""A destination's bounded spool on disk (``--events URL?spool=DIR&spool_max=SIZE``): the
events that do not fit its memory queue while it is down, one file each, delivered oldest
first when it is back, and kept across runs (a restarted service delivers them). What would
take the folder over its bound is not written (the outbox counts it as dropped). Files are
written under a hidden temporary name and renamed, so a file the spool reads is whole."""
from __future__ import annotations

import base64
import json
import os
from dataclasses import fields
from pathlib import Path

from edgekit.errors import UsageError
from edgekit.events.rules import Event

SPOOL_MAX = 50 << 20  # bytes, when the URL does not say (?spool_max=)
SUFFIX = ".event.json"
FIRST = 10 ** 11  # the first file's number in an empty spool (12 digits, sorted as text)
_FIELDS = {f.name for f in fields(Event)} - {"image", "_jpeg", "captured_ns"}


class Spool:
    """Event files ``NNNNNNNNNNNN.event.json`` in a folder, oldest (lowest number) first."""

    def __init__(self, folder: str | Path, max_bytes: int = SPOOL_MAX) -> None:
        self.folder, self.max_bytes = Path(folder), max_bytes
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            probe = self.folder / ".edgekit-write-test"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise UsageError(f"events ?spool={folder}: cannot write there "
                             f"({exc.strerror or exc}); name a folder this user can write",
                             param="events") from None
        self._files = sorted(self.folder.glob(f"*{SUFFIX}"))  # a former run's, oldest first
        self.bytes = sum(p.stat().st_size for p in self._files)
        # numbers from the middle of the range: a run's end puts the events it was still
        # trying before the ones already here (``front``), so they keep their order
        self._next = int(self._files[-1].name.split(".")[0]) + 1 if self._files else FIRST

    def __len__(self) -> int:
        return len(self._files)

    def push(self, event: Event, front: bool = False) -> bool:
        """Write the event (its snapshot with it), after the others or (``front``) before
        them; False when the bound does not allow it or the disk refuses it."""
        record = {name: getattr(event, name) for name in _FIELDS}
        jpeg = event.snapshot() if event.type == "new" else None
        if jpeg:
            record["jpeg"] = base64.b64encode(jpeg).decode()
        data = json.dumps(record).encode()
        if self.bytes + len(data) > self.max_bytes:
            return False
        number = int(self._files[0].name.split(".")[0]) - 1 if front and self._files \
            else self._next
        path = self.folder / f"{number:012d}{SUFFIX}"
        partial = self.folder / f".{path.name}.partial"
        try:
            partial.write_bytes(data)
            os.replace(partial, path)
        except OSError:
            partial.unlink(missing_ok=True)
            return False
        if front and self._files:
            self._files.insert(0, path)
        else:
            self._next += 1
            self._files.append(path)
        self.bytes += len(data)
        return True

    def oldest(self) -> tuple[Path, Event] | None:
        """The oldest event on disk (left there until ``remove``); an unreadable file is
        skipped and removed."""
        while self._files:
            path = self._files[0]
            try:
                record = json.loads(path.read_bytes())
                jpeg = base64.b64decode(record.pop("jpeg")) if "jpeg" in record else None
                event = Event(**{k: v for k, v in record.items() if k in _FIELDS})
                event.box = tuple(event.box)
                event._jpeg = jpeg
                return path, event
            except (OSError, ValueError, TypeError):
                self.remove(path)
        return None

    def remove(self, path: Path) -> None:
        if path in self._files:
            self._files.remove(path)
        try:
            self.bytes -= path.stat().st_size
            path.unlink()
        except OSError:
            pass
        self.bytes = max(0, self.bytes)
