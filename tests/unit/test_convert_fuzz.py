"""A property-based fuzzer over `pidone import`'s input: whatever a
supervisord config or uWSGI ini holds, the converter either writes files
that pidone's own loader accepts (but for keys of other branches, see
KEYS_ELSEWHERE) or refuses the input with BadInput (exit 2), never a
traceback. Deterministic and bounded, as tests/unit/test_config_fuzz.py."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pidone.config.load import PROCESS_KEYS, load
from pidone.convert import supervisord, uwsgi, write
from pidone.convert.ini import BadInput
from pidone.convert.model import Conversion
from pidone.errors import ConfigError

FUZZ = settings(
    max_examples=300,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
KEYS_ELSEWHERE = {"autostart", "touch", "touch_signal", "stdin", "pid_namespace"} - set(
    PROCESS_KEYS
)

NASTY = [
    "%", "%%", "%(", "%(ENV_X)s", "%(ENV_)s", "%(process_num)02d", "%(here)s", "%(nope)s",
    "%(process_num)999d", "$", "$(HOME)", "$(", "%(chdir)", "%d", "%k", "@(x)", "'", '"', "\\",
    ";", " ;", "#", " #", "=", ":", ",", "\t", "\n  ", "\u00b9", "all", "pidone", "a:b",
    "0", "1", "-1", "true", "false", "unexpected", "TERM", "99", "022", "999", "/tmp/x.pid",
    "cmd=x", "pidfile=", "touch=a;b", "ns_pid=1", "control=0", "x && y", "x | y", "a=b",
]  # fmt: skip
SUPERVISORD_KEYS = [
    "command", "process_name", "numprocs", "numprocs_start", "priority", "autostart",
    "autorestart", "exitcodes", "startsecs", "startretries", "stopsignal", "stopwaitsecs",
    "stopasgroup", "killasgroup", "user", "environment", "directory", "umask", "junk",
]  # fmt: skip
UWSGI_KEYS = [
    "attach-daemon", "attach-control-daemon", "smart-attach-daemon", "smart-attach-daemon2",
    "attach-daemon2", "legion-attach-daemon", "chdir", "uid", "gid", "env", "socket",
    "daemons-honour-stdin", "die-on-term",
]  # fmt: skip
# Mostly the words above; control characters only as they are there (a bare
# newline mostly makes a line that is no key = value, refused at once).
plain = st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=6)
words = st.lists(st.sampled_from(NASTY) | plain, max_size=3).map("".join)
# Values each key takes, so that most examples get past the first refusal.
VALID = [
    "1", "0", "2", "true", "false", "unexpected", "TERM", "QUIT", "022", "/tmp", "/tmp/x.pid",
    "nobody", "0,2", 'A="x,y",B=%(ENV_X)s', "%(program_name)s_%(process_num)02d", "%(here)s",
    "cmd=run a,touch=/t;/u,stopsignal=3", "/tmp/p.pid run -d", "A=$(HOME)", "run %(chdir)/x",
]  # fmt: skip
values = st.sampled_from(VALID) | words


def loads_cleanly(conv: object) -> None:
    assert isinstance(conv, Conversion)
    with tempfile.TemporaryDirectory() as tmp:
        procfile, config = Path(tmp, "Procfile"), Path(tmp, "pidone.toml")
        procfile.write_text(write.procfile(conv))
        config.write_text(write.pidone_toml(conv))
        try:
            load(procfile, config, None, environ={})
        except ConfigError as exc:
            others = [
                p for p in exc.problems
                if not any(re.search(rf"\] {key}: unknown key", p) for key in KEYS_ELSEWHERE)
            ]  # fmt: skip
            assert not others, others


@FUZZ
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["program:a", "program:b.c", "supervisord", "group:g", "x"]),
            st.lists(st.tuples(st.sampled_from(SUPERVISORD_KEYS), values), max_size=6),
        ),
        max_size=3,
    )
)
def test_any_supervisord_config_converts_to_what_pidone_loads_or_is_refused(
    sections: list[tuple[str, list[tuple[str, str]]]],
) -> None:
    # a program with a command, then whatever else: most examples get past the first key
    text = "[program:w]\ncommand = run x\n" + "".join(
        f"[{name}]\ncommand = prog\n" * name.startswith("program:")
        + "".join(f"{key} = {value}\n" for key, value in keys)
        for name, keys in sections
    )
    try:
        conv = supervisord.convert(text, "/srv/s.conf", {"X": "x y"}, "host")
    except BadInput as exc:
        assert re.match(r"/srv/s\.conf(:\d+)?: ", str(exc)), exc
        return
    loads_cleanly(conv)


@FUZZ
@given(st.lists(st.tuples(st.sampled_from(UWSGI_KEYS), values), max_size=8))
def test_any_uwsgi_ini_converts_to_what_pidone_loads_or_is_refused(
    keys: list[tuple[str, str]],
) -> None:
    text = "[uwsgi]\n" + "".join(f"{key} = {value}\n" for key, value in keys)
    try:
        conv = uwsgi.convert(text, "/srv/u.ini", {"HOME": "/h"})
    except BadInput as exc:
        assert re.match(r"/srv/u\.ini(:\d+)?: ", str(exc)), exc
        return
    loads_cleanly(conv)
