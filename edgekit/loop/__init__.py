"""The camera loop: sources -> pipelined stages -> sinks, timed per stage (see run.py)."""
from __future__ import annotations
