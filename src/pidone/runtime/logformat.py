"""Cutting child output into whole lines and formatting them (pure): the
text prefix (`web    | `, coloured on a terminal), one JSON object per
line, or raw (the lines as written; pidone's own events still prefixed).
The relay in logs.py feeds these; they never touch an fd."""

from __future__ import annotations

import json
import time
import zlib
from collections.abc import Callable, Iterable
from typing import Literal

from pidone.config.specs import LOG_FORMATS, LogFormat

Stream = Literal["stdout", "stderr"]

PIDONE_NAME = "pidone"
MAX_PARTIAL = 64 * 1024

_RESET = b"\x1b[0m"
_PIDONE_COLOR = b"\x1b[1m"  # bold, default colour: set apart from every process
_PALETTE = [b"\x1b[%dm" % code for code in (36, 33, 32, 35, 34, 96, 93, 92, 95, 94, 31, 91)]


# --- framing (pure) -------------------------------------------------------


def _utf8_cut(data: bytes) -> int:
    """Where to cut `data` so that no UTF-8 character is split: its length,
    or the start of an incomplete multi-byte sequence at its end."""
    end = len(data)
    for back in range(1, min(4, end) + 1):
        byte = data[end - back]
        if byte & 0xC0 == 0x80:  # continuation byte: keep looking for the lead
            continue
        if byte < 0xC0:  # ASCII
            return end
        needed = 2 if byte < 0xE0 else 3 if byte < 0xF0 else 4
        return end - back if back < needed else end
    return end


def _cut_long_lines(buf: bytes) -> bytes:
    """`buf` with a newline added wherever a line would be longer than
    MAX_PARTIAL bytes: after MAX_PARTIAL bytes, or a little earlier so as
    not to split a UTF-8 character. One rfind per MAX_PARTIAL bytes (each
    window's last newline, searched in C), not a loop per line."""
    pieces = []
    start = 0  # of what is not in pieces yet
    line = 0  # start of the line being looked at
    while len(buf) - line > MAX_PARTIAL:
        newline = buf.rfind(b"\n", line, line + MAX_PARTIAL + 1)
        if newline >= 0:  # every line up to it is short enough
            line = newline + 1
            continue
        cut = line + (_utf8_cut(buf[line : line + MAX_PARTIAL]) or MAX_PARTIAL)
        pieces += [buf[start:cut], b"\n"]
        start = line = cut
    if not pieces:
        return buf
    pieces.append(buf[start:])
    return b"".join(pieces)


class Framer:
    """Cuts a byte stream into whole lines of at most MAX_PARTIAL bytes (the
    newline not counted); keeps the partial last line."""

    __slots__ = ("partial",)

    def __init__(self) -> None:
        self.partial = b""

    def feed(self, data: bytes) -> bytes:
        """Whole lines (each ending in a newline) that `data` completes; b"" if none.
        A line longer than MAX_PARTIAL goes out in pieces of MAX_PARTIAL bytes
        (fewer only to keep a UTF-8 character whole), each as a line."""
        buf = self.partial + data if self.partial else data
        if len(buf) > MAX_PARTIAL:
            buf = _cut_long_lines(buf)
        end = buf.rfind(b"\n") + 1
        self.partial = buf[end:]  # at most MAX_PARTIAL bytes now
        return buf[:end] if end < len(buf) else buf

    def flush(self) -> bytes:
        """The partial line as a whole line (EOF, drain, an event about its
        exited process)."""
        if not self.partial:
            return b""
        line, self.partial = self.partial + b"\n", b""
        return line

    def discard(self) -> int:
        """Forget the partial line (its rest was dropped); its length."""
        size, self.partial = len(self.partial), b""
        return size


# --- formatting (pure) ----------------------------------------------------

# What JSON strings cannot hold raw (the newline is our line separator).
_JSON_ESCAPES = {byte: b"\\u%04x" % byte for byte in range(32) if byte != 10}
_JSON_ESCAPES.update({8: b"\\b", 9: b"\\t", 12: b"\\f", 13: b"\\r", 34: b'\\"', 92: b"\\\\"})
_JSON_PLAIN = bytes(byte for byte in range(256) if byte not in _JSON_ESCAPES)


def _json_escape(data: bytes) -> bytes:
    """Escape valid UTF-8 for a JSON string, newlines excepted.

    One translate() lists the bytes that need escaping (usually none), then
    one replace() per distinct such byte: several times faster on big chunks
    than json's own escaper, which goes character by character. Safe on
    bytes because no byte below 0x80 occurs inside a UTF-8 sequence.
    """
    present = set(data.translate(None, _JSON_PLAIN))
    if not present:
        return data
    if 92 in present:  # first: the other escapes add backslashes
        data = data.replace(b"\\", b"\\\\")
        present.discard(92)
    for byte in present:
        data = data.replace(bytes((byte,)), _JSON_ESCAPES[byte])
    return data


class Formatter:
    """Turns whole lines of one (process, stream) into output bytes."""

    def __init__(
        self,
        fmt: LogFormat,
        names: Iterable[str],
        *,
        color: Callable[[Stream], bool],
        clock: Callable[[], float] = time.time,
    ) -> None:
        if fmt not in LOG_FORMATS:
            *first, last = map(repr, LOG_FORMATS)
            raise ValueError(f"unknown log format {fmt!r}: use {', '.join(first)} or {last}")
        self.fmt = fmt
        ordered = [PIDONE_NAME, *(n for n in names if n != PIDONE_NAME)]
        self._order = {name: i - 1 for i, name in enumerate(ordered)}
        self.width = max(len(n) for n in ordered)
        self._color = color
        self._clock = clock
        self._prefixes: dict[tuple[str, Stream], bytes] = {}
        self._json_heads: dict[tuple[str, Stream], bytes] = {}
        self._second = -1
        self._second_text = ""

    def add_names(self, names: Iterable[str]) -> None:
        """Processes added since (ctl update): each its colour, and the
        prefixes padded to the longest name from now on."""
        for name in names:
            self._order.setdefault(name, len(self._order) - 1)
            if len(name) > self.width:
                self.width = len(name)
                self._prefixes.clear()

    def _color_of(self, name: str) -> bytes:
        # Colours by position in the configuration, so that up to a dozen
        # processes all differ; names that were not configured hash to one.
        if name == PIDONE_NAME:
            return _PIDONE_COLOR
        index = self._order.get(name)
        if index is None:
            index = zlib.crc32(name.encode("utf-8", "replace"))
        return _PALETTE[index % len(_PALETTE)]

    def prefix(self, name: str, stream: Stream) -> bytes:
        key = (name, stream)
        prefix = self._prefixes.get(key)
        if prefix is None:
            text = f"{name.ljust(self.width)} | ".encode("utf-8", "replace")
            if self._color(stream):
                text = self._color_of(name) + text + _RESET
            prefix = self._prefixes[key] = text
        return prefix

    def timestamp(self) -> str:
        """ISO 8601 UTC with milliseconds; strftime only once a second."""
        now = self._clock()
        second = int(now)
        if second != self._second:
            self._second = second
            self._second_text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self._second_text}.{int((now - second) * 1000):03d}Z"

    def lines(self, name: str, stream: Stream, data: bytes) -> bytes:
        """`data` is whole lines, the last one ending in a newline."""
        if self.fmt == "json":
            return self._json_lines(name, stream, data)
        if self.fmt == "raw":
            return data
        return self._prefixed(name, stream, data)

    def _prefixed(self, name: str, stream: Stream, data: bytes) -> bytes:
        prefix = self.prefix(name, stream)
        # One replace per chunk instead of a loop per line: this is what
        # makes hundreds of MB/s possible in Python. (Slicing off the last
        # newline is 4x cheaper than bytes.count() to spare it.)
        return prefix + data[:-1].replace(b"\n", b"\n" + prefix) + b"\n"

    def _json_lines(self, name: str, stream: Stream, data: bytes) -> bytes:
        key = (name, stream)
        rest = self._json_heads.get(key)
        if rest is None:
            rest = self._json_heads[key] = (
                f'","process":{json.dumps(name)},"stream":"{stream}","message":"'
            ).encode()
        head = b'{"time":"' + self.timestamp().encode("ascii") + rest
        # The whole chunk at once, in bytes: make it valid UTF-8, escape it,
        # then turn each newline into "end of this object, start of the
        # next". Per-line json.dumps would be ten times slower.
        body = data[:-1]
        if not body.isascii():
            body = body.decode("utf-8", "replace").encode("utf-8")
        body = _json_escape(body)
        return head + body.replace(b"\n", b'"}\n' + head) + b'"}\n'

    def event(self, name: str, stream: Stream, message: str) -> bytes:
        text = message.encode("utf-8", "replace").decode("utf-8").rstrip("\n")
        if self.fmt == "json":
            record = {"time": self.timestamp(), "process": name, "stream": stream, "event": text}
            return (json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n").encode()
        # raw too: an event must say which process it is about
        return self._prefixed(name, stream, text.encode("utf-8") + b"\n")
