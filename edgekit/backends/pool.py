"""Several requests in flight on a runtime with no asynchronous API of its own.

A ``RequestPool`` holds one runtime instance per request (a TFLite interpreter, an ONNX
Runtime session), each driven by its own thread: request k goes to instance k mod N, so
results come back in the order started when they are collected in that order. The
runtimes release the GIL while they compute, so the instances run at the same time. The first
instance is also the one ``infer`` runs on: its runs take the backend's lock (``shared``).
"""
from __future__ import annotations

import functools
import queue
import threading
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from edgekit.backends.base import Pending
from edgekit.errors import InferenceError

Runner = Callable[[list[np.ndarray]], list[np.ndarray]]


class RequestPool:
    """``run_on(runtimes[i], inputs)`` runs request i's inferences on its own thread;
    ``submit`` hands one on. ``shared``: the lock the backend's ``infer`` holds on
    ``runtimes[0]``, which request 0 then holds too."""

    def __init__(self, run_on: Callable[[Any, list[np.ndarray]], list[np.ndarray]],
                 runtimes: Sequence[Any], name: str,
                 shared: threading.Lock | None = None) -> None:
        runners: list[Runner] = [functools.partial(run_on, runtime) for runtime in runtimes]
        if shared is not None:
            runners[0] = _holding(shared, runners[0])
        self._inboxes: list[queue.SimpleQueue] = [queue.SimpleQueue() for _ in runners]
        self._threads = [threading.Thread(target=self._work, args=(run, inbox), daemon=True,
                                          name=f"edgekit-{name}-request-{i}")
                         for i, (run, inbox) in enumerate(zip(runners, self._inboxes))]
        self._next = 0
        for thread in self._threads:
            thread.start()

    def submit(self, ready: list[np.ndarray], pending: Pending) -> None:
        """Queue ``ready`` (copied: the caller may reuse its arrays) on the next instance."""
        inbox = self._inboxes[self._next]
        self._next = (self._next + 1) % len(self._inboxes)
        inbox.put(([np.array(x, copy=True) for x in ready], pending.waiting()))

    @staticmethod
    def _work(run: Runner, inbox: queue.SimpleQueue) -> None:
        while True:
            job = inbox.get()
            if job is None:
                return
            ready, pending = job
            try:
                pending.complete(run(ready))
            except InferenceError as exc:
                pending.fail(exc)
            except Exception as exc:  # a runtime's own failure still ends the wait
                pending.fail(InferenceError(f"inference failed: {type(exc).__name__}: {exc}"))

    def close(self) -> None:
        """Let queued requests finish, then end the threads."""
        for inbox in self._inboxes:
            inbox.put(None)
        for thread in self._threads:
            thread.join(timeout=10)


def _holding(lock: threading.Lock, run: Runner) -> Runner:
    """``run`` with ``lock`` held."""
    def locked(ready: list[np.ndarray]) -> list[np.ndarray]:
        with lock:
            return run(ready)
    return locked
