"""A legion's lease in redis: a small RESP client in a thread of its own.

The loop hands a LeaseClient a request (acquire, renew, release) with a
deadline on the monotonic clock and never waits: the thread connects, asks,
reads the answer and puts it in a list the loop takes after wake() (a
SIGCHLD to the loop's thread, as the other side threads do). Every reply is
hostile: at most MAX_REPLY bytes in all, MAX_ITEMS array items, lines of at
most MAX_LINE bytes, and nothing after the deadline (the socket's timeout is
what is left of it). Any failure closes the connection; the next request
opens a new one. One request at a time: the core never sends a second
before the first is answered or late.

Own RESP, not redis-py: these are four commands (AUTH, SELECT, EVAL, and
the replies to them), about 150 lines with every bound in sight, and
pidone's venv stays free of dependencies. Measured (Debian's Python 3.11):
redis-py 8.1 takes 112-127 ms to import and a bare interpreter's RSS from
8.2 to 29.4 MiB; `pidone run` with 3 sleepers goes from 19.9 to 20.4 MiB
RSS with one legion (this module and its thread).

The keys (NAME the legion's):
    pidone:legion:NAME             the lease: the lord's token, PX ttl
    pidone:legion:NAME:candidates  a hash: token -> "PRIORITY EXPIRY_MS" of
                                   each live candidate, EXPIRY on redis's clock
A token is 32 hex digits (16 random bytes) and the hostname, for display.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

MAX_REPLY = 64 * 1024  # bytes of one reply, everything included
MAX_LINE = 1024  # bytes of a status, error, integer or length line
MAX_ITEMS = 8  # elements of an array reply (ours have 2), nesting 1
MAX_HOLDER = 64  # characters of a holder's name shown

# Three keys per legion: the lease (KEYS[1], the lord's token, PX ttl), the
# candidates (KEYS[2], a hash token -> "priority expiry-ms", on redis's
# clock) and the epoch (KEYS[1]:epoch, no expiry, set whenever a lease is
# taken; named in the script, which keeps a request within the 10 elements
# redis reads from a client that has yet to AUTH, so it answers NOAUTH):
# a lease missing while the epoch is there expired or was released; both
# missing, redis lost its data (restarted empty, a failover) and a lord may
# still run by its own clock: a standby that saw it held then only looks
# (ARGV[5] = 0) until a ttl has passed (core/legion.py).

# ACQUIRE: ours already? keep it; else announce ourselves, and if nobody
# holds it and we are the best live candidate (highest priority, then the
# smallest token), SET NX PX. Answers {1 or 0, the holder's token or ""}.
ACQUIRE = """
local v = redis.call('GET', KEYS[1])
if v == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  return {1, v}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2] .. ' ' .. (now + tonumber(ARGV[4])))
redis.call('PEXPIRE', KEYS[2], ARGV[4])
if v then return {0, v} end
if ARGV[5] ~= '1' and redis.call('EXISTS', KEYS[1] .. ':epoch') == 0 then return {0, ''} end
local best, top = nil, nil
local all = redis.call('HGETALL', KEYS[2])
for i = 1, #all, 2 do
  local p, e = string.match(all[i + 1], '^(%-?%d+) (%d+)$')
  if p == nil or tonumber(e) <= now then
    redis.call('HDEL', KEYS[2], all[i])
  else
    p = tonumber(p)
    if best == nil or p > top or (p == top and all[i] < best) then best, top = all[i], p end
  end
end
if best == ARGV[1] and redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[3]) then
  redis.call('SET', KEYS[1] .. ':epoch', '1')
  redis.call('HDEL', KEYS[2], ARGV[1])
  return {1, ARGV[1]}
end
return {0, ''}
"""

# RENEW: compare-and-set. Ours: PEXPIRE. Gone (a redis restarted empty):
# SET NX PX takes it back (a standby that saw it held waits a ttl before it
# takes a lease missing with its epoch). Another's: lost.
RENEW = """
local v = redis.call('GET', KEYS[1])
if v == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  return {1, v}
end
if not v and redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[3]) then
  redis.call('SET', KEYS[1] .. ':epoch', '1')
  return {1, ARGV[1]}
end
return {0, v or ''}
"""

# RELEASE: compare-and-delete (the epoch stays: taken at once), and no
# longer a candidate.
RELEASE = """
redis.call('HDEL', KEYS[2], ARGV[1])
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return {1, ARGV[1]}
end
return {0, ''}
"""

# The core's request kinds (core/legion.Kind) -> (script, may it take a
# lease missing with its epoch: "1", or only one that expired: "0").
SCRIPTS = {
    "acquire": (ACQUIRE, "1"),
    "look": (ACQUIRE, "0"),
    "renew": (RENEW, "0"),
    "release": (RELEASE, "0"),
}


class RedisError(Exception):
    """No usable answer: unreachable, too slow, too big, garbled, or an error reply."""


@dataclass(frozen=True)
class Address:
    host: str | None
    port: int
    path: str | None  # a unix socket instead
    db: int = 0
    password: str | None = None

    def __str__(self) -> str:
        return f"unix:{self.path}" if self.path else f"{self.host}:{self.port}"


TOKEN_HEX = 32  # the random part of a token: 16 bytes in hex
TOKEN_MAX = TOKEN_HEX + 1 + MAX_HOLDER + 3  # with " hostname" as shown() makes it


def make_token() -> str:
    """Random per pidone run, then the hostname, which others display."""
    return f"{os.urandom(TOKEN_HEX // 2).hex()} {shown(socket.gethostname())}"


def is_token(value: object) -> bool:
    """Is `value` a token as make_token() makes them (one handed over by ctl reexec)?"""
    if not isinstance(value, str) or not TOKEN_HEX + 2 <= len(value) <= TOKEN_MAX:
        return False
    digits, space, host = value[:TOKEN_HEX], value[TOKEN_HEX], value[TOKEN_HEX + 1 :]
    return set(digits) <= set("0123456789abcdef") and space == " " and host.isprintable()


def shown(text: str, limit: int = MAX_HOLDER) -> str:
    """Text from redis (anyone who can write to it chose it): printable, short."""
    clean = "".join(c if c.isprintable() else "?" for c in text[:limit])
    return (clean + ("..." if len(text) > limit else "")) or "?"


def holder_of(token: str) -> str:
    """The holder's hostname from its token ("" none)."""
    if not token:
        return ""
    _, _, host = token.partition(" ")
    return shown(host or token).replace(" ", "?")


def encode(*args: str | bytes) -> bytes:
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg.encode() if isinstance(arg, str) else arg
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


Value = int | bytes | None | list["Value"]


class Connection:
    """One connection, every read bounded by `deadline` (monotonic)."""

    def __init__(self, address: Address, deadline: float) -> None:
        self.buffer = b""
        self.budget = MAX_REPLY
        self.deadline = deadline
        family = socket.AF_UNIX if address.path else socket.AF_INET6
        target: str | tuple[str, int]
        if address.path:
            target = address.path
        else:
            assert address.host is not None
            info = socket.getaddrinfo(address.host, address.port, type=socket.SOCK_STREAM)
            family, _, _, _, sockaddr = info[0]
            target = (str(sockaddr[0]), int(sockaddr[1]))
        self.sock = socket.socket(family, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            self.sock.settimeout(self._left())
            self.sock.connect(target)
            if address.password is not None:
                self.call(deadline, "AUTH", address.password)
            if address.db:
                self.call(deadline, "SELECT", str(address.db))
        except BaseException:
            self.sock.close()
            raise

    def close(self) -> None:
        self.sock.close()

    def _left(self) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise RedisError("no reply in time")
        return left

    def call(self, deadline: float, *args: str | bytes) -> Value:
        self.deadline = deadline
        self.budget = MAX_REPLY
        self.sock.settimeout(self._left())
        self.sock.sendall(encode(*args))
        return self._value(depth=0)

    def _fill(self) -> None:
        self.sock.settimeout(self._left())
        data = self.sock.recv(min(65536, self.budget + 1))
        if not data:
            raise RedisError("connection closed by redis")
        self.budget -= len(data)
        if self.budget < 0:
            raise RedisError(f"reply larger than {MAX_REPLY} bytes")
        self.buffer += data

    def _line(self) -> bytes:
        while True:
            end = self.buffer.find(b"\r\n", 0, MAX_LINE + 2)
            if end >= 0:
                line, self.buffer = self.buffer[:end], self.buffer[end + 2 :]
                return line
            if len(self.buffer) > MAX_LINE:
                raise RedisError(f"reply line longer than {MAX_LINE} bytes")
            self._fill()

    def _exactly(self, size: int) -> bytes:
        while len(self.buffer) < size + 2:
            self._fill()
        data, end = self.buffer[:size], self.buffer[size : size + 2]
        if end != b"\r\n":
            raise RedisError("garbled reply: a bulk string without its CRLF")
        self.buffer = self.buffer[size + 2 :]
        return data

    def _number(self, text: bytes) -> int:
        if not text or len(text) > 20 or not text.lstrip(b"-").isdigit():
            raise RedisError(f"garbled reply: {shown(text.decode('latin-1'))!r} is no number")
        return int(text)

    def _value(self, depth: int) -> Value:
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest
        if kind == b"-":
            raise RedisError(f"redis: {shown(rest.decode('latin-1'), MAX_LINE // 8)}")
        if kind == b":":
            return self._number(rest)
        if kind == b"$":
            size = self._number(rest)
            if size < 0:
                return None
            if size > MAX_REPLY:
                raise RedisError(f"reply larger than {MAX_REPLY} bytes")
            return self._exactly(size)
        if kind == b"*":
            count = self._number(rest)
            if count < 0:
                return None
            if count > MAX_ITEMS or depth > 0:
                raise RedisError(f"garbled reply: an array of {count} items")
            return [self._value(depth + 1) for _ in range(count)]
        raise RedisError(f"garbled reply: starts with {shown(line[:16].decode('latin-1'))!r}")


# (id, held, holder, error): the answer to the request with that id.
Answer = tuple[int, bool, str, str]


class LeaseClient:
    """One legion's requests, carried out by a daemon thread."""

    def __init__(
        self,
        address: Address,
        key: str,
        *,
        token: str,
        priority: int,
        ttl: float,
        candidate_ttl: float,
        wake: Callable[[], None],
    ) -> None:
        self.address = address
        self.keys = (key, key + ":candidates")
        self.token = token
        self.priority = str(priority)
        self.ttl_ms = str(max(1, round(ttl * 1000)))
        self.candidate_ms = str(max(1, round(candidate_ttl * 1000)))
        self.wake = wake
        self.connection: Connection | None = None
        self.answers: deque[Answer] = deque()
        self.todo: deque[tuple[int, str, float] | None] = deque()
        self.ready = threading.Condition()
        self.thread = threading.Thread(target=self._run, name=f"redis {key}", daemon=True)
        self.thread.start()

    def submit(self, request_id: int, kind: str, deadline: float) -> None:
        with self.ready:
            self.todo.append((request_id, kind, deadline))
            self.ready.notify()

    def take(self) -> list[Answer]:
        taken = []
        while self.answers:
            taken.append(self.answers.popleft())
        return taken

    def close(self, timeout: float) -> None:
        """Finish what was asked (a release), at most `timeout` seconds more."""
        with self.ready:
            self.todo.append(None)
            self.ready.notify()
        self.thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self.ready:
                while not self.todo:
                    self.ready.wait()
                job = self.todo.popleft()
            if job is None:
                if self.connection is not None:
                    self.connection.close()
                return
            request_id, kind, deadline = job
            if time.monotonic() >= deadline:  # waited behind a stuck one: the core gave up
                continue
            self.answers.append((request_id, *self._ask(kind, deadline)))
            self.wake()

    def _ask(self, kind: str, deadline: float) -> tuple[bool, str, str]:
        try:
            if self.connection is None:
                self.connection = Connection(self.address, deadline)
            script, take = SCRIPTS[kind]
            args = (self.token, self.priority, self.ttl_ms, self.candidate_ms, take)
            value = self.connection.call(deadline, "EVAL", script, "2", *self.keys, *args)
            if (
                not isinstance(value, list)
                or len(value) != 2
                or not isinstance(value[0], int)
                or not isinstance(value[1], bytes)
            ):
                raise RedisError("garbled reply: not the script's answer")
            return value[0] == 1, holder_of(value[1].decode("utf-8", "replace")), ""
        except Exception as exc:  # whatever it was, an answer: the thread must not die
            if self.connection is not None:
                self.connection.close()
                self.connection = None
            return False, "", _why(exc, self.address)


def _why(exc: BaseException, address: Address) -> str:
    if isinstance(exc, TimeoutError | socket.timeout):
        return f"{address}: no reply in time"
    if isinstance(exc, OSError):
        return f"{address}: {exc.strerror or exc}"
    if isinstance(exc, RedisError):
        return f"{address}: {exc}"
    return f"{address}: {type(exc).__name__}: {shown(str(exc))}"  # a bug of ours
