"""The one signal rule (signames.signal_number), as config, `pidone ctl` and
single mode's -p/-r read it: the same forms accepted and refused everywhere."""

from __future__ import annotations

import signal

import pytest

from pidone import cli
from pidone.config.values import BadValue
from pidone.config.values import signal_number as config_signal
from pidone.errors import UsageError
from pidone.signames import signal_name, signal_number

RT = int(signal.SIGRTMIN)

ACCEPTED = [
    ("TERM", 15),
    ("sigterm", 15),
    ("SIGHUP", 1),
    (" usr1 ", 10),
    ("15", 15),
    ("064", 64),
    ("IOT", 6),  # an alias, named SIGABRT back
    ("RTMIN", RT),
    ("SIGRTMIN+3", RT + 3),
    ("rtmax-1", int(signal.SIGRTMAX) - 1),
    ("RTMAX", int(signal.SIGRTMAX)),
]
REFUSED = ["", "NOPE", "0", "65", "1000", "-9", "SIG_IGN", "SIG_DFL", "RTMIN+99", "RTMAX-99",
           "RTMIN+-1", "RTMIN+\u00b9", "\u00b9\u2075", "TE RM", "SIGRTMIN+00003000"]  # fmt: skip


@pytest.mark.parametrize(("text", "signum"), ACCEPTED)
def test_every_reader_accepts_the_same_forms(text: str, signum: int) -> None:
    assert signal_number(text) == signum
    assert config_signal(text) == signum
    assert cli.signal_arg(text, "-p") == signum
    assert cli.parse_single(["-p", text, "true"], {}) != "usage"


@pytest.mark.parametrize("text", REFUSED)
def test_every_reader_refuses_the_same_forms(text: str) -> None:
    with pytest.raises(ValueError, match=r"^not a signal"):
        signal_number(text)
    with pytest.raises(BadValue, match=r"^not a signal"):
        config_signal(text)
    with pytest.raises(UsageError, match=r"^-p: .* is not a signal"):
        cli.signal_arg(text, "-p")


def test_zero_only_where_a_rewrite_drops_the_signal() -> None:
    assert signal_number("0", zero=True) == 0
    assert cli.rewrite_arg("TERM:0") == (15, 0)
    with pytest.raises(ValueError, match="use 1 to 64"):
        signal_number(0)


def test_a_bool_is_not_a_signal_number() -> None:
    with pytest.raises(ValueError, match="not a signal number"):
        signal_number(True)


def test_every_number_has_the_name_signal_gives_it_and_reads_back() -> None:
    for signum in range(1, signal.NSIG):
        name = signal_name(signum)
        if RT < signum < signal.SIGRTMAX:
            assert name == f"SIGRTMIN+{signum - RT}"
        elif signum in signal.Signals.__members__.values():
            assert name == signal.Signals(signum).name
        else:  # 32 and 33: glibc's own, without a name
            assert name == str(signum)
        assert signal_number(name) == signum
