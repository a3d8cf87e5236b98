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
import re
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.webapp import in_namespace, pinned_namespace
from tests.helpers.netns import (
    REDIS_URL,
    Replicas,
    Sample,
    Tick,
    beat_command,
    beat_environment,
)
from tests.helpers.running import PIDONE, require_root, wait_for


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


# -- with a legion --------------------------------------------------------------

TTL = 3  # seconds: short, so that the tests are fast
KEY = "pidone:legion:beat"  # the lease's key in redis


def legion_toml(replicas: Replicas, n: int, *, priority: int = 0) -> str:
    """Replica N's pidone.toml: beat runs only on the legion's lord."""
    return f"""
[pidone]
metrics = "127.0.0.1:9100"

[legion.beat]
redis = "{REDIS_URL}"
ttl = {TTL}
priority = {priority}
{plain_toml(replicas, n)}legion = "beat"
"""


def start_legion(replicas: Replicas) -> int:
    """All three replicas in the legion, sampled from the start; the lord's number."""
    replicas.start_sampling()
    for n in (1, 2, 3):
        replicas.start(n, legion_toml(replicas, n))
    return the_lord(replicas)


def the_lord(replicas: Replicas, timeout: float = 30.0, but: int = 0) -> int:
    """Wait until exactly one replica runs a beat, and it is not replica `but`."""
    found: list[str] = []

    def one() -> bool:
        found[:] = replicas.running_beat()
        return len(found) == 1 and found[0] != f"replica-{but}"

    wait_for(one, timeout=timeout, what=f"one beat (running: {found})")
    return int(found[0].removeprefix("replica-"))


def status(replicas: Replicas, n: int, *, check: bool = True) -> str:
    """`pidone ctl status` of replica N, through its control socket;
    `check=False`: its error instead of a failure (not listening yet)."""
    stack = replicas.stack(n)
    done = subprocess.run([PIDONE, "ctl", "--socket", str(stack.control_socket), "status"],
                          capture_output=True, text=True, timeout=30)  # fmt: skip
    assert not check or done.returncode == 0, done.stderr
    return done.stdout if done.returncode == 0 else done.stderr


def lord_metric(replicas: Replicas, n: int) -> float:
    """pidone_legion_lord{legion="beat"} in replica N's /metrics (on its own loopback)."""
    body = replicas.replicas[n - 1].netns.run("curl", "-sf", "http://127.0.0.1:9100/metrics")
    lines = [ln for ln in body.splitlines() if ln.startswith("pidone_legion_lord{")]
    assert len(lines) == 1, body
    sample, value = lines[0].rsplit(" ", 1)
    assert sample == 'pidone_legion_lord{legion="beat"}', lines
    return float(value)


def first(replicas: Replicas, since: float, holds: Callable[[Sample], bool], what: str) -> float:
    """When the first sample since `since` that `holds` was taken (waiting a
    little for the sampler: the test may have seen it first)."""
    deadline = time.monotonic() + 5
    while True:
        for sample in list(replicas.samples):
            if sample.at >= since and holds(sample):
                return sample.at
        if time.monotonic() > deadline:
            raise AssertionError(f"never {what}")
        time.sleep(0.05)


def runs(sample: Sample, n: int) -> bool:
    return bool(sample.beats[f"replica-{n}"])


def nobody(sample: Sample) -> bool:
    return not any(sample.beats.values())


def exactly_one(what: str, replicas: Replicas, ticks: list[Tick] | None = None) -> Account:
    """Never two beats at once in the host's /proc; in the record, no tick
    sent twice and no second ticked by two replicas."""
    samples = len(replicas.samples)
    print(f"{what}: {samples} samples of /proc, at most {replicas.most_beats_at_once()} beat")
    assert samples > 0
    assert replicas.most_beats_at_once() == 1
    result = account(what, replicas.ticks() if ticks is None else ticks)
    assert result.twice == 0, result
    assert result.two_senders == 0, result
    return result


def test_one_beat_runs_across_three_replicas_and_the_others_stand_by(replicas: Replicas) -> None:
    lord = start_legion(replicas)
    wait_for(lambda: replicas.ticks() != [], timeout=30, what="the first tick")
    since = replicas.ticks()[0].sent_at
    time.sleep(3 * TTL)  # several renewals
    assert replicas.running_beat() == [f"replica-{lord}"]
    for n in (1, 2, 3):
        text = status(replicas, n)
        if n == lord:
            assert re.search(r"^beat\s+READY\s+yes\b", text, re.M), text
            assert lord_metric(replicas, n) == 1
        else:
            assert f"standby: legion beat is held by replica-{lord}" in text, text
            assert lord_metric(replicas, n) == 0
    ticks = [t for t in replicas.ticks() if t.sent_at < since + 3 * TTL]
    exactly_one(f"one lord, {3 * TTL} s", replicas, ticks)
    assert {t.sender for t in ticks} == {f"replica-{lord}"}
    assert len(ticks) in (3 * TTL, 3 * TTL + 1)  # one a second: the first at `since`


def test_sigkill_of_the_lords_pidone_moves_beat_within_ttl_plus_2_s(replicas: Replicas) -> None:
    lord = start_legion(replicas)
    wait_for(lambda: len(replicas.ticks()) >= 2, timeout=30, what="two ticks")
    with pinned_namespace(replicas.stack(lord).init.pid) as namespace:
        killed_at = time.monotonic()
        replicas.stack(lord).init.kill()  # SIGKILL to the replica's PID 1: its namespace dies
        heir = the_lord(replicas, timeout=TTL + 10, but=lord)
        assert in_namespace(namespace) == []
    gone = first(replicas, killed_at, lambda s: not runs(s, lord), "the old beat gone")
    took_over = first(replicas, killed_at, lambda s: runs(s, heir), "the heir's beat") - killed_at
    print(f"SIGKILL of replica-{lord}'s pidone: old beat gone after {gone - killed_at:.3f} s, "
          f"replica-{heir}'s beat started after {took_over:.3f} s (ttl {TTL} s)")  # fmt: skip
    assert took_over <= TTL + 2
    wait_for(lambda: any(t.sender == f"replica-{heir}" for t in replicas.ticks()), timeout=10)
    # the killed replica's pod restarted: a new pidone, standing by
    replicas.start(lord, legion_toml(replicas, lord))
    wait_for(
        lambda: f"held by replica-{heir}" in status(replicas, lord, check=False),
        timeout=TTL + 10, what="the restarted replica to stand by",
    )  # fmt: skip
    time.sleep(TTL)
    assert replicas.running_beat() == [f"replica-{heir}"]
    exactly_one(f"SIGKILL of replica-{lord}", replicas)


def test_the_lords_cut_link_stops_its_beat_before_its_lease_expires(replicas: Replicas) -> None:
    lord = start_legion(replicas)
    wait_for(lambda: len(replicas.ticks()) >= 2, timeout=30, what="two ticks")
    replicas.cut(lord)
    cut_at = time.monotonic()
    # The lease as redis has it, which the lord cannot renew any more: it
    # expires PTTL after redis answered, between these two.
    pttl = int(replicas.redis("PTTL", KEY)) / 1000
    earliest, latest = cut_at + pttl, time.monotonic() + pttl
    heir = the_lord(replicas, timeout=TTL + 10, but=lord)
    gone = first(replicas, cut_at, lambda s: not runs(s, lord), "the cut lord's beat gone")
    took_over = first(replicas, cut_at, lambda s: runs(s, heir), "the heir's beat")
    print(f"replica-{lord} cut off: its beat gone after {gone - cut_at:.3f} s, its lease expired "
          f"after {earliest - cut_at:.3f} to {latest - cut_at:.3f} s, replica-{heir}'s beat "
          f"started after {took_over - cut_at:.3f} s")  # fmt: skip
    assert 0 < pttl <= TTL
    assert gone < earliest < took_over
    assert took_over - cut_at <= TTL + 2
    # back on the network, the old lord stands by: the heir keeps the lease
    replicas.mend(lord)
    wait_for(
        lambda: f"held by replica-{heir}" in status(replicas, lord, check=False), timeout=TTL + 10,
        what="the old lord to stand by",
    )  # fmt: skip
    time.sleep(TTL)
    assert replicas.running_beat() == [f"replica-{heir}"]
    exactly_one(f"replica-{lord} cut off", replicas)


def test_redis_stopped_no_beat_anywhere_until_it_returns_then_exactly_one(
    replicas: Replicas,
) -> None:
    lord = start_legion(replicas)
    wait_for(lambda: len(replicas.ticks()) >= 2, timeout=30, what="two ticks")
    stopped_at = time.monotonic()
    replicas.stop_redis()
    # the lord stops beat before its lease could expire; nobody starts one
    wait_for(lambda: replicas.running_beat() == [], timeout=TTL + 5, what="no beat")
    gone = first(replicas, stopped_at, nobody, "no beat")
    time.sleep(3 * TTL)
    started_at = time.monotonic()
    outage = [s for s in replicas.samples if gone <= s.at < started_at]
    assert outage and all(nobody(s) for s in outage)
    for n in (1, 2, 3):
        assert "redis unreachable" in status(replicas, n), status(replicas, n)
    replicas.start_redis()
    heir = the_lord(replicas, timeout=TTL + 10)
    back = first(replicas, started_at, lambda s: runs(s, heir), "a beat again")
    print(f"redis stopped: replica-{lord}'s beat gone after {gone - stopped_at:.3f} s "
          f"(ttl {TTL} s), none for {started_at - gone:.1f} s; redis back: replica-{heir}'s "
          f"beat after {back - started_at:.3f} s")  # fmt: skip
    assert gone - stopped_at < TTL
    time.sleep(TTL)
    assert replicas.running_beat() == [f"replica-{heir}"]
    exactly_one("redis stopped and back", replicas)


def test_the_highest_priority_live_replica_takes_the_next_lease(replicas: Replicas) -> None:
    """uWSGI's valor: the lord keeps its lease; the next goes to the highest live candidate."""
    replicas.start_sampling()
    replicas.start(1, legion_toml(replicas, 1, priority=1))
    assert the_lord(replicas) == 1
    for n in (2, 3):  # higher than the lord: they stand by all the same
        replicas.start(n, legion_toml(replicas, n, priority=n))
    wait_for(lambda: all("held by replica-1" in status(replicas, n, check=False) for n in (2, 3)),
             timeout=TTL + 10, what="replicas 2 and 3 to stand by")  # fmt: skip
    time.sleep(TTL)
    assert replicas.running_beat() == ["replica-1"]
    replicas.stack(1).init.kill()
    assert the_lord(replicas, timeout=TTL + 10, but=1) == 3
    time.sleep(TTL)
    assert replicas.running_beat() == ["replica-3"]
    exactly_one("priorities 1, 2, 3", replicas)


def test_redis_restarted_empty_under_a_lord_never_gives_two_beats(replicas: Replicas) -> None:
    """The lease vanishes without expiring (no persistence, or a failover to
    a replica without the key): the old lord's lease still runs by its own
    clock, so nobody else may start beat before it would have ended."""
    the_lord_was = start_legion(replicas)
    for _ in range(5):  # the old lord sometimes takes the key back first
        wait_for(lambda: len(replicas.running_beat()) == 1, timeout=TTL + 10, what="one beat")
        time.sleep(1)
        restarted_at = time.monotonic()
        replicas.kill_redis()
        replicas.start_redis()
        time.sleep(TTL + 1)
        overlap = [s for s in replicas.samples
                   if s.at >= restarted_at and sum(map(len, s.beats.values())) > 1]  # fmt: skip
        print(
            f"redis restarted empty under replica-{the_lord_was}: {len(overlap)} samples "
            f"with two beats, {overlap[-1].at - overlap[0].at if overlap else 0:.2f} s"
        )
        assert overlap == []
        the_lord_was = the_lord(replicas)
    exactly_one("redis restarted empty, 5 times", replicas)
