"""Log relay framing and formatting: pure, no pipes, no children."""

from __future__ import annotations

import json
import random
import re

import pytest

from pidone.runtime.logformat import MAX_PARTIAL, Formatter, Framer, Stream

ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def text_formatter(*names: str, color: bool = False) -> Formatter:
    return Formatter("text", names, color=lambda stream: color)


def json_formatter(*names: str, clock: float = 1700000000.25) -> Formatter:
    return Formatter("json", names, color=lambda stream: False, clock=lambda: clock)


def json_lines(out: bytes) -> list[dict[str, str]]:
    assert out.endswith(b"\n")
    return [json.loads(line) for line in out.split(b"\n")[:-1]]


# --- framing ---------------------------------------------------------------


def test_whole_lines_pass_through_in_one_piece() -> None:
    framer = Framer()
    assert framer.feed(b"one\ntwo\n") == b"one\ntwo\n"
    assert framer.partial == b""


def test_partial_line_waits_for_its_newline_across_reads() -> None:
    framer = Framer()
    assert framer.feed(b"one\ntw") == b"one\n"
    assert framer.feed(b"o-and-") == b""
    assert framer.feed(b"more\nthree") == b"two-and-more\n"
    assert framer.partial == b"three"
    assert framer.flush() == b"three\n"
    assert framer.flush() == b""


def test_fed_one_byte_at_a_time_gives_the_same_lines() -> None:
    text = b"alpha\n\nbeta gamma\n" + b"x" * 1000 + b"\nend"
    framer = Framer()
    out = b"".join(framer.feed(text[i : i + 1]) for i in range(len(text)))
    assert out == b"alpha\n\nbeta gamma\n" + b"x" * 1000 + b"\n"
    assert framer.flush() == b"end\n"


def test_partial_line_over_64_kib_is_emitted_as_its_own_line() -> None:
    framer = Framer()
    assert framer.feed(b"a" * MAX_PARTIAL) == b""  # exactly the limit still waits
    assert framer.feed(b"b") == b"a" * MAX_PARTIAL + b"\n"  # one byte more: cut at the limit
    assert framer.partial == b"b"
    assert framer.feed(b"rest\n") == b"brest\n"


def test_over_long_partial_after_whole_lines() -> None:
    framer = Framer()
    out = framer.feed(b"short\n" + b"z" * (MAX_PARTIAL + 10))
    assert out == b"short\n" + b"z" * MAX_PARTIAL + b"\n"
    assert framer.partial == b"z" * 10


def test_line_without_newline_in_one_big_read_is_cut_at_exactly_64_kib() -> None:
    # One read of the relay (256 KiB) without a newline used to go out as
    # one 256 KiB line: every piece is now exactly MAX_PARTIAL bytes.
    framer = Framer()
    out = framer.feed(b"x" * (4 * MAX_PARTIAL + 7))
    assert out.split(b"\n")[:-1] == [b"x" * MAX_PARTIAL] * 4
    assert framer.partial == b"x" * 7


def test_long_line_completed_by_a_newline_is_cut_at_exactly_64_kib() -> None:
    framer = Framer()
    assert framer.feed(b"y" * (MAX_PARTIAL - 1)) == b""
    out = framer.feed(b"y" * (MAX_PARTIAL + 2) + b"\nshort\n" + b"w" * MAX_PARTIAL + b"\n")
    lines = out.split(b"\n")[:-1]
    assert lines == [b"y" * MAX_PARTIAL, b"y" * MAX_PARTIAL, b"y", b"short", b"w" * MAX_PARTIAL]
    assert framer.partial == b""


def test_over_long_partial_is_not_cut_inside_a_utf8_character() -> None:
    euro = "€".encode()  # 3 bytes
    for keep in (1, 2):
        framer = Framer()
        out = framer.feed(b"a" * MAX_PARTIAL + euro[:keep])
        assert out == b"a" * MAX_PARTIAL + b"\n"
        assert framer.partial == euro[:keep]
        assert framer.feed(euro[keep:] + b"\n") == euro + b"\n"
    framer = Framer()  # the character straddles the limit: the cut comes before it
    out = framer.feed(b"a" * (MAX_PARTIAL - 1) + euro + b"\n")
    assert out == b"a" * (MAX_PARTIAL - 1) + b"\n" + euro + b"\n"


def test_flush_of_empty_framer_is_empty() -> None:
    assert Framer().flush() == b""


# --- text ------------------------------------------------------------------


def test_text_prefix_is_padded_to_the_longest_name_pidone_included() -> None:
    fmt = text_formatter("web", "worker-long")
    assert fmt.lines("web", "stdout", b"GET /\n") == b"web         | GET /\n"
    assert fmt.lines("worker-long", "stderr", b"x\n") == b"worker-long | x\n"
    assert fmt.event("pidone", "stdout", "web started pid 12") == (
        b"pidone      | web started pid 12\n"
    )
    short = text_formatter("a", "b")
    assert short.lines("a", "stdout", b"hi\n") == b"a      | hi\n"  # "pidone" sets the width


def test_a_longer_name_added_by_an_update_widens_every_prefix_from_then_on() -> None:
    fmt = text_formatter("web")
    assert fmt.lines("web", "stdout", b"a\n") == b"web    | a\n"
    fmt.add_names(["web", "worker-long"])  # ctl update added worker-long
    assert fmt.lines("web", "stdout", b"b\n") == b"web         | b\n"
    assert fmt.lines("worker-long", "stdout", b"c\n") == b"worker-long | c\n"
    fmt.add_names(["x"])  # a shorter one narrows nothing
    assert fmt.lines("x", "stdout", b"d\n") == b"x           | d\n"


def test_every_line_of_a_chunk_gets_the_prefix() -> None:
    fmt = text_formatter("web")
    out = fmt.lines("web", "stdout", b"one\n\nthree\n")
    assert out == b"web    | one\nweb    | \nweb    | three\n"


def test_text_keeps_bytes_as_they_are() -> None:
    fmt = text_formatter("web")
    raw = b"\xff\xfe caf\xc3\xa9 \x1b[31mred\x1b[0m\r\n"
    assert fmt.lines("web", "stdout", raw) == b"web    | " + raw


def test_events_are_formatted_like_process_lines() -> None:
    fmt = text_formatter("web")
    assert fmt.event("web", "stdout", "exited with status 1") == fmt.lines(
        "web", "stdout", b"exited with status 1\n"
    )
    assert fmt.event("pidone", "stderr", "FATAL web\nsecond line\n") == (
        b"pidone | FATAL web\npidone | second line\n"
    )


def test_colour_per_name_is_stable_distinct_and_only_on_the_prefix() -> None:
    fmt = text_formatter("web", "worker", "redis", color=True)
    prefixes = {}
    for name in ("web", "worker", "redis", "pidone"):
        out = fmt.lines(name, "stdout", b"line\n")
        match = re.fullmatch(rb"(\x1b\[[0-9;]+m)(\S+ *) \| \x1b\[0mline\n", out)
        assert match, out
        assert match.group(2).rstrip() == name.encode()
        assert fmt.lines(name, "stderr", b"other\n").startswith(match.group(1))
        prefixes[name] = match.group(1)
    assert len(set(prefixes.values())) == 4
    again = text_formatter("web", "worker", "redis", color=True)
    assert again.lines("worker", "stdout", b"line\n").startswith(prefixes["worker"])
    # An unconfigured name still gets a colour, the same every time.
    assert fmt.prefix("late", "stdout") == again.prefix("late", "stdout")


def test_colour_can_differ_between_streams() -> None:
    colours: dict[Stream, bool] = {"stdout": True, "stderr": False}
    fmt = Formatter("text", ["web"], color=lambda stream: colours[stream])
    assert fmt.lines("web", "stdout", b"x\n").startswith(b"\x1b[")
    assert fmt.lines("web", "stderr", b"x\n") == b"web    | x\n"


def test_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown log format"):
        Formatter("xml", ["web"], color=lambda stream: False)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="use 'text', 'json' or 'raw'"):
        Formatter("xml", ["web"], color=lambda stream: False)  # type: ignore[arg-type]


# --- raw -------------------------------------------------------------------


def test_raw_passes_lines_through_as_they_are() -> None:
    fmt = Formatter("raw", ["web"], color=lambda stream: True)
    data = b"GET / 200\n\xff\xfe \x1b[31mred\x1b[0m\r\n\n"
    assert fmt.lines("web", "stdout", data) == data


def test_raw_events_keep_a_prefix_to_say_whose_they_are() -> None:
    fmt = Formatter("raw", ["web"], color=lambda stream: False)
    assert fmt.event("web", "stdout", "exited with status 1") == b"web    | exited with status 1\n"
    assert fmt.event("pidone", "stderr", "FATAL web") == b"pidone | FATAL web\n"


# --- JSON ------------------------------------------------------------------


def test_json_one_object_per_line() -> None:
    fmt = json_formatter("web")
    out = fmt.lines("web", "stderr", b"one\ntwo\n")
    assert json_lines(out) == [
        {"time": "2023-11-14T22:13:20.250Z", "process": "web", "stream": "stderr", "message": m}
        for m in ("one", "two")
    ]


def test_json_time_is_utc_with_milliseconds() -> None:
    now = [1700000000.9994]
    fmt = Formatter("json", ["web"], color=lambda s: False, clock=lambda: now[0])
    assert json_lines(fmt.lines("web", "stdout", b"x\n"))[0]["time"] == "2023-11-14T22:13:20.999Z"
    now[0] = 1700000001.0
    assert json_lines(fmt.lines("web", "stdout", b"x\n"))[0]["time"] == "2023-11-14T22:13:21.000Z"
    now[0] = 0.042
    assert json_lines(fmt.lines("web", "stdout", b"x\n"))[0]["time"] == "1970-01-01T00:00:00.042Z"


def test_json_is_valid_for_every_byte_and_invalid_utf8() -> None:
    fmt = json_formatter("web")
    every_byte = bytes(b for b in range(256) if b != 10)
    lines = [
        every_byte,
        b'quote " backslash \\ \\n not a newline \\" \\\\',
        b"\xff\xfe\xc3 truncated \xe2\x82 and \xed\xa0\x80 surrogate",
        "caf\u00e9 \u20ac \U0001f600 \u2028".encode(),
        b"\x00\x01\x1f\x7f tab\there cr\r",
        b"",
    ]
    out = fmt.lines("web", "stdout", b"\n".join(lines) + b"\n")
    records = json_lines(out)
    assert [r["message"] for r in records] == [line.decode("utf-8", "replace") for line in lines]
    out.decode("utf-8")  # strictly valid UTF-8 output


def test_json_random_bytes_round_trip() -> None:
    rng = random.Random(7)
    fmt = json_formatter("web")
    for _ in range(200):
        lines = [
            bytes(rng.choice(b'\x00\x1f\\"a\xc3\xa9\xff\t\r') for _ in range(rng.randrange(12)))
            for _ in range(rng.randrange(1, 6))
        ]
        records = json_lines(fmt.lines("web", "stdout", b"\n".join(lines) + b"\n"))
        assert [r["message"] for r in records] == [
            line.decode("utf-8", "replace") for line in lines
        ]


def test_json_names_are_escaped() -> None:
    fmt = json_formatter('we"b')
    assert json_lines(fmt.lines('we"b', "stdout", b"x\n"))[0]["process"] == 'we"b'


def test_json_events_carry_event_instead_of_message() -> None:
    fmt = json_formatter("web")
    out = fmt.event("pidone", "stderr", 'web exited with status 1 "bad"\nand more')
    assert json_lines(out) == [
        {
            "time": "2023-11-14T22:13:20.250Z",
            "process": "pidone",
            "stream": "stderr",
            "event": 'web exited with status 1 "bad"\nand more',
        }
    ]
    # A lone surrogate (from an undecodable argv, say) cannot break the output.
    assert json_lines(fmt.event("web", "stdout", "bad \udcff"))[0]["event"] == "bad ?"
