"""Run a child process that answers with one JSON line, and read that answer.

Bench's workers, convert's TFLite runtime checks and deploy's device agent all answer on
stdout with a JSON line (after whatever else a runtime printed); this is the one reader.
The device agent itself (stdlib-only, sent to the device) keeps its own copy.
"""
from __future__ import annotations

import json
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


def last_json(text: str | bytes) -> Any | None:
    """The last line of ``text`` that is a JSON object or array (None when there is none)."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line[:1] in ("{", "["):
            try:
                return json.loads(line)
            except ValueError:
                continue
    return None


@dataclass
class Answer:
    """What a child said: its JSON answer (None when it gave none) and how it ended."""

    value: Any | None
    returncode: int
    stderr: str
    timeout: float | None = None  # set when it was stopped after that many seconds

    @property
    def ok(self) -> bool:
        return self.value is not None

    def why(self) -> str:
        """Why there is no answer, in a few words: "exit 1: <its last stderr line>"."""
        if self.timeout is not None:
            return f"no answer in {self.timeout:g} s (hung?)"
        tail = (self.stderr.strip().splitlines() or ["no output"])[-1][:300]
        how = f"signal {-self.returncode}" if self.returncode < 0 else f"exit {self.returncode}"
        return f"{how}: {tail}"


def run_json(argv: Sequence[str], timeout: float, env: Mapping[str, str] | None = None,
             stdin: bytes | None = None) -> Answer:
    """Run ``argv`` and read its last JSON line. Never raises for the child's failure (no
    answer, a crash, the timeout: see ``Answer.why``); OSError when it cannot be started."""
    try:
        done = subprocess.run(list(argv), input=stdin, capture_output=True, timeout=timeout,
                              env=None if env is None else dict(env), check=False)
    except subprocess.TimeoutExpired as exc:
        return Answer(None, -9, _text(exc.stderr), timeout=timeout)
    return Answer(last_json(done.stdout), done.returncode, _text(done.stderr))


def _text(data: bytes | str | None) -> str:
    if data is None:
        return ""
    return data.decode("utf-8", "replace") if isinstance(data, bytes) else data
