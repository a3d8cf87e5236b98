"""Parsing /proc/PID/stat, whose second field is a command name that may
hold spaces and parentheses."""

from __future__ import annotations

from pidone.proctree import CLOCK_TICKS, PAGE_SIZE, parse_stat


def stat_line(comm: str) -> bytes:
    # fields 3..: state ppid pgrp session tty tpgid flags minflt cminflt majflt
    # cmajflt utime stime cutime cstime priority nice threads itrealvalue
    # starttime vsize rss ...
    rest = "S 41 42 42 0 -1 4194560 100 0 0 0 250 50 30 20 20 0 1 0 123456 9000000 2048 rest"
    return f"4242 ({comm}) {rest}\n".encode()


def test_fields_after_a_plain_name() -> None:
    s = parse_stat(stat_line("uwsgi"))
    assert s.ppid == 41
    assert s.cpu_seconds == (250 + 50 + 30 + 20) / CLOCK_TICKS
    assert s.start_ticks == 123456
    assert s.vsize == 9000000
    assert s.resident_bytes == 2048 * PAGE_SIZE


def test_a_name_with_spaces_and_parentheses_does_not_shift_the_fields() -> None:
    s = parse_stat(stat_line("celery ) (worker 1) S 7 7"))
    assert s.ppid == 41
    assert s.resident_bytes == 2048 * PAGE_SIZE
