"""The benchmark harness (bench/pidbench) is imported as `pidbench`, as
bench/run.py imports it: put bench/ on sys.path for the tests of its pure parts."""

from __future__ import annotations

import sys
from pathlib import Path

BENCH = str(Path(__file__).resolve().parents[2] / "bench")
if BENCH not in sys.path:
    sys.path.insert(0, BENCH)
