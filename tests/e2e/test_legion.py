"""Three pidone replicas, one redis, real celery beat (tests/helpers/netns.py).

Each replica's pidone is PID 1 of its own PID namespace, in its own network
and UTS namespace (hostname replica-N), joined by a veth pair to a bridge in
the namespace that runs one real redis-server. Each runs
tests/helpers/beat_app.py's beat (a 1 s schedule) as [process.beat]; every
tick lands in redis's queue with its sender's hostname and time. Without a
legion, every tick is sent three times (celery's issue 2856); with
`legion = "beat"`, exactly one beat runs at any time, moves when its lord is
SIGKILLed or cut off, and none runs while redis is down.
"""

from __future__ import annotations

import itertools
import math
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers.netns import Replicas, Tick, beat_command, beat_environment
from tests.helpers.running import require_root, wait_for


@pytest.fixture
def replicas(installed: None, tmp_path: Path) -> Iterator[Replicas]:
    require_root()
    tmp_path.chmod(0o755)
    with Replicas(tmp_path) as made:
        yield made


def plain_toml(replicas: Replicas, n: int) -> str:
    """Replica N's pidone.toml without a legion: beat on every replica."""
    replica = replicas.replicas[n - 1]
    return f"""
[process.beat]
command = "{beat_command(replica)}"
environment = {beat_environment()}
stop_signal = "SIGTERM"
stop_timeout = 1
"""


TWICE = 0.5  # two ticks closer than this: one tick sent twice (the schedule is 1 s)
NAMES = ("replica-1", "replica-2", "replica-3")


def per_second(ticks: list[Tick]) -> dict[int, list[str]]:
    """The senders of the ticks sent in each whole second (wall clock)."""
    seconds: dict[int, list[str]] = {}
    for tick in ticks:
        seconds.setdefault(math.floor(tick.sent_at), []).append(tick.sender)
    return seconds


@dataclass(frozen=True)
class Account:
    ticks: int
    twice: int  # ticks sent less than TWICE s after the one before
    two_senders: int  # whole seconds with ticks from two replicas
    longest_gap: float


def account(what: str, ticks: list[Tick]) -> Account:
    """Print the ticks (offset from the first, sender) and their account."""
    gaps = [b.sent_at - a.sent_at for a, b in itertools.pairwise(ticks)]
    result = Account(
        ticks=len(ticks),
        twice=sum(gap < TWICE for gap in gaps),
        two_senders=sum(len(set(s)) > 1 for s in per_second(ticks).values()),
        longest_gap=max(gaps, default=0.0),
    )
    senders = dict(Counter(t.sender for t in ticks))
    print(f"{what}: {senders}, {result}")
    start = ticks[0].sent_at if ticks else 0.0
    for tick in ticks:
        print(f"  {tick.sent_at - start:8.3f} {tick.sender}")
    return result


def test_three_beats_without_a_legion_send_every_tick_three_times(replicas: Replicas) -> None:
    """The issue's motivation, measured: three replicas, three beats."""
    replicas.start_sampling()
    for n in (1, 2, 3):
        replicas.start(n, plain_toml(replicas, n))
    wait_for(lambda: len(replicas.running_beat()) == 3, timeout=30, what="three beats")
    # each beat's first tick: all three are sending
    wait_for(lambda: len({t.sender for t in replicas.ticks()}) == 3, timeout=30, what="3 senders")
    since = time.time()
    time.sleep(10)
    ticks = [t for t in replicas.ticks() if t.sent_at >= since]
    account("without a legion, 10 s", ticks)
    # 10 s of a 1 s schedule: each beat sent its 10 (its first tick
    # may fall just outside), so 3 per tick
    senders = Counter(t.sender for t in ticks)
    assert set(senders) == set(NAMES)
    assert all(9 <= count <= 11 for count in senders.values()), senders
    assert replicas.most_beats_at_once() == 3
