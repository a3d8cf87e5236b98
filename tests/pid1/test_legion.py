"""[legion.NAME] for real: pidones (as PID 1 of their own PID namespace, or
as subreapers) sharing one real redis on loopback; exactly one runs the
legion process, and it moves when the lord stops, dies or loses redis."""

from __future__ import annotations

import itertools
import json
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers.redis_server import FakeRedis, RedisServer
from tests.helpers.running import PYTHON, descendants, proc_state, wait_for
from tests.helpers.stack import SVC, Entry, Stack
from tests.pid1.test_control import ctl

TTL = 3.0  # renew every 1 s; down 0.5 s before the lease can expire


def toml(stack: Stack, url: str, beats: Path, who: str, web: str = "") -> str:
    beat = f"{PYTHON} {SVC} {who} --journal {beats}"
    return f"""
[pidone]
settle_time = 0.2
[legion.beat]
redis = "{url}"
ttl = {TTL:g}
[process.web]
command = "{web or stack.svc("web")}"
[process.beat]
command = "{beat}"
legion = "beat"
stop_timeout = 1
"""


def journal(beats: Path) -> list[Entry]:
    entries = []
    for line in beats.read_text().splitlines():
        ns, name, event = line.split(" ", 2)
        entries.append(Entry(int(ns), name, event))
    return entries


def ups(beats: Path) -> list[str]:
    return [e.name for e in journal(beats) if e.event.startswith("up ")]


def running_intervals(beats: Path, now_ns: int) -> list[tuple[str, int, int]]:
    """(who, up, down) of each beat instance: down at its exit, else now."""
    spans: list[tuple[str, int, int]] = []
    open_: dict[str, int] = {}
    for e in journal(beats):
        if e.event.startswith("up "):
            open_[e.name] = e.ns
        elif e.event.startswith("exit") and e.name in open_:
            spans.append((e.name, open_.pop(e.name), e.ns))
    spans += [(who, up, now_ns) for who, up in open_.items()]
    return sorted(spans, key=lambda s: s[1])


def never_two_at_once(spans: list[tuple[str, int, int]]) -> None:
    for (a, _, a_down), (b, b_up, _) in itertools.pairwise(spans):
        assert b_up >= a_down, f"{b} started before {a} was down: {spans}"


def status(stack: Stack) -> dict[str, dict[str, object]]:
    rows = json.loads(ctl(stack, "status", "--json").stdout)["processes"]
    return {r["name"]: r for r in rows}


@pytest.fixture
def beats(tmp_path: Path) -> Path:
    path = tmp_path / "beats"
    path.touch()
    path.chmod(0o666)
    return path


def two(mode: str, tmp_path: Path, url: str, beats: Path) -> tuple[Stack, Stack]:
    for name in "ab":
        (tmp_path / name).mkdir()
    a, b = Stack(mode, tmp_path / "a"), Stack(mode, tmp_path / "b")
    a.start(toml(a, url, beats, "a-beat"))
    wait_for(lambda: "a-beat" in ups(beats), what="a's beat to start")
    b.start(toml(b, url, beats, "b-beat"))
    b.wait_for("web up")
    return a, b


def test_the_lord_runs_it_and_a_second_pidone_stands_by_ready(
    mode: str, tmp_path: Path, beats: Path
) -> None:
    with RedisServer(tmp_path) as redis:
        a, b = two(mode, tmp_path, redis.url, beats)
        with a, b:
            assert ctl(b, "wait-ready", "--timeout", "10").returncode == 0  # standby is ready
            # wait-ready passes a standby over at once, "has no lord yet" too:
            # who holds the lease is known once b's first ask is answered
            held = f"standby: legion beat is held by {socket.gethostname()}"
            wait_for(lambda: status(b)["beat"]["standby"] == held, what="b to learn a holds it")
            beat = status(b)["beat"]
            assert (beat["state"], beat["pid"]) == ("stopped", None)
            assert beat["standby"] == held
            text = ctl(b, "status").stdout
            assert f"beat: standby: legion beat is held by {socket.gethostname()}" in text
            assert status(a)["beat"]["state"] in ("running", "ready")
            time.sleep(2 * TTL)  # renewals go on; the standby never starts it
            assert ups(beats) == ["a-beat"]
            assert redis.call("GET", "pidone:legion:beat").count(b" ") == 1


def test_a_clean_stop_of_the_lord_releases_and_the_standby_takes_over_within_1s(
    mode: str, tmp_path: Path, beats: Path
) -> None:
    with RedisServer(tmp_path) as redis:
        a, b = two(mode, tmp_path, redis.url, beats)
        with a, b:
            a.init.signal(signal.SIGTERM)
            assert a.init.wait() == 0
            assert "legion beat: lease released" in a.output()[0]
            gone = time.monotonic_ns()
            wait_for(lambda: "b-beat" in ups(beats), timeout=5, what="b's beat")
            (b_up,) = [e.ns for e in journal(beats) if e.name == "b-beat" and "up" in e.event]
            assert b_up - gone < 1.0e9
            never_two_at_once(running_intervals(beats, time.monotonic_ns()))


def test_sigkill_of_the_lord_hands_over_within_ttl_plus_2s(
    mode: str, tmp_path: Path, beats: Path
) -> None:
    with RedisServer(tmp_path) as redis:
        a, b = two(mode, tmp_path, redis.url, beats)
        with a, b:
            a.init.kill()  # its beat dies with it (PID namespace, or the helper's kill)
            killed = time.monotonic_ns()
            wait_for(lambda: "b-beat" in ups(beats), timeout=TTL + 2, what="b's beat")
            (b_up,) = [e.ns for e in journal(beats) if e.name == "b-beat" and "up" in e.event]
            assert b_up - killed < (TTL + 2) * 1e9
            assert ups(beats) == ["a-beat", "b-beat"]


def test_redis_stopped_the_lord_stops_it_before_the_lease_could_expire_then_one_lord(
    mode: str, tmp_path: Path, beats: Path
) -> None:
    redis = RedisServer(tmp_path).start()
    try:
        a, b = two(mode, tmp_path, redis.url, beats)
        with a, b:
            stopped = redis.stop()
            # Renewed at most TTL/3 before redis went: down before that lease's end.
            wait_for(
                lambda: any(e.event.startswith("exit") for e in journal(beats)),
                timeout=TTL,
                what="a's beat to stop",
            )
            (down,) = [e.ns for e in journal(beats) if e.event.startswith("exit")]
            assert down < stopped * 1e9 + (TTL - 0.5) * 1e9
            time.sleep(TTL)  # nobody runs it while redis is away
            assert ups(beats) == ["a-beat"]
            assert "no lord: redis unreachable" in str(status(b)["beat"]["standby"])
            assert "no lord: redis unreachable" in str(status(a)["beat"]["standby"])
            redis.start()  # empty, on the same port
            wait_for(lambda: len(ups(beats)) == 2, timeout=TTL + 2, what="one lord again")
            time.sleep(TTL)
            assert len(ups(beats)) == 2  # one, not two
            never_two_at_once(running_intervals(beats, time.monotonic_ns()))
    finally:
        if redis.proc is not None:
            redis.stop()


# --- attacks: a hostile "redis" --------------------------------------------------------


def huge(conn: socket.socket) -> None:
    conn.sendall(b"$1000000000\r\n")
    chunk = b"x" * 65536
    for _ in range(16384):  # 1 GB, as long as pidone reads
        conn.sendall(chunk)


def garbage(conn: socket.socket) -> None:
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")


def silent(conn: socket.socket) -> None:
    time.sleep(30)


ORPHANS = "sh -c 'while :; do (sleep 0.01 &); sleep 0.05; done'"


@pytest.mark.parametrize(
    ("answer", "said"),
    [
        (huge, "reply larger than 65536 bytes"),
        (garbage, "garbled reply"),
        (silent, "no reply within 1 s"),  # the core's deadline: ttl/3
    ],
    ids=["1GB", "garbage", "silent"],
)
def test_a_hostile_redis_reply_is_bounded_logged_and_nothing_starts(
    mode: str, tmp_path: Path, beats: Path, answer: Callable[[socket.socket], None], said: str
) -> None:
    with FakeRedis(answer) as fake, Stack(mode, tmp_path) as stack:
        stack.start(toml(stack, fake.url, beats, "beat", web=ORPHANS))
        wait_for(lambda: said in stack.stderr_so_far(), timeout=TTL + 2, what=said)
        assert f"legion beat: no lord: redis unreachable ({said}" in stack.stderr_so_far() or (
            f"legion beat: no lord: redis unreachable (127.0.0.1:{fake.port}: {said}"
            in stack.stderr_so_far()
        )
        time.sleep(1.0)
        assert ups(beats) == []
        # still reaping: the orphans web makes every 50 ms never stay zombies
        zombies = [p for p in descendants(stack.init.pid) if proc_state(p) == "Z"]
        assert len(zombies) <= 1, zombies  # one may be between its exit and its reap
        beat = status(stack)["beat"]
        assert beat["state"] == "stopped" and "no lord" in str(beat["standby"])
        assert stack.stderr_so_far().count("no lord: redis unreachable") == 1  # logged once
