"""Commands and variables as the shell has them, for real: pidone (as PID 1 of
a fresh namespace, and as a subreaper) runs each command as written, the
shell expands it from the child's environment, and tests/helpers/whoami.py
reports the exact argv and environment the program received.

Each of these ran differently before: pidone put values into the command
text first (a syntax error restarted forever, an inner script's variables
blanked, a value's `;` run as a command, `$$` made `$`)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from tests.helpers.running import PIDONE, helper, wait_for
from tests.helpers.stack import Stack, before, free_port
from tests.pid1.test_config_attacks import marker_command, refused_by_check_and_run

WHOAMI = " ".join(helper("whoami.py"))
# pidone's whole environment (env -i): what every child's environment is built on.
# (LANG: else the Python reporting would coerce the C locale and add LC_CTYPE.)
BASE = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "WHOAMI_EXIT": "1"}


def start(stack: Stack, procfile: str, toml: str = "", **environ: str) -> None:
    """Run `procfile` with exactly BASE (+ environ) as pidone's environment;
    each process reports once and exits, never restarted."""
    for name in [line.split(":", 1)[0] for line in procfile.splitlines() if line.strip()]:
        header = f"[process.{name}]\n"
        if header not in toml:
            toml += header
        toml = toml.replace(header, header + 'restart = "never"\n')
    launcher = ["env", "-i", f"PIDONE_CONTROL_SOCKET={stack.dir / 'control.sock'}"]
    launcher += [f"{k}={v}" for k, v in {**BASE, **environ}.items()]
    stack.start(toml, procfile=procfile, prefix=launcher)


def report(stack: Stack, name: str) -> dict[str, object]:
    pattern = re.compile(rf"^{name}\s+\| WHOAMI (.*)$", re.M)
    found: list[str] = []

    def reported() -> bool:
        found[:] = pattern.findall(stack.stdout_so_far())
        return bool(found)

    wait_for(reported, what=f"{name} to report")
    assert len(found) == 1, found  # ran once: not a restart loop
    result = json.loads(found[0])
    assert isinstance(result, dict)
    return result


def child_env(stack: Stack, name: str) -> dict[str, str]:
    """The environment the program got, less what pidone's own launch adds
    to every child and the shell itself sets (PWD, SHLVL)."""
    env = report(stack, name)["env"]
    assert isinstance(env, dict)
    return {k: v for k, v in env.items() if k not in ("PIDONE_CONTROL_SOCKET", "PWD", "SHLVL")}


RAILS = '[ -n "$RAILS_STARTUP" ] && $RAILS_STARTUP || {whoami} server -b 0.0.0.0'


def test_foremans_rails_line_without_rails_startup_runs_rails_server(
    mode: str, tmp_path: Path
) -> None:
    # theforeman's Procfile; pidone made it `[ -n "" ] &&  || ...`, a syntax error.
    with Stack(mode, tmp_path) as stack:
        start(stack, f"rails: {RAILS.format(whoami=WHOAMI)}\n")
        assert report(stack, "rails")["argv"] == ["server", "-b", "0.0.0.0"]
        assert child_env(stack, "rails") == {**BASE, "PORT": "5000"}


def test_foremans_rails_line_with_rails_startup_runs_that_instead(
    mode: str, tmp_path: Path
) -> None:
    (tmp_path / ".env").write_text(f'RAILS_STARTUP="{WHOAMI} custom start"\n')
    with Stack(mode, tmp_path) as stack:
        start(stack, f"rails: {RAILS.format(whoami=WHOAMI)}\n")
        assert report(stack, "rails")["argv"] == ["custom", "start"]
        assert child_env(stack, "rails") == {
            **BASE,
            "RAILS_STARTUP": f"{WHOAMI} custom start",
            "PORT": "5000",
        }


def test_an_inner_sh_c_script_keeps_its_own_variables(mode: str, tmp_path: Path) -> None:
    # pidone blanked $X and ${PORT:-8000} inside the single quotes.
    inner = f"""sh -c 'X=inner; exec {WHOAMI} "$X" "${{PORT:-8000}}" "${{NOPE:-8000}}"'"""
    with Stack(mode, tmp_path) as stack:
        start(stack, f"web: {inner}\n")
        assert report(stack, "web")["argv"] == ["inner", "5000", "8000"]


def test_posix_assign_default_forms_work_in_commands(mode: str, tmp_path: Path) -> None:
    # zammad's and gitlab's ${PORT:="3000"}, refused before; and its kin.
    command = (
        f'{WHOAMI} ${{PORT:="3000"}} ${{UNSET:="3000"}} "${{EMPTY-d}}" ${{NONE-d}} ${{PORT:?m}}'
    )
    with Stack(mode, tmp_path) as stack:
        start(stack, f"web: {command}\n", EMPTY="")
        assert report(stack, "web")["argv"] == ["5000", "3000", "", "d", "5000"]


def test_dollar_dollar_is_the_shells_pid(mode: str, tmp_path: Path) -> None:
    # pidone made $$ a "$"; the shell execs the program, so $$ is its pid too.
    with Stack(mode, tmp_path) as stack:
        start(stack, f"web: {WHOAMI} $$ '$$'\n")
        seen = report(stack, "web")
        assert seen["argv"] == [str(seen["pid"]), "$$"]


def test_a_dotenv_value_with_a_semicolon_is_plain_words_and_no_injected_command_runs(
    mode: str, tmp_path: Path
) -> None:
    marker, substituted = tmp_path / "INJECTED", tmp_path / "SUBSTITUTED"
    opts = f"--title=My App; echo INJECTED; touch {marker}; $(touch {substituted})"
    (tmp_path / ".env").write_text(f'OPTS="{opts}"\n')
    with Stack(mode, tmp_path) as stack:
        start(stack, f"node: {WHOAMI} $OPTS\n")
        argv = report(stack, "node")["argv"]
        assert argv == [
            "--title=My", "App;", "echo", "INJECTED;", "touch", f"{marker};",
            "$(touch", f"{substituted})",
        ]  # fmt: skip
        assert stack.init.wait() == 0  # nothing left to run: pidone is done
        out, _ = stack.output()
    assert not marker.exists() and not substituted.exists()
    assert not [line for line in out.splitlines() if line.rstrip().endswith("| INJECTED")]


def test_each_process_gets_port_5000_5100_5200_in_procfile_order(mode: str, tmp_path: Path) -> None:
    procfile = f"web: {WHOAMI} $PORT\nworker: {WHOAMI}\nclock: {WHOAMI}\n"
    with Stack(mode, tmp_path) as stack:
        start(stack, procfile)
        assert report(stack, "web")["argv"] == ["5000"]
        assert [child_env(stack, n)["PORT"] for n in ("web", "worker", "clock")] == [
            "5000",
            "5100",
            "5200",
        ]


def test_port_base_from_pidones_port_and_a_port_key(mode: str, tmp_path: Path) -> None:
    procfile = f"web: {WHOAMI}\nworker: {WHOAMI}\nadmin: {WHOAMI}\n"
    toml = "[process.admin]\nport = 9001\n"
    with Stack(mode, tmp_path) as stack:
        start(stack, procfile, toml, PORT="8000")
        assert child_env(stack, "web") == {**BASE, "PORT": "8000"}
        assert child_env(stack, "worker") == {**BASE, "PORT": "8100"}
        assert child_env(stack, "admin") == {**BASE, "PORT": "9001"}


def test_port_base_from_dotenv_wins_over_pidones_port(mode: str, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("PORT=3000\n")
    with Stack(mode, tmp_path) as stack:
        start(stack, f"web: {WHOAMI}\nworker: {WHOAMI}\n", PORT="8000")
        assert child_env(stack, "web")["PORT"] == "3000"
        assert child_env(stack, "worker")["PORT"] == "3100"


def test_a_readiness_target_with_a_variable_is_checked_at_its_value(
    mode: str, tmp_path: Path
) -> None:
    # tcp:127.0.0.1:${REDIS_PORT} was refused; now it waits for that port.
    port = free_port()
    (tmp_path / ".env").write_text(f"REDIS_PORT={port}\n")
    with Stack(mode, tmp_path) as stack:
        stack.start(f"""
[process.redis]
command = "{stack.svc("redis", "--tcp", "$REDIS_PORT", "--delay", "0.3")}"
ready = "tcp:127.0.0.1:${{REDIS_PORT}}"
[process.web]
command = "{stack.svc("web")}"
after = ["redis"]
""")
        events = stack.wait_for("web up")
    assert before(events, "redis listening", "web up")


def test_check_warns_about_an_undefined_variable_and_a_byte_order_mark_and_exits_0(
    tmp_path: Path,
) -> None:
    (tmp_path / "Procfile").write_bytes(
        '\ufeffrails: [ -n "$RAILS_STARTUP" ] && $RAILS_STARTUP || bin/rails s\n'
        "web: gunicorn -b 0.0.0.0:$PORT ${WORKERS:-2} $HOME\n".encode()
    )
    env = {**BASE, "HOME": "/root"}
    result = subprocess.run(
        [PIDONE, "check"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=30
    )
    assert (result.returncode, result.stderr.splitlines()) == (
        0,
        [
            "Procfile:1: warning: starts with a UTF-8 byte-order mark (U+FEFF), which pidone "
            'skips; save the file as UTF-8 without one (not "UTF-8 with BOM")',
            'Procfile:1: warning: process "rails" command uses $RAILS_STARTUP, which nothing '
            "defines (pidone's environment, .env, environment, PORT), so the shell makes it "
            "empty; define it, or write ${RAILS_STARTUP:-default}",
        ],
    )
    assert "  rails: [ -n" in result.stdout  # as written, not with values put in


def test_a_procfile_line_ending_in_a_backslash_is_refused_by_check_and_run(
    shared: Path,
) -> None:
    (shared / "Procfile").write_text(f"web: {marker_command(shared)} \\\n  --workers 4\n")
    refused_by_check_and_run(
        shared, "Procfile:1: the line ends with a backslash, but a Procfile has no continuation"
    )


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        (
            {"Procfile": "web: if true; then CMD\n"},
            "Procfile:1: [process.web] command: /bin/sh cannot parse it: Syntax error: "
            'end of file unexpected (expecting "fi"); fix the command',
        ),
        (
            {"pidone.toml": '[process.web]\ncommand = "CMD"\nready = "exec:test -e x &&"\n'},
            "pidone.toml:3: [process.web] ready: /bin/sh cannot parse it: Syntax error: "
            "end of file unexpected; fix the command",
        ),
    ],
)
def test_a_command_the_shell_cannot_parse_is_refused_by_check_and_run(
    shared: Path, files: dict[str, str], expected: str
) -> None:
    # sh -n parses without running: a syntax error was restarted forever, check said 0.
    for name, text in files.items():
        (shared / name).write_text(text.replace("CMD", marker_command(shared)))
    refused_by_check_and_run(shared, expected)
