"""`pidone ctl reexec` with a [legion.NAME], for real (a real redis on
loopback, pidone as PID 1 or as a subreaper): the lease goes over with the
token it is held under, so the lord's legion process is never stopped and
the new pidone renews the lease; a standby stays standby."""

from __future__ import annotations

import itertools
import json
import re
import time
from pathlib import Path

from tests.helpers.redis_server import RedisServer
from tests.helpers.running import wait_for
from tests.helpers.stack import Stack, free_port
from tests.pid1 import test_legion
from tests.pid1.test_control import ctl, metrics
from tests.pid1.test_legion import (
    TTL,
    journal,
    never_two_at_once,
    running_intervals,
    status,
    toml,
    two,
    ups,
)
from tests.pid1.test_reexec import reexec

beats = test_legion.beats  # the fixture: the beats' journal
KEY = "pidone:legion:beat"
# The lord's ttl: no renewal goes out between the old pidone's last one and
# the new pidone's first, and beat (stop_timeout 1) must stop at that last
# one's sent + ttl - 0.5 - 1 (safety before liveness). With 9 s a reexec
# has 4.5 s at the worst (renewed 3 s before the exec), far beyond its
# ~0.3 s, also on a loaded machine.
LORD_TTL = 9.0


def lord_toml(stack: Stack, url: str, beats: Path, port: int) -> str:
    text = toml(stack, url, beats, "a-beat").replace(f"ttl = {TTL:g}\n", f"ttl = {LORD_TTL:g}\n")
    return text.replace("[pidone]\n", f'[pidone]\nmetrics = "127.0.0.1:{port}"\n', 1)


def bulk(reply: bytes) -> bytes:
    """A bulk string reply's content ($N\\r\\n...\\r\\n)."""
    assert reply.startswith(b"$") and not reply.startswith(b"$-1"), reply
    return reply.split(b"\r\n", 2)[1]


def pttl(redis: RedisServer) -> int:
    reply = redis.call("PTTL", KEY)
    assert reply.startswith(b":"), reply
    return int(reply[1:].strip())


def changes(port: int) -> dict[str, float]:
    samples = metrics(port)
    return {
        change: samples[
            "pidone_legion_lease_changes_total", (("change", change), ("legion", "beat"))
        ]
        for change in ("acquired", "lost", "released")
    }


def legions(stack: Stack) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = json.loads(ctl(stack, "status", "--json").stdout)["legions"]
    return rows


def test_reexec_of_the_lord_keeps_its_legion_process_and_the_lease_under_its_token(
    mode: str, tmp_path: Path, beats: Path
) -> None:
    port = free_port()
    with RedisServer(tmp_path) as redis, Stack(mode, tmp_path) as stack:
        stack.start(lord_toml(stack, redis.url, beats, port))
        wait_for(lambda: "a-beat" in ups(beats), what="the lord's beat to start")
        assert ctl(stack, "wait-ready", "--timeout", "10").returncode == 0
        pid = status(stack)["beat"]["pid"]
        token = bulk(redis.call("GET", KEY))
        before = changes(port)
        assert before == {"acquired": 1, "lost": 0, "released": 0}
        lords = legions(stack)
        assert [(g["name"], g["lord"]) for g in lords] == [("beat", True)]
        reexec(stack)
        # The new pidone renews it (the old one is gone: its reply came from
        # the new one): every ttl/3 a PEXPIRE back to the ttl, under our token.
        ttls, end = [], time.monotonic() + 7.0
        while time.monotonic() < end:
            assert bulk(redis.call("GET", KEY)) == token
            ttls.append(pttl(redis))
            time.sleep(0.1)
        rises = sum(1 for a, b in itertools.pairwise(ttls) if b > a)
        assert rises >= 2, ttls  # 7 s: renewed every 3 s
        assert status(stack)["beat"]["pid"] == pid
        assert ups(beats) == ["a-beat"]
        assert not [e for e in journal(beats) if e.event.startswith(("term", "exit"))]
        assert changes(port) == before  # no lost, no acquired
        assert legions(stack) == lords
        assert status(stack)["beat"]["state"] in ("running", "ready")
        assert re.search(
            rf"^pidone\s+\| legions: beat as {re.escape(token.decode())} \(handed over\)$",
            stack.stdout_so_far(),
            re.M,
        ), stack.stdout_so_far()
        assert "lease lost" not in stack.stdout_so_far() + stack.stderr_so_far()
        assert stack.stdout_so_far().count("legion beat: lord (lease acquired)") == 1
        assert "re-exec: refused" not in stack.stderr_so_far()


def test_reexec_of_a_standby_keeps_it_standby_and_the_lord_undisturbed(
    mode: str, tmp_path: Path, beats: Path
) -> None:
    with RedisServer(tmp_path) as redis:
        a, b = two(mode, tmp_path, redis.url, beats)
        with a, b:
            assert ctl(b, "wait-ready", "--timeout", "10").returncode == 0
            lord_pid = status(a)["beat"]["pid"]
            token = bulk(redis.call("GET", KEY))
            standing = status(b)["beat"]["standby"]
            assert str(standing).startswith("standby: legion beat is held by ")
            reexec(b)
            time.sleep(2 * TTL)  # b asks every 0.5 s meanwhile; it never takes it
            assert ups(beats) == ["a-beat"]
            assert status(a)["beat"]["pid"] == lord_pid
            assert not [e for e in journal(beats) if e.event.startswith(("term", "exit"))]
            assert bulk(redis.call("GET", KEY)) == token
            beat = status(b)["beat"]
            assert (beat["state"], beat["pid"], beat["standby"]) == ("stopped", None, standing)
            assert [(g["name"], g["lord"]) for g in legions(b)] == [("beat", False)]
            assert ctl(b, "wait-ready", "--timeout", "10").returncode == 0  # standby is ready
            never_two_at_once(running_intervals(beats, time.monotonic_ns()))
            assert "re-exec: refused" not in b.stderr_so_far()
