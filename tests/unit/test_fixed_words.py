"""The config's fixed words (readiness kinds, log formats, stop targets,
restart policies) are spelled once, in config/specs.py; what reads them takes
the same tuples. A word added there must be reachable from a config file."""

from __future__ import annotations

import pytest

from pidone.config.specs import LOG_FORMATS, READY_KINDS, RESTART_POLICIES, STOP_TARGETS
from pidone.config.values import BadValue, choice, ready
from pidone.runtime.logformat import Formatter

# One config form for each kind: a kind without a form here fails below.
FORMS = {
    "unix": "unix:/run/app.sock",
    "tcp": "tcp:127.0.0.1:6379",
    "http": "http://127.0.0.1:8000/health",
    "file": "file:/tmp/ready",
    "exec": "exec:true",
    "notify": "notify",
    "settle": "settle:2",
    "log": "log:ready",
}


def test_every_readiness_kind_has_a_config_form() -> None:
    assert set(FORMS) == set(READY_KINDS)
    assert {kind: ready(text, {}).kind for kind, text in FORMS.items()} == {k: k for k in FORMS}


@pytest.mark.parametrize("words", [LOG_FORMATS, STOP_TARGETS, RESTART_POLICIES])
def test_the_config_takes_each_fixed_word_and_no_other(words: tuple[str, ...]) -> None:
    parse = choice(words)
    assert [parse(w) for w in words] == list(words)
    with pytest.raises(BadValue, match="must be one of " + ", ".join(f'"{w}"' for w in words)):
        parse(words[0].upper())


@pytest.mark.parametrize("fmt", LOG_FORMATS)
def test_the_relay_formats_every_log_format_the_config_takes(fmt: str) -> None:
    formatter = Formatter(fmt, ["web"], color=lambda stream: False)  # type: ignore[arg-type]
    assert formatter.fmt == fmt
