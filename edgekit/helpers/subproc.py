"""Run a child process that answers with one JSON line, and read that answer.

Bench's workers, convert's TFLite runtime checks and deploy's device agent all answer on
stdout with a JSON line (after whatever else a runtime printed); this is the one reader.
The device agent itself (stdlib-only, sent to the device) keeps its own copy.
"""
from __future__ import annotations

import json
import signal
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

    @property
    def died_of(self) -> int | None:
        """The signal the child died of (None: it exited, or was stopped at the timeout)."""
        return -self.returncode if self.returncode < 0 and self.timeout is None else None

    def why(self) -> str:
        """Why there is no answer, in a few words: "exit 1: <its last stderr line>", or
        "crashed (signal 11, SIGSEGV)" for a child that died of a signal."""
        if self.timeout is not None:
            return f"no answer in {self.timeout:g} s (hung?)"
        lines = self.stderr.strip().splitlines()
        if self.died_of is not None:
            died = killed_by(self.died_of)
            return f"{died}; its last line on stderr: {lines[-1][:300]}" if lines else died
        return f"exit {self.returncode}: {(lines or ['no output'])[-1][:300]}"


CRASHES = {signal.SIGSEGV, signal.SIGBUS, signal.SIGILL, signal.SIGFPE, signal.SIGABRT}


def killed_by(signum: int) -> str:
    """How a process that died of ``signum`` ended, in words: "crashed (signal 11, SIGSEGV)",
    "was killed (signal 9, SIGKILL: ...)"."""
    try:
        name = signal.Signals(signum).name
    except ValueError:
        name = "unknown"
    if signum in CRASHES:
        return f"crashed (signal {signum}, {name})"
    if signum == signal.SIGKILL:
        return (f"was killed (signal {signum}, {name}: by a person, or by the kernel when "
                "memory ran out)")
    return f"was stopped (signal {signum}, {name})"


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
