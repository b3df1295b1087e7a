"""A destination behind a bounded queue, delivered from its own thread: the loop only puts an
event in the queue (never waits), a destination that is down holds events until it comes back,
and what the full queue had to let go is counted as dropped.

A destination raises ``Retry`` when it cannot deliver now (a broker or endpoint down: the same
event is tried again after a back-off) and ``Undeliverable`` when it never will (an event the
endpoint refuses): that one is dropped. Each problem is said once, on stderr, and once more
when delivery works again."""
from __future__ import annotations

import collections
import sys
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

from edgekit.events.rules import Event

QUEUE = 1000  # events held per destination while it is down
BACKOFF_S = (0.25, 0.5, 1.0, 2.0, 4.0)  # between tries of the same event
FLUSH_S = 5.0  # at the end of a run, how long the queue may take to empty


class Retry(Exception):
    """Not delivered now; try the same event again later."""


class Undeliverable(Exception):
    """Never deliverable (refused by the endpoint): drop it."""


class Destination(ABC):
    """Where events go: ``deliver`` one at a time, from the outbox's thread."""

    name: str = ""  # how it is shown: the URL without credentials
    spool: tuple[str, int] | None = None  # ?spool=DIR&spool_max=BYTES: (folder, bound)

    def start(self) -> None:
        """Connect (without waiting for it: a broker that is down must not hold the loop)."""

    @abstractmethod
    def deliver(self, event: Event) -> None:
        """Deliver one event, or raise Retry / Undeliverable."""

    def describe(self, labels: list[str], bundle: str) -> None:
        """The model's classes and bundle, for a destination that announces them (Home
        Assistant discovery); before ``start``."""

    def close(self) -> None:
        """Disconnect; safe to call twice."""


class Outbox:
    """One destination's bounded queue and its delivering thread, with the counters."""

    def __init__(self, destination: Destination, size: int = QUEUE,
                 say: Callable[[str], None] | None = None,
                 on_delivered: Callable[[Event], None] | None = None) -> None:
        self.destination = destination
        self.size = size
        self.spool: Any = None  # with ?spool=DIR: what does not fit the queue (spool.Spool)
        if destination.spool is not None:
            from edgekit.events.spool import Spool

            self.spool = Spool(*destination.spool)
        self._spill: collections.deque[Event] = collections.deque()  # for the spool, in order
        self._spooling = self.spool is not None and len(self.spool) > 0
        self._unsent: list[Event] = []  # the event being tried when the run ended
        self.say = say or (lambda line: print(line, file=sys.stderr, flush=True))
        self.on_delivered = on_delivered
        self.delivered = 0
        self.dropped = 0
        self.failures = 0  # tries that did not deliver
        self.last_error = ""
        self._queue: collections.deque[Event] = collections.deque()
        self._cond = threading.Condition()
        self._closing = False
        self._deadline = 0.0
        self._down = False
        self._thread = threading.Thread(target=self._work, daemon=True,
                                        name=f"edgekit-events-{destination.name[:20]}")

    def start(self) -> None:
        self.destination.start()
        self._thread.start()

    def put(self, event: Event) -> None:
        """Queue an event; never blocks. A full queue lets its oldest event go (counted), or,
        with a spool, the event goes to the spool (written by the outbox's thread), as does
        every later one until the spool is empty again: oldest first, always."""
        with self._cond:
            if self.spool is not None and (self._spooling or len(self._queue) >= self.size):
                self._spooling = True
                if len(self._spill) >= self.size:  # the disk does not keep up: as over the bound
                    self.dropped += 1
                else:
                    self._spill.append(event)
            else:
                if len(self._queue) >= self.size:
                    self._queue.popleft()
                    self.dropped += 1
                self._queue.append(event)
            self._cond.notify()

    @property
    def queued(self) -> int:
        """Events waiting, in memory and in the spool (not the one being tried)."""
        return len(self._queue) + len(self._spill) + (len(self.spool) if self.spool else 0)

    def counters(self) -> dict[str, Any]:
        row = {"destination": self.destination.name, "delivered": self.delivered,
               "dropped": self.dropped, "queued": self.queued, "failures": self.failures,
               "last_error": self.last_error}
        if self.spool is not None:
            row["spooled"] = len(self.spool)
        return row

    def close(self, flush_s: float = FLUSH_S) -> None:
        """Deliver what is queued for up to ``flush_s`` seconds; what is left is dropped, or
        with a spool kept there, in order, for the next run."""
        with self._cond:
            self._closing = True
            self._deadline = time.monotonic() + flush_s
            self._cond.notify()
        if self._thread.is_alive():
            self._thread.join(flush_s + 2)
        with self._cond:
            front = self._unsent + list(self._queue)  # older than the spool's files
            back = list(self._spill)
            self._unsent, self._spill = [], collections.deque()
            self._queue.clear()
        if self.spool is None:
            self.dropped += len(front) + len(back)
        else:  # the spool keeps them, in order, for the next run
            self.dropped += sum(not self.spool.push(e, front=True) for e in reversed(front))
            self.dropped += sum(not self.spool.push(e) for e in back)
        self.destination.close()

    def _work(self) -> None:
        while True:
            with self._cond:
                while not (self._queue or self._spooling) and not self._closing:
                    self._cond.wait()
                event = self._queue.popleft() if self._queue else None
                if event is None and not self._spooling:
                    return  # closing, and nothing left
            source = None
            if event is None:  # the memory queue is empty: the spool's oldest
                self._write_spill()
                found = self.spool.oldest()
                if found is None:
                    with self._cond:
                        self._spooling = bool(self._spill)
                        if self._closing and not self._spooling:
                            return
                    continue
                source, event = found
            outcome = self._send(event)
            if source is not None and outcome != "stopped":
                self.spool.remove(source)
            if outcome == "dropped":
                with self._cond:
                    self.dropped += 1
            elif outcome == "stopped":  # close() drops it, or puts it in the spool
                if source is None:
                    with self._cond:
                        self._unsent = [event]
                return

    def _write_spill(self) -> None:
        """Write the events waiting for the spool, in order; what the bound does not allow
        is dropped (counted)."""
        while True:
            with self._cond:
                if not self._spill:
                    return
                event = self._spill.popleft()
            if not self.spool.push(event):
                with self._cond:
                    self.dropped += 1

    def _send(self, event: Event) -> str:
        """Deliver one event, trying again after a back-off while the destination is down
        (until the run's end allows no more time): "delivered", "dropped" (refused) or
        "stopped" (the run ended first)."""
        tries = 0
        while True:
            try:
                self.destination.deliver(event)
            except Retry as exc:
                self._failed(exc)
                until = time.monotonic() + BACKOFF_S[min(tries, len(BACKOFF_S) - 1)]
                tries += 1
                while True:  # the back-off; a put wakes it to write the spool, not to retry
                    if self.spool is not None:
                        self._write_spill()
                    with self._cond:
                        if self._closing and self._deadline <= time.monotonic():
                            return "stopped"
                        pause = until - time.monotonic()
                        if self._closing:
                            pause = min(pause, self._deadline - time.monotonic())
                        if pause <= 0:
                            break
                        self._cond.wait(pause)
                continue
            except Exception as exc:  # Undeliverable, or a destination's own bug: dropped
                self._failed(exc)
                return "dropped"
            with self._cond:
                self.delivered += 1
            if self._down:
                self._down = False
                self.say(f"events: {self.destination.name}: delivering again")
            if self.on_delivered is not None:
                self.on_delivered(event)
            return "delivered"

    def _failed(self, exc: Exception) -> None:
        self.failures += 1
        error = str(exc) or type(exc).__name__
        if not self._down or error != self.last_error:
            self.say(f"events: {self.destination.name}: {error}; the loop goes on, events "
                     f"wait (up to {self.size}) and are retried")
        self._down = True
        self.last_error = error
