"""The one exception the benchmark raises when a measurement cannot go on."""

from __future__ import annotations


class BenchError(Exception):
    """A process did not start, answer or exit in time; the message says which."""


class InitGone(BenchError):
    """The init exited while we waited for something from its workload."""
