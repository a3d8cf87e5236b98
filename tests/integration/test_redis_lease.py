"""system/redis.py against a real redis-server (and hostile fakes) on loopback:
the scripts, priority among candidates, AUTH, and every reply bounded."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pidone.system.redis import (
    MAX_REPLY,
    Address,
    Connection,
    LeaseClient,
    RedisError,
    holder_of,
    make_token,
)
from tests.helpers.redis_server import FakeRedis, RedisServer

KEY = "pidone:legion:beat"


def client(port: int, token: str, priority: int = 0, password: str | None = None) -> LeaseClient:
    woke = threading.Event()
    c = LeaseClient(
        Address("127.0.0.1", port, None, 0, password),
        KEY,
        token=token,
        priority=priority,
        ttl=5.0,
        candidate_ttl=2.0,
        wake=woke.set,
    )
    c.woke = woke  # type: ignore[attr-defined]
    return c


def ask(c: LeaseClient, kind: str, request_id: int = 1) -> tuple[int, bool, str, str]:
    c.woke.clear()  # type: ignore[attr-defined]
    c.submit(request_id, kind, time.monotonic() + 2.0)
    assert c.woke.wait(5)  # type: ignore[attr-defined]
    (answer,) = c.take()
    return answer


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[RedisServer]:
    with RedisServer(tmp_path) as server:
        yield server


def test_acquire_renew_release_with_the_documented_scripts(redis: RedisServer) -> None:
    a = client(redis.port, "a" * 32 + " host-a")
    b = client(redis.port, "b" * 32 + " host-b")
    assert ask(a, "acquire") == (1, True, "host-a", "")
    assert ask(b, "acquire") == (1, False, "host-a", "")  # standby: sees the holder
    assert ask(b, "renew") == (1, False, "host-a", "")  # compare-and-set refuses another's
    assert ask(a, "renew") == (1, True, "host-a", "")
    pttl = int(redis.call("PTTL", KEY)[1:].strip())
    assert 4000 < pttl <= 5000
    assert ask(b, "release") == (1, False, "", "")  # compare-and-delete: not b's
    assert redis.call("GET", KEY).endswith(b"host-a\r\n")
    assert ask(a, "release") == (1, True, "host-a", "")
    assert redis.call("EXISTS", KEY) == b":0\r\n"
    assert ask(b, "look") == (1, True, "host-b", "")  # a released lease is taken at once
    for c in (a, b):
        c.close(1)


def test_an_acquire_answered_to_no_one_is_held_by_the_same_token_after_a_reexec(
    redis: RedisServer,
) -> None:
    """ctl reexec drops a request in flight: redis may have carried out the
    old pidone's ACQUIRE whose answer died with it. The new pidone (same
    token, a new client) asks again: already ours is held, not a loss,
    even with a better candidate announced meanwhile."""
    token = "c" * 32 + " host-c"
    old = client(redis.port, token)
    assert ask(old, "acquire")[1]  # carried out; its answer is lost with the old pidone
    old.close(1)
    better = client(redis.port, "0" * 32 + " host-0", priority=9)
    assert ask(better, "acquire") == (1, False, "host-c", "")
    new = client(redis.port, token)
    assert ask(new, "acquire", 2) == (2, True, "host-c", "")
    assert ask(new, "look", 3) == (3, True, "host-c", "")
    assert redis.call("GET", KEY) == f"${len(token)}\r\n{token}\r\n".encode()
    for c in (better, new):
        c.close(1)


def test_a_key_gone_under_a_lord_is_taken_by_acquire_only_not_by_look(
    redis: RedisServer,
) -> None:
    """A redis restarted empty loses the key while its lord still runs: a
    standby that saw it held only looks (the core waits a ttl), the lord's
    renewal takes it back."""
    lord = client(redis.port, "a" * 32 + " lord")
    standby = client(redis.port, "b" * 32 + " standby")
    assert ask(lord, "acquire")[1] and ask(standby, "acquire") == (1, False, "lord", "")
    redis.call("FLUSHALL")  # what a restart without persistence does
    assert ask(standby, "look") == (1, False, "", "")  # not taken
    assert redis.call("EXISTS", KEY) == b":0\r\n"
    assert ask(lord, "renew") == (1, True, "lord", "")  # taken back by its lord
    redis.call("DEL", KEY)  # expired (its epoch is there): a look takes it
    assert ask(standby, "look") == (1, True, "standby", "")
    redis.call("FLUSHALL")
    assert ask(standby, "acquire") == (1, True, "standby", "")  # a ttl later, the core asks this
    for c in (lord, standby):
        c.close(1)


def test_the_highest_priority_live_candidate_takes_the_next_lease(redis: RedisServer) -> None:
    lord = client(redis.port, "0" * 32 + " lord")
    high = client(redis.port, "f" * 32 + " high", priority=5)
    low = client(redis.port, "1" * 32 + " low", priority=1)
    assert ask(lord, "acquire")[1]
    assert not ask(high, "acquire")[1] and not ask(low, "acquire")[1]  # both announced
    assert ask(lord, "release")[1]
    assert ask(low, "acquire") == (1, False, "", "")  # free, but high is alive and better
    assert ask(high, "acquire") == (1, True, "high", "")
    time.sleep(2.1)  # high stops asking as a candidate; low's entry expires too
    assert ask(high, "release")[1]
    assert ask(low, "acquire") == (1, True, "low", "")  # the only live one now


def test_ties_go_to_the_smaller_token(redis: RedisServer) -> None:
    first = client(redis.port, "1" * 32 + " one")
    second = client(redis.port, "2" * 32 + " two")
    lord = client(redis.port, "0" * 32 + " lord")
    assert ask(lord, "acquire")[1]
    ask(second, "acquire")
    ask(first, "acquire")
    assert ask(lord, "release")[1]
    assert ask(second, "acquire")[1] is False
    assert ask(first, "acquire")[1] is True


def test_renew_takes_back_a_lease_a_restarted_redis_lost(tmp_path: Path) -> None:
    with RedisServer(tmp_path) as redis:
        a = client(redis.port, "a" * 32 + " a")
        assert ask(a, "acquire")[1]
        redis.stop()
        assert ask(a, "renew")[1:3] == (False, "")  # unreachable
        redis.start()
        assert ask(a, "renew") == (1, True, "a", "")  # empty: nobody else has it


def test_auth_with_the_password_from_the_environment(tmp_path: Path) -> None:
    with RedisServer(tmp_path) as redis:
        redis.call("CONFIG", "SET", "requirepass", "s3cret")
        assert ask(client(redis.port, make_token(), password="s3cret"), "acquire")[1]
        _, held, _, error = ask(client(redis.port, make_token()), "acquire")
        assert not held and "NOAUTH" in error


def test_a_1gb_reply_is_cut_at_max_reply(tmp_path: Path) -> None:
    sent = [0]

    def huge(conn: socket.socket) -> None:
        conn.sendall(b"$1000000000\r\n")
        for _ in range(16384):
            conn.sendall(b"x" * 65536)
            sent[0] += 65536

    with FakeRedis(huge) as fake:
        c = Connection(Address("127.0.0.1", fake.port, None), time.monotonic() + 5)
        with pytest.raises(RedisError, match=f"reply larger than {MAX_REPLY} bytes"):
            c.call(time.monotonic() + 5, "PING")
        c.close()
    assert sent[0] < 64 * 1024 * 1024  # it stopped sending once pidone hung up


def test_a_reply_that_never_comes_ends_at_the_deadline() -> None:
    with FakeRedis(lambda conn: time.sleep(10)) as fake:
        c = Connection(Address("127.0.0.1", fake.port, None), time.monotonic() + 5)
        began = time.monotonic()
        with pytest.raises((RedisError, TimeoutError)):
            c.call(time.monotonic() + 0.3, "PING")
        assert time.monotonic() - began < 2.0  # the deadline, not the server, decides
        c.close()


@pytest.mark.parametrize(
    "reply",
    [b"HTTP/1.1 200 OK\r\n\r\n", b"*100\r\n", b"*2\r\n*1\r\n:1\r\n", b":12x\r\n", b"$3\r\nabcXY",
     b"+" + b"a" * 5000 + b"\r\n"],
)  # fmt: skip
def test_a_garbled_reply_is_refused(reply: bytes) -> None:
    with FakeRedis(lambda conn: conn.sendall(reply)) as fake:
        c = Connection(Address("127.0.0.1", fake.port, None), time.monotonic() + 5)
        with pytest.raises(RedisError):
            c.call(time.monotonic() + 2, "PING")
        c.close()


def test_a_holder_name_from_redis_is_made_printable_and_short() -> None:
    assert holder_of("ab\x1b[31mevil\n" + "x" * 100)[:8] == "ab?[31me"
    assert len(holder_of("t " + "y" * 500)) <= 67
    assert holder_of("") == ""


def test_a_unix_socket_and_a_database_number(tmp_path: Path) -> None:
    sock = tmp_path / "redis.sock"
    with RedisServer(tmp_path, extra=("--unixsocket", str(sock))):
        address = Address(None, 6379, str(sock), db=3)
        c = LeaseClient(address, KEY, token="t" * 32 + " unix", priority=0, ttl=5.0,
                        candidate_ttl=2.0, wake=lambda: None)  # fmt: skip
        c.submit(1, "acquire", time.monotonic() + 2)
        deadline = time.monotonic() + 5
        while not (answers := c.take()) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert answers == [(1, True, "unix", "")]
        probe = Connection(address, time.monotonic() + 2)  # SELECT 3 on connect, as the client
        assert probe.call(time.monotonic() + 2, "EXISTS", KEY) == 1
        probe.close()
        c.close(1)
