"""The one rule for a written number (digits.ascii_int): the signal parser,
ports, exit statuses and config numbers all read digits through it."""

from __future__ import annotations

import pytest

from pidone.digits import ascii_int


@pytest.mark.parametrize(
    ("text", "most", "expected"),
    [
        ("15", 20, 15),
        (" 15\t", 20, 15),  # blanks around it ignored
        ("007", 3, 7),
        ("1000", 3, None),  # more digits than allowed
        ("9" * 21, 20, None),  # no huge int parse
        ("\u00b9\u2075", 20, None),  # superscripts pass str.isdigit
        ("\u0661\u0665", 20, None),  # Arabic-Indic digits, which int() would read
        ("-1", 20, None),
        ("+1", 20, None),
        ("1_000", 20, None),  # int() would take the underscore
        ("", 20, None),
    ],
)
def test_ascii_int(text: str, most: int, expected: int | None) -> None:
    assert ascii_int(text, most=most) == expected
