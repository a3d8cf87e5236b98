"""pidone's own expander (envfile.expand: .env and `environment` values,
readiness targets) against /bin/sh itself: every POSIX parameter expansion
gives what `sh -c 'printf %s "TEXT"'` gives from the same environment."""

from __future__ import annotations

import subprocess

import pytest

from pidone.config import envfile

ENV = {
    "FILE": "/srv/app.tar.gz",
    "EMPTY": "",
    "PORT": "5100",
    "STARS": "**b*",
    "EXT": ".gz",
    "WORDS": "a b  c",
}
FORMS = [
    "$FILE ${FILE} $MISSING ${MISSING}",
    "${MISSING-d} ${EMPTY-d} ${FILE-d}",
    "${MISSING:-d} ${EMPTY:-d} ${FILE:-d}",
    "${MISSING=d}:$MISSING ${EMPTY=d}:$EMPTY",
    "${MISSING:=d}:$MISSING ${EMPTY:=d}:$EMPTY ${PORT:=3000}",
    "${FILE?x} ${EMPTY?x} ${FILE:?x}",
    "${MISSING+w} ${EMPTY+w} ${FILE+w} ${MISSING:+w} ${EMPTY:+w} ${FILE:+w}",
    "${#FILE} ${#EMPTY} ${#MISSING} ${#WORDS}",
    "${FILE%.*} ${FILE%%.*} ${FILE#*/} ${FILE##*/}",
    "${FILE%.zip} ${FILE#/srv/???} ${FILE##*[.]} ${FILE%%[!/]*}",
    "${FILE##/[[:alpha:]]*/} ${FILE%[a-z][a-z]} ${FILE#[!/]} ${FILE%${EXT}}",
    "${STARS#\\*} ${STARS##*} ${STARS%\\*} ${STARS%%b*}",
    "${MISSING:-${FILE##*/}} ${FILE:+${PORT}0}",
    "${WORDS} x${EMPTY}y",
]


@pytest.mark.parametrize("text", FORMS)
def test_pidones_expansion_is_the_shells(text: str) -> None:
    shell = subprocess.run(
        ["/bin/sh", "-c", f'printf %s "{text}"'],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    )
    assert envfile.expand(text, ENV) == shell.stdout
