"""`.env` parsing and ${VAR} expansion."""

from __future__ import annotations

import pytest

from pidone.config import envfile
from pidone.errors import ConfigError


def problems_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        envfile.parse(text, ".env")
    return caught.value.problems


# --- expand ---------------------------------------------------------------------

ENV = {"HOME": "/root", "EMPTY": "", "USER": "app"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("${HOME}/bin", "/root/bin"),
        ("$HOME/bin", "/root/bin"),
        ("$USER_x", ""),  # the name runs as far as name characters go
        ("${USER}_x", "app_x"),
        ("${MISSING}", ""),
        ("$MISSING-x", "-x"),
        ("${MISSING:-fallback}", "fallback"),
        ("${EMPTY:-fallback}", "fallback"),  # ":-" also replaces an empty value
        ("${USER:-fallback}", "app"),
        ("${MISSING:-${USER}-2}", "app-2"),  # the default is expanded too
        ("${MISSING:-}", ""),
        # Without ":", only "unset" counts: an empty value stays.
        ("${MISSING-fallback}", "fallback"),
        ("${EMPTY-fallback}", ""),
        ("${USER-fallback}", "app"),
        # = and := assign, for the rest of this text.
        ('${PORT:="3000"} $PORT', '"3000" "3000"'),  # quotes are text here, as in .env
        ("${MISSING:=x}-$MISSING", "x-x"),
        ("${EMPTY:=x}-$EMPTY", "x-x"),
        ("${EMPTY=x}-$EMPTY", "-"),
        ("${USER:=x}", "app"),
        # ? and :? pass a set value through (the error cases are below).
        ("${USER:?must be set}", "app"),
        ("${EMPTY?must be set}", ""),
        # + and :+ give the word when the variable is set (non-empty for :+).
        ("${USER:+yes}", "yes"),
        ("${EMPTY:+yes}", ""),
        ("${EMPTY+yes}", "yes"),
        ("${MISSING+yes}", ""),
        # Length.
        ("${#FILE}", "15"),
        ("${#MISSING}", "0"),
        # Pattern removal: shortest and longest suffix, shortest and longest prefix.
        ("${FILE%.*}", "/srv/app.tar"),
        ("${FILE%%.*}", "/srv/app"),
        ("${FILE#*/}", "srv/app.tar.gz"),
        ("${FILE##*/}", "app.tar.gz"),
        ("${FILE%.gz}", "/srv/app.tar"),
        ("${FILE%.zip}", "/srv/app.tar.gz"),  # no match: unchanged
        ("${FILE#/srv/???}", ".tar.gz"),
        ("${FILE##*[.]}", "gz"),
        ("${FILE%%[!/]*}", "/"),  # the longest suffix that starts with a non-/
        ("${FILE##/[[:alpha:]]*/}", "app.tar.gz"),
        ("${FILE%\\.gz}", "/srv/app.tar"),  # a backslash quotes one character
        ("${STARS#\\*}", "*b*"),
        ("${STARS##*}", ""),
        ("${FILE%${EXT}}", "/srv/app.tar"),  # the pattern is expanded first
        ("${MISSING%x}", ""),
        # Words not used are not expanded: no error from the ? inside.
        ("${USER:-${NOPE:?never}}", "app"),
        ("${MISSING:+${NOPE:?never}}", ""),
        ("$$HOME", "$HOME"),
        ("cost: 5$$", "cost: 5$"),
        ("$(date) $1 $ end$", "$(date) $1 $ end$"),  # left as text
        ("no dollar", "no dollar"),
        ("", ""),
    ],
)
def test_expand(text: str, expected: str) -> None:
    env = {**ENV, "FILE": "/srv/app.tar.gz", "STARS": "**b*", "EXT": ".gz"}
    assert envfile.expand(text, env) == expected


def test_an_assignment_does_not_outlive_its_text() -> None:
    env: dict[str, str] = {}
    assert envfile.expand("${A:=1}", env) == "1"
    assert env == {}
    assert envfile.expand("${A}", env) == ""


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("${MISSING?}", "MISSING is not set: it must be set"),
        ("${MISSING:?set it in .env}", "MISSING is not set: set it in .env"),
        ("${EMPTY:?set it in .env}", "EMPTY is empty: set it in .env"),
        ("x ${MISSING:-${DB:?the database URL}}", "DB is not set: the database URL"),
    ],
)
def test_a_question_mark_form_refuses_an_unset_value_with_its_message(
    text: str, message: str
) -> None:
    with pytest.raises(ValueError) as caught:
        envfile.expand(text, ENV)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("${HOME", '"${HOME" must be followed by "}" or an operator'),
        ("${HOME!x}", '"${HOME" must be followed by "}" or an operator'),
        ("${#HOME:-x}", '"${#HOME" must be followed by "}" or an operator'),
        ("${MISSING:-abc", '"${" is never closed by "}"'),
        ("${1abc}", '"${1abc}" does not start with a variable name'),
        ("${}", '"${}" does not start with a variable name'),
        ("${#}", '"${#}" does not start with a variable name'),
    ],
)
def test_expand_rejects_malformed_references(text: str, fragment: str) -> None:
    with pytest.raises(ValueError) as caught:
        envfile.expand(text, ENV)
    assert fragment in str(caught.value)
    assert str(caught.value).endswith(envfile.EXPANSION_RULE)


# --- parse -----------------------------------------------------------------------


def test_parse_every_form() -> None:
    text = """\
# a comment

PLAIN=value
SPACED = spaced value
export EXPORTED=yes
SINGLE='literal $HOME \\n # not a comment'
DOUBLE="line1\\nline2 \\"quoted\\" back\\\\slash tab\\t dollar\\$ ${PLAIN}"
UNQUOTED=a$PLAIN # trailing comment
HASH=a#b
EMPTY=
EMPTY_QUOTED=""
AFTER_QUOTE="x"   # comment after quotes
UNKNOWN_ESCAPE="\\d"
"""
    assert envfile.parse(text, ".env") == {
        "PLAIN": "value",
        "SPACED": "spaced value",
        "EXPORTED": "yes",
        "SINGLE": "literal $HOME \\n # not a comment",
        "DOUBLE": 'line1\nline2 "quoted" back\\slash tab\t dollar$ value',
        "UNQUOTED": "avalue",
        "HASH": "a#b",
        "EMPTY": "",
        "EMPTY_QUOTED": "",
        "AFTER_QUOTE": "x",
        "UNKNOWN_ESCAPE": "\\d",
    }


def test_parse_keeps_file_order_and_later_keys_win() -> None:
    result = envfile.parse("B=1\nA=2\nB=3\n", ".env")
    assert list(result.items()) == [("B", "3"), ("A", "2")]


def test_expansion_uses_earlier_keys_then_environ() -> None:
    text = 'HOME_BIN="${HOME}/bin"\nHOME=/srv\nAGAIN=${HOME}/bin\n'
    assert envfile.parse(text, ".env", environ={"HOME": "/root"}) == {
        "HOME_BIN": "/root/bin",
        "HOME": "/srv",
        "AGAIN": "/srv/bin",
    }


def test_quoted_values_span_lines() -> None:
    text = "CERT=\"-----BEGIN-----\nabc  \n-----END-----\"\nNEXT='a\nb'\nLAST=1\n"
    assert envfile.parse(text, ".env") == {
        "CERT": "-----BEGIN-----\nabc  \n-----END-----",
        "NEXT": "a\nb",
        "LAST": "1",
    }


def test_every_bad_line_reported_with_its_line() -> None:
    text = """\
GOOD=1
no equals sign here
1BAD=x
BAD-NAME=x
QUOTE="abc" trailing
REF=${OOPS
export
"""
    assert problems_of(text) == [
        '.env:2: "no equals sign here" is not a KEY=VALUE line; write KEY=VALUE, '
        'or start it with "#" to make it a comment',
        '.env:3: "1BAD" is not a variable name; use letters, digits and "_", '
        "not starting with a digit",
        '.env:4: "BAD-NAME" is not a variable name; use letters, digits and "_", '
        "not starting with a digit",
        '.env:5: QUOTE: unexpected "trailing" after the closing "; put everything inside '
        "the quotes, or start a comment with #",
        '.env:6: REF: "${OOPS" must be followed by "}" or an operator '
        f"(:- - := = :? ? :+ + % %% # ##); {envfile.EXPANSION_RULE}",
        '.env:7: "export" is not a KEY=VALUE line; write KEY=VALUE, '
        'or start it with "#" to make it a comment',
    ]


def test_unclosed_quote_is_reported_at_its_opening_line() -> None:
    assert problems_of("A=1\nB='never closed\nC=2\n") == [
        ".env:2: B: the opening ' is never closed; add the closing '"
    ]


# --- bounds: no .env can exhaust memory, the stack or the CPU --------------------------------


def test_default_nested_3000_deep_is_refused_not_a_recursion_error() -> None:
    text = "A=" + "${A:-" * 3000 + "x" + "}" * 3000 + "\n"
    assert problems_of(text) == [".env:1: A: ${...} nested more than 16 deep; write it flatter"]


def test_default_nested_16_deep_still_expands() -> None:
    text = "${A:-" * 16 + "x" + "}" * 16
    assert envfile.expand(text, {}) == "x"


def test_a_value_doubled_40_times_stops_at_128_kib_with_its_line() -> None:
    text = "A=0123456789ab\n" + "A=${A}${A}\n" * 40  # 455 bytes; 12 TiB unbounded
    found = problems_of(text)
    assert found[0] == (
        ".env:15: A: expands to more than 128 KiB (the kernel's limit for one environment "
        "value or argument); use fewer or shorter ${VAR} references"
    )
    assert len(found) == 27  # lines 15..41: each refused, none grown


def test_many_large_values_stop_at_the_budget_of_the_whole_load() -> None:
    big = "x" * (100 * 1024)
    text = f"B={big}\n" + "".join(f"V{n}=${{B}}\n" for n in range(60))
    found = problems_of(text)
    assert found[0].startswith(".env:41: V39: the expanded values add up to more than 4 MiB")
    assert len(found) == 1  # parsing stops there: nothing more is built


def test_expand_counts_against_a_shared_budget() -> None:
    budget = envfile.Budget(total=10)
    assert envfile.expand("${A}", {"A": "12345"}, budget) == "12345"
    with pytest.raises(ValueError, match="add up to more than"):
        envfile.expand("${A}${A}", {"A": "12345"}, budget)


def test_520_kb_with_one_unclosed_quote_is_reported_at_once() -> None:
    text = 'A="' + ("x" * 50 + "\n") * 10_400  # 530 KB: 105 s with a rescan per line
    found = problems_of(text)
    assert found == ['.env:1: A: the opening " is never closed; add the closing "']


def test_a_quoted_value_over_many_lines_keeps_escapes_across_line_breaks() -> None:
    text = 'A="one\\\n' + "two\\\\\n" + 'three \\" still"\nB=after\n'
    assert envfile.parse(text, ".env") == {"A": 'one\\\ntwo\\\nthree " still', "B": "after"}


def test_nul_in_a_value_is_refused_with_its_line() -> None:
    assert problems_of("OK=1\nA=a\0b\n") == [
        ".env:2: A: holds a NUL character, which no value can; remove it"
    ]


def test_a_pattern_longer_than_1024_characters_is_refused() -> None:
    with pytest.raises(ValueError) as caught:
        envfile.expand("${A%" + "x" * 1025 + "}", {"A": "x"})
    assert str(caught.value) == (
        "the pattern of ${NAME%...} is longer than 1024 characters; use a shorter one"
    )


def test_the_values_patterns_scan_count_against_the_budget() -> None:
    # ${B%%*} expands to nothing, yet scans all of B: the third scan is past the total.
    big = {"B": "x" * 1000}
    budget = envfile.Budget(total=2500)
    assert envfile.expand("${B%%*}", big, budget) == ""
    assert envfile.expand("${B%%*}", big, budget) == ""
    with pytest.raises(ValueError, match="add up to more than"):
        envfile.expand("${B%%*}", big, budget)


def test_a_backtracking_pattern_matches_in_one_pass() -> None:
    # A regex engine would try ~n**5 ways; shift-and keeps one state set per character.
    value = "a" * (128 * 1024)
    assert envfile.expand("${V##*a*a*a*a*b}", {"V": value}) == value
    assert envfile.expand("${V%%a*a*a*a*a}", {"V": value}) == ""
