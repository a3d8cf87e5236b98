"""bench/pidbench/measures/logs.py: what counts as a line lost, on output
built from children/log_writer.py's own lines (the log relay target judges it)."""

from __future__ import annotations

from pidbench.children.log_writer import line, payload
from pidbench.measures.logs import check_lines, payload_bytes

COUNTS = {0: 5, 1: 4}


def written(writer: int) -> list[bytes]:
    return [line(writer, seq) for seq in range(COUNTS[writer])]


def everything() -> list[bytes]:
    return written(0) + written(1)


def test_every_line_as_written_none_lost() -> None:
    assert check_lines(b"".join(everything()), COUNTS) == 0


def test_lines_behind_a_prefix_or_inside_json_are_intact() -> None:
    prefixed = b"".join(b"w%d | " % int(raw[1:2]) + raw for raw in everything())
    assert check_lines(prefixed, COUNTS) == 0
    as_json = b"".join(b'{"process": "w", "line": "' + raw[:-1] + b'"}\n' for raw in everything())
    assert check_lines(as_json, COUNTS) == 0
    assert check_lines(b"".join(raw[:-1] + b"\r\n" for raw in everything()), COUNTS) == 0


def test_a_missing_line_is_lost() -> None:
    lines = everything()
    del lines[3]
    assert check_lines(b"".join(lines), COUNTS) == 1
    assert check_lines(b"", COUNTS) == 9


def test_a_damaged_line_is_lost() -> None:
    lines = everything()
    lines[2] = lines[2][:-4] + b"\n"  # its filler cut short
    lines[6] = lines[6].replace(b"W1 ", b"W0 ")  # another writer's number on it
    assert check_lines(b"".join(lines), COUNTS) == 2


def test_two_writers_cutting_into_each_other_lose_both_lines() -> None:
    a, b = line(0, 0), line(1, 0)
    cut = a[:10] + b + a[10:]
    rest = b"".join(everything()[1:5] + everything()[6:])
    assert check_lines(cut + rest, COUNTS) == 2


def test_a_line_twice_counts_as_lost_once_more() -> None:
    lines = everything()
    assert check_lines(b"".join([*lines, lines[0]]), COUNTS) == 1


def test_lines_beyond_what_was_written_are_not_counted() -> None:
    extra = line(0, COUNTS[0]) + line(7, 0)
    lines = everything()
    del lines[0]
    assert check_lines(b"".join(lines) + extra, COUNTS) == 1


def test_payload_bytes_is_what_the_writers_wrote() -> None:
    assert payload_bytes(COUNTS) == len(b"".join(everything()))
    data, count = payload(3, 1)
    assert len(data) >= 1024 * 1024
    assert payload_bytes({3: count}) == len(data)
