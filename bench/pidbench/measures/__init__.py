"""Every measurement, in the order the report shows them."""

from __future__ import annotations

from pidbench.measure import Measurement
from pidbench.measures.chain import Chain
from pidbench.measures.idle import Idle
from pidbench.measures.logs import LogRelay
from pidbench.measures.memory import Memory
from pidbench.measures.orphans import OrphanStorm, ZombieBurst
from pidbench.measures.reexec import Reexec
from pidbench.measures.restart import Restart
from pidbench.measures.scale import Scale
from pidbench.measures.shutdown import Shutdown
from pidbench.measures.signals import SignalLatency
from pidbench.measures.update import Update

ALL: tuple[Measurement, ...] = (
    Memory(),
    Idle(),
    OrphanStorm(),
    ZombieBurst(),
    SignalLatency(),
    Restart(),
    Shutdown(),
    Chain(),
    LogRelay(),
    Scale(),
    Update(),
    Reexec(),
)
