"""config.load: Procfile + pidone.toml + .env -> frozen specs, or every problem at once."""

from __future__ import annotations

import json
import resource
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from pidone.config import envfile
from pidone.config import load as config
from pidone.config.command import Command
from pidone.config.specs import (
    CAPABILITIES,
    Config,
    ProcessSpec,
    ReadyCheck,
    Rlimit,
    Settings,
    SocketSpec,
)
from pidone.errors import ConfigError

FIXTURES = Path(__file__).parent.parent / "fixtures"
SECONDS_RULE = "must be a number of seconds from 0 to 86400 (one day), like 10 or 2.5"
LIMIT_RULE = 'nofile must be a number below 2**63, "unlimited", or [soft, hard], like nofile = 4096'
TABLES = "[pidone], [process.NAME], [socket.NAME] or [legion.NAME]"
ID_RULE = 'must be a name or a number from 0 to 4294967294, like "app" or 1000'


@pytest.fixture
def cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.chdir(tmp_path)
    yield tmp_path


def write(directory: Path, procfile: str | None = None, toml: str | None = None,
          env: str | None = None) -> None:  # fmt: skip
    for name, text in (("Procfile", procfile), ("pidone.toml", toml), (".env", env)):
        if text is not None:
            (directory / name).write_text(text)


def load_here(environ: dict[str, str] | None = None) -> Config:
    return config.load(None, None, None, environ=environ or {})


def problems(environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_here(environ)
    return caught.value.problems


def in_fixture(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.chdir(FIXTURES / name)


# --- fixtures by graph shape ------------------------------------------------------------


def test_chain(monkeypatch: pytest.MonkeyPatch) -> None:
    in_fixture(monkeypatch, "chain")
    loaded = load_here()
    assert list(loaded.processes) == ["db", "cache", "web"]
    assert loaded.start_waves == [["db"], ["cache"], ["web"]]
    assert loaded.stop_waves == [["web"], ["cache"], ["db"]]
    assert loaded.deps == {"db": (), "cache": ("db",), "web": ("cache",)}
    assert loaded.processes["web"].command == Command(("sleep", "1000"), uses_shell=False)
    assert loaded.sources.procfile == Path("Procfile")
    assert loaded.sources.config == Path("pidone.toml")
    assert loaded.sources.envfile is None


def test_diamond_from_pidone_toml_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    in_fixture(monkeypatch, "diamond")
    loaded = load_here()
    assert list(loaded.processes) == ["top", "left", "right", "bottom"]
    assert loaded.start_waves == [["top"], ["left", "right"], ["bottom"]]
    assert loaded.stop_waves == [["bottom"], ["left", "right"], ["top"]]
    assert loaded.sources.procfile is None


def test_independent_from_a_procfile_alone_gets_every_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    in_fixture(monkeypatch, "independent")
    loaded = load_here({"PATH": "/usr/bin"})
    assert loaded.settings == Settings()
    assert loaded.sockets == {}
    assert list(loaded.processes) == ["zeta", "alpha", "mid"]
    assert loaded.start_waves == [["alpha", "mid", "zeta"]]
    assert loaded.processes["zeta"] == ProcessSpec(
        name="zeta",
        command=Command(("sleep", "1000"), uses_shell=False),
        command_line="sleep 1000",
        env={"PATH": "/usr/bin", "PORT": "5000"},  # the first process: foreman's base
        ready=ReadyCheck("settle", seconds=1.0),
        stop_signal=signal.SIGTERM,
        stop_timeout=10.0,
        reload_signal=signal.SIGHUP,
    )
    spec = loaded.processes["zeta"]
    assert (spec.restart, spec.stop_target, spec.control, spec.restart_dependents) == (
        "always",
        "process",
        False,
        True,
    )
    assert (spec.user, spec.group, spec.groups, spec.umask, spec.pidfile) == (None,) * 5


def test_default_settings_values() -> None:
    assert Settings() == Settings(
        stop_timeout=10.0,
        log_format="text",
        control_socket=None,  # the runtime directory's (config/rundir.py)
        control_group=None,
        metrics=None,
        settle_time=1.0,
        backoff_initial=0.5,
        backoff_max=30.0,
        fatal_after=5,
        fatal_window=60.0,
    )


def test_cycle(monkeypatch: pytest.MonkeyPatch) -> None:
    in_fixture(monkeypatch, "cycle")
    assert problems() == [
        "pidone.toml:3: [process.a] after: dependency cycle a -> c -> b -> a; "
        "remove one of these `after` entries"
    ]


def test_bad_line(monkeypatch: pytest.MonkeyPatch) -> None:
    in_fixture(monkeypatch, "bad-line")
    assert problems() == [
        'Procfile:3: "this line has no colon" is not a "name: command" line; '
        'write it as "name: command", or start it with "#" to make it a comment',
        'Procfile:4: "my web" is not a valid process name; use only letters, digits, "_" and "-"',
        'Procfile:5: process "worker" has no command; write "worker: COMMAND"',
        'Procfile:6: process "web" is already defined on line 2; rename or remove one of them',
    ]


def test_bad_keys_every_problem_at_once_in_file_order(monkeypatch: pytest.MonkeyPatch) -> None:
    in_fixture(monkeypatch, "bad-keys")
    assert problems() == [
        "pidone.toml:1: stop_timeout: belongs in the [pidone] table; move it under [pidone]",
        'pidone.toml:4: [pidone] log_format = "yaml": must be one of "text", "json", "raw"',
        "pidone.toml:6: [pidone] backoff_max = 1: is below backoff_initial (2.0); "
        "make it at least that",
        'pidone.toml:9: [process.web] comand: unknown key; did you mean "command"?',
        'pidone.toml:10: [process.web] after = "redis": must be a list of names, like ["redis"]',
        'pidone.toml:11: [process.web] stop_signal = "SIGFOO": not a signal name; '
        "use a name like SIGTERM, TERM or RTMIN+3, or a number",
        'pidone.toml:12: [process.web] stop_timeout = "30s": must be a number of seconds '
        "from 0 to 86400 (one day), like 10 or 2.5",
        'pidone.toml:13: [process.web] restart = "allways": must be one of "always", '
        '"on-failure", "never"; did you mean "always"?',
        'pidone.toml:14: [process.web] ready = "tcp:localhost": must be "tcp:HOST:PORT", '
        'like "tcp:127.0.0.1:6379"',
        'pidone.toml:15: [process.web] umask = "0999": must be an octal string up to "0777", '
        'like "0027", or an octal number like 0o27',
        'pidone.toml:16: [process.web] control = "yes": must be true or false (without quotes)',
        'pidone.toml:19: [process.redis] command = "redis-server --port 6380": also given on '
        "Procfile:2; keep only one of the two",
        'pidone.toml:22: [process.orphan]: no command; add command = "..." to it, '
        'or a "orphan: COMMAND" line to the Procfile',
        'pidone.toml:26: [socket.app] path = "run/app.sock": must be an absolute path, '
        'like "/run/app/app.sock"',
        'pidone.toml:27: [socket.app] mode = "rw-rw----": must be an octal string up to "7777", '
        'like "0660", or an octal number like 0o660',
        "pidone.toml:29: [sockets]: unknown table; did you mean [socket]?",
    ]


def test_fan_out_uses_every_key(monkeypatch: pytest.MonkeyPatch) -> None:
    in_fixture(monkeypatch, "fan-out")
    loaded = load_here({"PATH": "/usr/bin", "HOST_NAME": "box1", "REDIS_PORT": "1"})
    assert loaded.sources.envfile == Path(".env")
    assert loaded.settings == Settings(
        stop_timeout=20.0,
        log_format="json",
        control_socket="/run/pidone/ctl.sock",
        control_group="ops",
        metrics="127.0.0.1:9100",
        settle_time=2.0,
        backoff_initial=0.25,
        backoff_max=8.0,
        fatal_after=3,
        fatal_window=30.0,
    )
    assert list(loaded.processes) == ["redis", "web", "worker", "beat"]
    assert loaded.start_waves == [["redis"], ["web", "worker"], ["beat"]]
    assert loaded.stop_waves == [["beat", "web"], ["worker"], ["redis"]]
    assert loaded.sockets == {
        "app": SocketSpec(
            name="app",
            path="/run/app/uwsgi.sock",
            owner="app",
            group="101",
            mode=0o660,
            listen=True,
            directory_mode=0o2750,
        )
    }
    dotenv = {"REDIS_PORT": "6380", "APP_DIR": "/srv/app/current", "LOG_LEVEL": "warning"}

    redis = loaded.processes["redis"]
    # The shell expands the command from the child's environment, where .env
    # wins over the environment pidone got.
    assert redis.command.argv == ("/bin/sh", "-c", "exec redis-server --port ${REDIS_PORT}")
    assert redis.ready == ReadyCheck("tcp", "127.0.0.1:6380", host="127.0.0.1", port=6380)
    assert redis.stop_timeout == 20.0  # from [pidone]
    assert redis.user == "redis"
    assert redis.env == {"PATH": "/usr/bin", "HOST_NAME": "box1", **dotenv, "PORT": "5000"}

    web = loaded.processes["web"]
    assert web == ProcessSpec(
        name="web",
        command=Command(
            ("/bin/sh", "-c", "exec uwsgi --ini ${APP_DIR}/uwsgi.ini"), uses_shell=True
        ),
        command_line="uwsgi --ini ${APP_DIR}/uwsgi.ini",
        directory="/srv/app/current",
        environment={"DJANGO_SETTINGS": "app.settings", "WORKERS": "4"},
        # clear_env: nothing from pidone's own environment.
        env={**dotenv, "PORT": "5100", "DJANGO_SETTINGS": "app.settings", "WORKERS": "4"},
        after=("redis",),
        ready=ReadyCheck("notify"),
        restart="always",
        stop_signal=signal.SIGINT,
        stop_timeout=30.0,
        stop_target="process",
        reload_signal=signal.SIGHUP,
        control=True,
        pidfile=None,
        user="app",
        group="app",
        groups=("www-data", "101"),
        umask=0o027,
        clear_env=True,
        capabilities=("NET_BIND_SERVICE",),
        rlimits=(
            Rlimit("nofile", resource.RLIMIT_NOFILE, 4096, 4096),
            Rlimit("core", resource.RLIMIT_CORE, resource.RLIM_INFINITY, resource.RLIM_INFINITY),
            Rlimit("nproc", resource.RLIMIT_NPROC, 64, 128),
        ),
        sockets=("app",),
        restart_dependents=True,
        # [pidone]'s failure policy
        backoff_initial=0.25,
        backoff_max=8.0,
        fatal_after=3,
        fatal_window=30.0,
    )

    worker = loaded.processes["worker"]
    assert worker.command.argv == (
        "/bin/sh",
        "-c",
        "exec celery -A app worker --loglevel ${LOG_LEVEL:-info}",
    )
    assert worker.env["PORT"] == "5200"
    assert worker.ready == ReadyCheck(
        "exec",
        "celery -A app inspect ping --destination ${HOST_NAME}",
        command=Command(
            ("/bin/sh", "-c", "exec celery -A app inspect ping --destination ${HOST_NAME}"),
            uses_shell=True,
        ),
    )
    assert (worker.restart, worker.stop_signal, worker.stop_target) == ("on-failure", 15, "group")
    assert worker.restart_dependents is False

    beat = loaded.processes["beat"]
    assert beat.command_line == "celery -A app beat"
    assert beat.env["PORT"] == "5300"
    assert beat.ready == ReadyCheck("file", "/run/app/beat.ready", path="/run/app/beat.ready")
    assert (beat.restart, beat.pidfile) == ("never", "/run/app/beat.pid")


# --- files --------------------------------------------------------------------------------


def test_neither_procfile_nor_pidone_toml(cwd: Path) -> None:
    write(cwd, env="A=1\n")
    assert problems() == [
        f"no Procfile and no pidone.toml in {cwd}: nothing to run; create a Procfile with "
        'lines like "web: COMMAND", or name a file with -f PROCFILE or -c CONFIG'
    ]


def test_explicit_paths_need_not_be_the_defaults(cwd: Path) -> None:
    (cwd / "Procfile.dev").write_text("web: serve\n")
    (cwd / "dev.env").write_text("X=1\n")
    loaded = config.load(Path("Procfile.dev"), None, Path("dev.env"), environ={})
    assert loaded.processes["web"].env == {"X": "1", "PORT": "5000"}
    assert loaded.sources.procfile == Path("Procfile.dev")


def test_named_files_must_exist(cwd: Path) -> None:
    write(cwd, procfile="web: serve\n")
    with pytest.raises(ConfigError) as caught:
        config.load(None, Path("missing.toml"), Path("missing.env"), environ={})
    assert caught.value.problems == [
        "missing.env: cannot read it: No such file or directory; check the path given to -e",
        "missing.toml: cannot read it: No such file or directory; check the path given to -c",
    ]


def test_not_utf8(cwd: Path) -> None:
    (cwd / "Procfile").write_bytes(b"web: caf\xe9\n")
    assert problems() == [
        "Procfile: not UTF-8 text (invalid continuation byte at byte 8); save it as UTF-8"
    ]


def test_parse_errors_of_every_file_together(cwd: Path) -> None:
    write(cwd, procfile="web serve\n", toml="[process.web\n", env="A=1\nnot an assignment\n")
    assert problems() == [
        '.env:2: "not an assignment" is not a KEY=VALUE line; write KEY=VALUE, '
        'or start it with "#" to make it a comment',
        'Procfile:1: "web serve" is not a "name: command" line; write it as "name: command", '
        'or start it with "#" to make it a comment',
        "pidone.toml:1: not valid TOML: Expected ']' at the end of a table declaration; "
        "fix the syntax",
    ]


def test_no_processes_at_all(cwd: Path) -> None:
    write(cwd, toml="[pidone]\nstop_timeout = 3\n")
    assert problems() == [
        "pidone.toml: no processes defined; add a [process.NAME] table with a command, or a "
        '"name: command" line to a Procfile'
    ]


# --- expansion and environment -----------------------------------------------------------


def test_expansion_order_environ_then_dotenv_then_environment(cwd: Path) -> None:
    write(
        cwd,
        procfile="web: serve $A $B $C ${D:-none}\n",
        env="B=from-env-file\nC=from-env-file\n",
        toml='[process.web]\nenvironment = { C = "from-table", E = "${A}+${B}" }\n',
    )
    web = load_here({"A": "from-environ", "B": "from-environ", "C": "from-environ"}).processes[
        "web"
    ]
    # The command is the shell's to expand, from this environment.
    assert web.command.argv == ("/bin/sh", "-c", "exec serve $A $B $C ${D:-none}")
    assert web.environment == {"C": "from-table", "E": "from-environ+from-env-file"}
    assert web.env == {
        "A": "from-environ",
        "B": "from-env-file",
        "PORT": "5000",
        "C": "from-table",
        "E": "from-environ+from-env-file",
    }


def test_clear_env_keeps_dotenv_and_environment(cwd: Path) -> None:
    write(
        cwd,
        procfile="web: serve\n",
        env="B=2\n",
        toml='[process.web]\nclear_env = true\nenvironment = { C = "3" }\n',
    )
    assert load_here({"A": "1"}).processes["web"].env == {"B": "2", "PORT": "5000", "C": "3"}


def test_a_value_with_shell_syntax_stays_a_value_never_shell_syntax(cwd: Path) -> None:
    write(cwd, procfile="web: serve ${ARGS}\nlog: tail -f x | grep y\n")
    loaded = load_here({"ARGS": "> /tmp/out"})
    # The shell gets ${ARGS} as written: its value becomes words, not a redirection.
    assert loaded.processes["web"].command == Command(
        ("/bin/sh", "-c", "exec serve ${ARGS}"), uses_shell=True
    )
    assert loaded.processes["log"].command.shell_stays is True


def test_command_errors_point_at_their_line(cwd: Path) -> None:
    write(
        cwd,
        procfile="ok: serve\nweb: serve ${BROKEN\n",
        toml='[process.tool]\ncommand = "run \'unclosed"\n',
    )
    assert problems() == [
        'Procfile:2: process "web": "${" is never closed by "}"; add the "}"',
        "pidone.toml:2: [process.tool] command = \"run 'unclosed\": a single quote (') is never "
        "closed; close it, or escape it with a backslash",
    ]


def test_bad_environment_tables(cwd: Path) -> None:
    write(
        cwd,
        toml="""\
[process.a]
command = "run"
environment = { GOOD = "x", FLAG = true }

[process.b]
command = "run"
environment = "A=1"

[process.c]
command = "run"
environment = { X = "${Y" }
""",
    )
    assert problems() == [
        'pidone.toml:3: [process.a] environment = { GOOD = "x", FLAG = true }: FLAG must be a '
        'string or a number; quote it, like FLAG = "value"',
        'pidone.toml:7: [process.b] environment = "A=1": must be a table of strings, '
        'like { KEY = "value" }',
        'pidone.toml:11: [process.c] environment = { X = "${Y" }: X: "${Y" must be followed by '
        f'"}}" or an operator (:- - := = :? ? :+ + % %% # ##); {envfile.EXPANSION_RULE}',
    ]


# --- values ---------------------------------------------------------------------------------


def one_process(cwd: Path, body: str) -> ProcessSpec:
    write(cwd, toml=f'[process.web]\ncommand = "serve"\n{body}\n')
    return load_here().processes["web"]


def one_problem(cwd: Path, body: str) -> str:
    write(cwd, toml=f'[process.web]\ncommand = "serve"\n{body}\n')
    found = problems()
    assert len(found) == 1, found
    return found[0]


@pytest.mark.parametrize(
    ("value", "number"),
    [
        ('"SIGTERM"', 15),
        ('"TERM"', 15),
        ('"sigquit"', 3),
        ('"usr1"', 10),
        ("9", 9),
        ('"2"', 2),
        ('"SIGRTMIN+3"', 37),
        ('"rtmax-1"', 63),
    ],
)
def test_signal_forms(cwd: Path, value: str, number: int) -> None:
    assert one_process(cwd, f"stop_signal = {value}").stop_signal == number


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ('"SIGFOO"', "not a signal name; use a name like SIGTERM, TERM or RTMIN+3, or a number"),
        ('"SIGTREM"', "not a signal name; use a name like SIGTERM, TERM or RTMIN+3, or a number; "
         'did you mean "SIGTERM"?'),
        ("0", "not a signal number; use 1 to 64"),
        ("65", "not a signal number; use 1 to 64"),
        ('"RTMIN+99"', "not a signal: outside SIGRTMIN..SIGRTMAX (34 to 64)"),
        ("true", 'must be a signal name like "SIGTERM" or a number'),
        ("1.5", 'must be a signal name like "SIGTERM" or a number'),
    ],
)  # fmt: skip
def test_bad_signals(cwd: Path, value: str, message: str) -> None:
    assert one_problem(cwd, f"reload_signal = {value}") == (
        f"pidone.toml:3: [process.web] reload_signal = {value}: {message}"
    )


@pytest.mark.parametrize(
    ("value", "mask"), [('"0027"', 0o027), ('"077"', 0o077), ('"0o22"', 0o022), ("0o027", 0o027)]
)
def test_umask_forms(cwd: Path, value: str, mask: int) -> None:
    assert one_process(cwd, f"umask = {value}").umask == mask


@pytest.mark.parametrize("value", ['"0999"', '"01000"', "0o1000", '"u=rwx"', "-1", "true", "999"])
def test_bad_umask(cwd: Path, value: str) -> None:
    assert one_problem(cwd, f"umask = {value}").endswith(
        'must be an octal string up to "0777", like "0027", or an octal number like 0o27'
    )


def test_rlimit_forms(cwd: Path) -> None:
    spec = one_process(
        cwd,
        'rlimits = { NOFILE = 1024, rlimit_core = "unlimited", nproc = [10, "infinity"], '
        "stack = [0, 0] }",
    )
    inf = resource.RLIM_INFINITY
    assert spec.rlimits == (
        Rlimit("nofile", resource.RLIMIT_NOFILE, 1024, 1024),
        Rlimit("core", resource.RLIMIT_CORE, inf, inf),
        Rlimit("nproc", resource.RLIMIT_NPROC, 10, inf),
        Rlimit("stack", resource.RLIMIT_STACK, 0, 0),
    )


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("{ nofiles = 10 }", '"nofiles" is not a resource limit; did you mean "nofile"?'),
        (
            "{ widgets = 10 }",
            '"widgets" is not a resource limit; known: as, core, cpu, data, fsize, memlock, '
            "msgqueue, nice, nofile, nproc, rss, rtprio, rttime, sigpending, stack",
        ),
        ("{ nofile = [20, 10] }", "nofile: the soft limit is above the hard one; use [soft, hard] "
         "with soft <= hard"),
        ('{ nofile = ["unlimited", 10] }', "nofile: the soft limit is above the hard one; "
         "use [soft, hard] with soft <= hard"),
        ("{ nofile = -1 }", LIMIT_RULE),
        ('{ nofile = "lots" }', LIMIT_RULE),
        ("{ nofile = 9223372036854775808 }", LIMIT_RULE),
        ('"nofile=10"', 'must be a table of limits, like { nofile = 4096, core = "unlimited" }'),
    ],
)  # fmt: skip
def test_bad_rlimits(cwd: Path, value: str, message: str) -> None:
    assert one_problem(cwd, f"rlimits = {value}") == (
        f"pidone.toml:3: [process.web] rlimits = {value}: {message}"
    )


def test_capabilities_are_normalized(cwd: Path) -> None:
    spec = one_process(cwd, 'capabilities = ["net_bind_service", "CAP_NET_RAW", "NET_RAW"]')
    assert spec.capabilities == ("NET_BIND_SERVICE", "NET_RAW")
    assert CAPABILITIES["NET_BIND_SERVICE"] == 10
    assert CAPABILITIES["CHECKPOINT_RESTORE"] == 40


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ('["NET_BIND_SERVCE"]', '"NET_BIND_SERVCE" is not a capability; '
         'did you mean "NET_BIND_SERVICE"?'),
        ('["ROOT"]', '"ROOT" is not a capability (see "man 7 capabilities")'),
        ('"NET_RAW"', 'must be a list of capability names, like ["NET_BIND_SERVICE"]'),
    ],
)  # fmt: skip
def test_bad_capabilities(cwd: Path, value: str, message: str) -> None:
    assert one_problem(cwd, f"capabilities = {value}") == (
        f"pidone.toml:3: [process.web] capabilities = {value}: {message}"
    )


def test_identities(cwd: Path) -> None:
    spec = one_process(cwd, 'user = 1000\ngroup = "app"\ngroups = ["www-data", 33]')
    assert (spec.user, spec.group, spec.groups) == ("1000", "app", ("www-data", "33"))
    assert one_process(cwd, "groups = []").groups == ()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("user = -1", "is not a valid id; use a number from 0 to 4294967294, or a name"),
        ('user = ""', ID_RULE),
        ('group = "a b"', ID_RULE),
        ('groups = "www-data"', 'must be a list of group names or numbers, like ["www-data", 101]'),
        ("groups = [true]", ID_RULE),
    ],
)
def test_bad_identities(cwd: Path, body: str, message: str) -> None:
    assert one_problem(cwd, body) == f"pidone.toml:3: [process.web] {body}: {message}"


@pytest.mark.parametrize(
    ("value", "check"),
    [
        ('"notify"', ReadyCheck("notify")),
        ('"unix:/run/app.sock"', ReadyCheck("unix", "/run/app.sock", path="/run/app.sock")),
        ('"file:ready.flag"', ReadyCheck("file", "ready.flag", path="ready.flag")),
        ('"tcp:127.0.0.1:6379"', ReadyCheck("tcp", "127.0.0.1:6379", host="127.0.0.1", port=6379)),
        ('"tcp:[::1]:80"', ReadyCheck("tcp", "[::1]:80", host="::1", port=80)),
        (
            '"http://127.0.0.1:8000/health"',
            ReadyCheck(
                "http",
                "http://127.0.0.1:8000/health",
                host="127.0.0.1",
                port=8000,
                url="http://127.0.0.1:8000/health",
            ),
        ),
        (
            '"https://localhost/"',
            ReadyCheck("http", "https://localhost/", host="localhost", url="https://localhost/"),
        ),
        ('"settle:2.5"', ReadyCheck("settle", "2.5", seconds=2.5)),
        (
            '"exec:pg_isready -h db"',
            ReadyCheck(
                "exec",
                "pg_isready -h db",
                command=Command(("pg_isready", "-h", "db"), uses_shell=False),
            ),
        ),
    ],
)  # fmt: skip
def test_ready_forms(cwd: Path, value: str, check: ReadyCheck) -> None:
    assert one_process(cwd, f"ready = {value}").ready == check


def test_no_ready_means_settle_time_from_pidone_table(cwd: Path) -> None:
    write(cwd, procfile="web: serve\n", toml="[pidone]\nsettle_time = 3\nstop_timeout = 4\n")
    web = load_here().processes["web"]
    assert web.ready == ReadyCheck("settle", seconds=3.0)
    assert web.stop_timeout == 4.0


READY_FORMS = (
    '"unix:PATH", "tcp:HOST:PORT", "http://HOST:PORT/PATH", "file:PATH", '
    '"exec:COMMAND", "notify", "settle:SECONDS" or "log:REGEX"'
)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ('"sock:/run/x"', f"not a readiness check; use {READY_FORMS}"),
        ('"unx:/run/x"', f'not a readiness check; did you mean "unix"?; use {READY_FORMS}'),
        ('"notify:x"', f'not a readiness check; did you mean "notify"?; use {READY_FORMS}'),
        ('"/run/app.sock"', f"not a readiness check; use {READY_FORMS}"),
        ('"unix:"', f'"unix:" needs something after the colon; use {READY_FORMS}'),
        ('"tcp:6379"', 'must be "tcp:HOST:PORT", like "tcp:127.0.0.1:6379"'),
        ('"tcp:db:99999"', 'must be "tcp:HOST:PORT", like "tcp:127.0.0.1:6379"'),
        ('"http://:80/"', 'must be a URL with a host, like "http://127.0.0.1:8000/health"'),
        ('"http://db:port/"', 'must be a URL with a host, like "http://127.0.0.1:8000/health"'),
        (
            '"settle:soon"',
            'must be "settle:SECONDS" with SECONDS from 0 to 86400 (one day), like "settle:2.5"',
        ),
        (
            '"settle:-1"',
            'must be "settle:SECONDS" with SECONDS from 0 to 86400 (one day), like "settle:2.5"',
        ),
        (
            '"exec:check \'x"',
            "a single quote (') is never closed; close it, or escape it with a backslash",
        ),
        ("5", f"must be a string: {READY_FORMS}"),
    ],
)
def test_bad_ready(cwd: Path, value: str, message: str) -> None:
    assert one_problem(cwd, f"ready = {value}") == (
        f"pidone.toml:3: [process.web] ready = {value}: {message}"
    )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("stop_timeout = -1", SECONDS_RULE),
        ("stop_timeout = nan", SECONDS_RULE),
        ("stop_timeout = true", SECONDS_RULE),
        ('stop_target = "pgroup"', 'must be one of "process", "group"; did you mean "group"?'),
        ('restart = "on_failure"', 'must be one of "always", "on-failure", "never"; '
         'did you mean "on-failure"?'),
        ("restart = 1", 'must be one of "always", "on-failure", "never"'),
        ('pidfile = "app.pid"', 'must be an absolute path, like "/run/app/app.pid"'),
        ('directory = ""', 'must be a non-empty string, like "/srv/app/current"'),
        ("restart_dependents = 0", "must be true or false (without quotes)"),
        ('after = ["db", 1]', 'must be a list of names, like ["redis"]'),
    ],
)  # fmt: skip
def test_bad_process_values(cwd: Path, body: str, message: str) -> None:
    assert one_problem(cwd, body) == f"pidone.toml:3: [process.web] {body}: {message}"


def test_unknown_key_without_a_close_match_lists_the_known_keys(cwd: Path) -> None:
    assert one_problem(cwd, "xyzzy = 1") == (
        "pidone.toml:3: [process.web] xyzzy: unknown key; the known keys are: "
        + ", ".join(config.PROCESS_KEYS)
    )


# --- references ------------------------------------------------------------------------------


def test_after_and_sockets_must_name_existing_things(cwd: Path) -> None:
    write(
        cwd,
        procfile="redis: redis-server\nweb: serve\n",
        toml="""\
[process.web]
after = ["reddis", "zzz"]
sockets = ["ap", "other"]

[socket.app]
path = "/run/app.sock"
""",
    )
    assert problems() == [
        'pidone.toml:2: [process.web] after = ["reddis", "zzz"]: no process named "reddis"; '
        'did you mean "redis"?',
        'pidone.toml:2: [process.web] after = ["reddis", "zzz"]: no process named "zzz"; '
        "the processes are: redis, web",
        'pidone.toml:3: [process.web] sockets = ["ap", "other"]: no socket named "ap"; '
        'did you mean "app"?',
        'pidone.toml:3: [process.web] sockets = ["ap", "other"]: no socket named "other"; '
        "define it in a [socket.other] table",
    ]


def test_after_a_process_without_command_is_not_reported_twice(cwd: Path) -> None:
    write(
        cwd, toml='[process.a]\nafter = ["b"]\ncommand = "run"\n\n[process.b]\nready = "notify"\n'
    )
    assert problems() == [
        'pidone.toml:5: [process.b]: no command; add command = "..." to it, '
        'or a "b: COMMAND" line to the Procfile'
    ]


def test_self_dependency_is_a_cycle(cwd: Path) -> None:
    write(cwd, procfile="a: run\n", toml='[process.a]\nafter = ["a"]\n')
    assert problems() == [
        "pidone.toml:2: [process.a] after: dependency cycle a -> a; "
        "remove one of these `after` entries"
    ]


# --- tables ------------------------------------------------------------------------------------


def test_top_level_mistakes(cwd: Path) -> None:
    write(
        cwd,
        procfile="web: serve\n",
        toml="""\
command = "x"
colour = "blue"
pidone = 3

[proccess.web]
after = []

[misc]
a = 1
""",
    )
    assert problems() == [
        "pidone.toml:1: command: belongs in a process table; move it under [process.NAME]",
        "pidone.toml:2: colour: unknown key; use " + TABLES,
        "pidone.toml:3: pidone = 3: must be a table, like [pidone]",
        "pidone.toml:5: [proccess]: unknown table; did you mean [process]?",
        "pidone.toml:8: [misc]: unknown table; use " + TABLES,
    ]


def test_bad_process_names_and_shapes(cwd: Path) -> None:
    write(cwd, procfile="web: serve\n", toml='[process]\nweb = "serve"\n\n[process."my app"]\n')
    assert problems() == [
        'pidone.toml:2: [process] web = "serve": must be a table, like [process.web]',
        'pidone.toml:4: [process.my app]: "my app" is not a valid name; '
        'use only letters, digits, "_" and "-"',
    ]


def test_dotted_keys_and_inline_tables_are_located(cwd: Path) -> None:
    write(
        cwd,
        toml="""\
[process]
web.command = "serve"
web.after = ["nope"]
api = { command = "api", stop_signal = "SIGNOPE" }
""",
    )
    assert problems() == [
        'pidone.toml:3: [process.web] after = ["nope"]: no process named "nope"; '
        "the processes are: api, web",
        'pidone.toml:4: [process.api] stop_signal = "SIGNOPE": not a signal name; '
        "use a name like SIGTERM, TERM or RTMIN+3, or a number",
    ]


def test_multiline_strings_do_not_confuse_the_locator(cwd: Path) -> None:
    write(
        cwd,
        toml='''\
[process.web]
command = """
serve
[process.fake]
after = 1
"""
after = 1
''',
    )
    assert problems() == [
        'pidone.toml:7: [process.web] after = 1: must be a list of names, like ["redis"]'
    ]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('metrics = "9100"', 'must be "HOST:PORT", like "127.0.0.1:9100"'),
        ('metrics = "host:0"', 'must be "HOST:PORT", like "127.0.0.1:9100"'),
        ('control_socket = "ctl.sock"', 'must be an absolute path, like '
         '"/run/pidone/control.sock"'),
        ("fatal_after = 0", "must be a whole number of at least 1, like 5"),
        ("fatal_window = 0", "must be more than 0 seconds and at most 86400, like 10 or 2.5"),
        ("backoff_initial = 0", "must be more than 0 seconds and at most 86400, like 10 or 2.5"),
        ('log_format = "JSON"', 'must be one of "text", "json", "raw"; did you mean "json"?'),
        ("settle_time = -0.5", SECONDS_RULE),
        ("backoff_reset = -1", SECONDS_RULE),
        ("control_group = [1]", ID_RULE),
        ("stop_timout = 1", 'unknown key; did you mean "stop_timeout"?'),
    ],
)  # fmt: skip
def test_bad_settings(cwd: Path, body: str, message: str) -> None:
    write(cwd, procfile="web: serve\n", toml=f"[pidone]\n{body}\n")
    key = body.partition(" = ")[0]
    subject = f"[pidone] {body}" if "unknown" not in message else f"[pidone] {key}"
    assert problems() == [f"pidone.toml:2: {subject}: {message}"]


def test_settings_values(cwd: Path) -> None:
    write(cwd, procfile="web: serve\n", toml='[pidone]\ncontrol_group = 4\nmetrics = "[::1]:9"\n')
    settings = load_here().settings
    assert (settings.control_group, settings.metrics) == ("4", "[::1]:9")


def test_socket_tables(cwd: Path) -> None:
    long_path = "/run/" + "x" * 103
    write(
        cwd,
        procfile="web: serve\n",
        toml=f"""\
[socket.a]
path = "/run/a.sock"
mode = 0o640
directory_mode = "0750"

[socket.b]
path = "/run/a.sock"

[socket.c]
owner = "app"

[socket.d]
path = "{long_path}"
listen = "yes"
""",
    )
    assert problems() == [
        'pidone.toml:7: [socket.b] path = "/run/a.sock": already used by [socket.a]; '
        "use another path",
        'pidone.toml:9: [socket.c]: no path; add path = "/run/app/app.sock"',
        f'pidone.toml:13: [socket.d] path = "{long_path}": longer than the 107 bytes a socket '
        "path can have; use a shorter one",
        'pidone.toml:14: [socket.d] listen = "yes": must be true or false (without quotes)',
    ]


def test_socket_defaults_and_modes(cwd: Path) -> None:
    write(
        cwd,
        procfile="web: serve\n",
        toml='[socket.a]\npath = "/run/a.sock"\n\n[socket.b]\npath = "/run/b.sock"\nmode = 0o640\n'
        'directory_mode = "0750"\n',
    )
    assert load_here().sockets == {
        "a": SocketSpec("a", "/run/a.sock"),
        "b": SocketSpec("b", "/run/b.sock", mode=0o640, directory_mode=0o750),
    }
    assert SocketSpec("x", "/x") == SocketSpec("x", "/x", None, None, 0o660, False, 0o2750)


# --- the hook for OS checks -----------------------------------------------------------------------


def test_checks_report_in_the_same_format_and_order(cwd: Path) -> None:
    write(cwd, procfile="web: serve\nworker: work\n", toml='\n[process.web]\nuser = "bob"\n')
    seen: list[Config] = []

    def check_users(loaded: Config) -> list[str]:
        seen.append(loaded)
        return [
            loaded.sources.problem("process.web", "user", 'no user "bob"; create it or fix user'),
            loaded.sources.problem("process.worker", "directory", "does not exist"),
        ]

    with pytest.raises(ConfigError) as caught:
        config.load(None, None, None, environ={}, checks=[check_users])
    assert caught.value.problems == [
        "Procfile:2: [process.worker] directory: does not exist",
        'pidone.toml:3: [process.web] user: no user "bob"; create it or fix user',
    ]
    assert list(seen[0].processes) == ["web", "worker"]


def test_checks_do_not_run_on_an_invalid_config(cwd: Path) -> None:
    write(cwd, procfile="web: serve\n", toml='[process.web]\nuser = ["bob"]\n')

    def must_not_run(loaded: Config) -> list[str]:
        raise AssertionError("ran")

    with pytest.raises(ConfigError):
        config.load(None, None, None, environ={}, checks=[must_not_run])


def test_passing_checks_return_the_config(cwd: Path) -> None:
    write(cwd, procfile="web: serve\n")
    loaded = config.load(None, None, None, environ={}, checks=[lambda c: []])
    assert list(loaded.processes) == ["web"]


def test_where_falls_back_to_the_table_then_the_file(cwd: Path) -> None:
    write(cwd, procfile="web: serve\n", toml="[pidone]\nstop_timeout = 1\n")
    sources = load_here().sources
    assert sources.where("pidone", "stop_timeout") == "pidone.toml:2"
    assert sources.where("pidone", "log_format") == "pidone.toml:1"
    assert sources.where("process.web", "user") == "Procfile:1"
    assert sources.where("socket.x") == "pidone.toml"


def test_specs_are_frozen_and_hashable(cwd: Path) -> None:
    write(cwd, procfile="web: serve\n")
    spec = load_here().processes["web"]
    with pytest.raises(AttributeError):
        spec.name = "other"  # type: ignore[misc]
    assert hash(spec) == hash(spec)


def test_process_named_all_is_reserved(cwd: Path) -> None:
    write(cwd, toml='[process.all]\ncommand = "x"\n[process.web]\ncommand = "y"\n')
    assert problems() == [
        'pidone.toml:1: [process.all]: "all" is reserved (pidone ctl uses it for every'
        " process); pick another name"
    ]


def test_process_named_pidone_is_reserved_its_lines_would_pass_for_pidones(cwd: Path) -> None:
    rule = '"pidone" is reserved (it names pidone\'s own log lines); pick another name'
    write(cwd, procfile="pidone: x\n")
    assert problems() == [f"Procfile:1: {rule}"]
    (cwd / "Procfile").unlink()
    write(cwd, toml='[process.pidone]\ncommand = "y"\n[process.web]\ncommand = "z"\n')
    assert problems() == [f"pidone.toml:1: [process.pidone]: {rule}"]


# --- attacks: each a clear problem with its line, never a traceback ------------------------


@pytest.mark.parametrize(
    "body",
    [
        "user = 4294967295",  # (uid_t)-1: setresuid(-1, ...) changes nothing, root stays
        'user = "4294967295"',
        "user = 99999999999",
        'group = "99999999999"',
        "group = 4294967295",
        "groups = [4294967295]",
        'user = "000000000000000000004294967295"',
    ],
)
def test_uid_minus_one_and_ids_past_32_bits_are_refused(cwd: Path, body: str) -> None:
    assert one_problem(cwd, body) == (
        f"pidone.toml:3: [process.web] {body}: is not a valid id; "
        "use a number from 0 to 4294967294, or a name"
    )


def test_socket_owner_and_group_past_32_bits_are_refused(cwd: Path) -> None:
    write(
        cwd,
        procfile="web: serve\n",
        toml='[socket.a]\npath = "/run/a.sock"\nowner = 4294967295\ngroup = "99999999999"\n',
    )
    assert [p.partition(": is")[0] for p in problems()] == [
        "pidone.toml:3: [socket.a] owner = 4294967295",
        'pidone.toml:4: [socket.a] group = "99999999999"',
    ]


def test_the_highest_id_is_kept_as_a_number(cwd: Path) -> None:
    spec = one_process(cwd, 'user = 4294967294\ngroup = "0"\ngroups = ["007"]')
    assert (spec.user, spec.group, spec.groups) == ("4294967294", "0", ("7",))


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("umask = 27", 'is read as a decimal number; write it as "0027" or 0o27'),
        ("umask = 22", 'is read as a decimal number; write it as "0022" or 0o22'),
    ],
)
def test_mode_written_as_a_decimal_integer_is_refused_with_how_to_write_it(
    cwd: Path, body: str, message: str
) -> None:
    assert one_problem(cwd, body) == f"pidone.toml:3: [process.web] {body}: {message}"


def test_socket_modes_as_decimal_integers_are_refused_in_every_layout(cwd: Path) -> None:
    write(
        cwd,
        procfile="web: serve\n",
        toml='[socket.a]\npath = "/run/a.sock"\nmode = 660\ndirectory_mode = 2750\n'
        '[socket.b]\npath = "/run/b.sock"\nmode = 0o660\n'
        '[socket]\nc = { path = "/run/c.sock", mode = 432 }\n',
    )
    assert problems() == [
        "pidone.toml:3: [socket.a] mode = 660: is read as a decimal number; "
        'write it as "0660" or 0o660',
        "pidone.toml:4: [socket.a] directory_mode = 2750: is read as a decimal number; "
        'write it as "2750" or 0o2750',
        # 432 is what 0o660 arrives as: the text tells the two apart
        "pidone.toml:9: [socket.c] mode = 432: is read as a decimal number; "
        'write it as "0432" or 0o432',
    ]


def test_modes_as_0o_literals_in_every_layout(cwd: Path) -> None:
    write(
        cwd,
        toml='[process.web]\ncommand = "serve"\numask = 0o0_27\n'
        '[socket.a]\npath = "/run/a.sock"\nmode = 0o640\ndirectory_mode = 0o2750 # dir\n'
        '[socket.c]\npath = "/run/c.sock"\nmode = "660"\n'
        '[socket]\nb = { path = "/run/b.sock", "mode" = 0o600 }\n',
    )
    loaded = load_here()
    assert loaded.processes["web"].umask == 0o27
    modes = {n: (s.mode, s.directory_mode) for n, s in loaded.sockets.items()}
    assert modes == {"a": (0o640, 0o2750), "b": (0o600, 0o2750), "c": (0o660, 0o2750)}


def test_a_0o_literal_above_the_maximum_is_refused(cwd: Path) -> None:
    assert one_problem(cwd, "umask = 0o1777") == (
        'pidone.toml:3: [process.web] umask = 0o1777: must be an octal string up to "0777", '
        'like "0027", or an octal number like 0o27'
    )


@pytest.mark.parametrize(
    "body",
    ["stop_timeout = 2592000", "stop_timeout = inf", "stop_timeout = 1e+300"],
)
def test_duration_past_epolls_range_is_refused(cwd: Path, body: str) -> None:
    assert one_problem(cwd, body) == f"pidone.toml:3: [process.web] {body}: {SECONDS_RULE}"


@pytest.mark.parametrize(
    "body",
    [
        "stop_timeout = 2592000",
        "settle_time = 2592000",
        "backoff_max = 100000.0",
        "fatal_window = 86400.5",
        "backoff_reset = 86400.5",
    ],
)
def test_every_duration_setting_has_the_one_range(cwd: Path, body: str) -> None:
    write(cwd, procfile="web: serve\n", toml=f"[pidone]\n{body}\n")
    assert problems()[0].startswith(f"pidone.toml:2: [pidone] {body}: must be")
    assert "86400" in problems()[0]


@pytest.mark.parametrize("value", ['"settle:2592000"', '"settle:inf"', '"settle:1e3"'])
def test_settle_past_the_range_or_not_plain_decimal_is_refused(cwd: Path, value: str) -> None:
    assert one_problem(cwd, f"ready = {value}").endswith(
        'must be "settle:SECONDS" with SECONDS from 0 to 86400 (one day), like "settle:2.5"'
    )


def test_one_day_is_the_longest_duration(cwd: Path) -> None:
    spec = one_process(cwd, 'stop_timeout = 86400\nready = "settle:86400"')
    assert (spec.stop_timeout, spec.ready.seconds) == (86400.0, 86400.0)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('stop_signal = "\u00b9\u2075"', "not a signal name"),  # "15" in superscripts
        ('ready = "tcp:db:\u00b9\u2075"', 'must be "tcp:HOST:PORT"'),
        ('ready = "http://db:\u00b9\u2075/"', "must be a URL with a host"),
        ('ready = "settle:\u0661"', 'must be "settle:SECONDS"'),  # Arabic-Indic 1
        ('user = "\u00b9\u2075"', None),  # a name (not a number): looked up later
    ],
)
def test_superscript_digits_are_not_numbers(cwd: Path, body: str, message: str | None) -> None:
    if message is None:
        assert one_process(cwd, body).user == "\u00b9\u2075"
        return
    found = one_problem(cwd, body)
    assert found.startswith(f"pidone.toml:3: [process.web] {body.partition(' = ')[0]} = ")
    assert message in found


def test_superscript_port_in_metrics_is_refused(cwd: Path) -> None:
    write(cwd, procfile="web: serve\n", toml='[pidone]\nmetrics = "0.0.0.0:\u00b9\u2075"\n')
    assert problems() == [
        'pidone.toml:2: [pidone] metrics = "0.0.0.0:\u00b9\u2075": must be "HOST:PORT", '
        'like "127.0.0.1:9100"'
    ]


def test_toml_nested_5000_deep_is_refused_with_its_line(cwd: Path) -> None:
    write(cwd, procfile="web: serve\n", toml="a = 1\n\nx = " + "[" * 5000 + "]" * 5000 + "\n")
    assert problems() == [
        "pidone.toml:3: arrays or tables nested more than 32 deep; write it flatter"
    ]


def test_toml_inline_tables_nested_5000_deep_are_refused(cwd: Path) -> None:
    write(cwd, procfile="web: serve\n", toml="x = " + "{a=" * 5000 + "1" + "}" * 5000 + "\n")
    assert problems() == [
        "pidone.toml:1: arrays or tables nested more than 32 deep; write it flatter"
    ]


@pytest.mark.parametrize(
    "text",
    ["a" + ".a" * 100_000 + " = 1\n", "[" + ".".join(["t"] * 100_000) + "]\n"],
)
def test_toml_key_of_100000_dotted_parts_is_refused(cwd: Path, text: str) -> None:
    # tomllib's memory grows with the square of the parts: 100,000 ran out
    write(cwd, procfile="web: serve\n", toml=text)
    assert problems() == ["pidone.toml:1: a key of more than 32 dotted parts; write it flatter"]


def test_shape_check_ignores_brackets_and_dots_in_strings_and_comments(cwd: Path) -> None:
    deep = "[" * 40
    write(
        cwd,
        toml=f'[process.web] # {deep}\ncommand = "echo {deep}"\n'
        f'environment = {{ A = \'{deep}\', B = """\n{deep}.{"." * 40}""" }}\n'
        "after = [\n  # a.b.c\n]\n",
    )
    assert load_here().processes["web"].environment["A"] == deep


def test_a_config_file_over_1_mib_is_refused(cwd: Path) -> None:
    (cwd / "Procfile").write_text("web: serve\n" + "# padding\n" * 110_000)
    assert problems() == [
        "Procfile: larger than 1024 KiB; a configuration file is never that big, "
        "check the path given to -f"
    ]


def test_nul_in_a_command_or_environment_value_is_refused_with_its_line(cwd: Path) -> None:
    write(
        cwd,
        procfile="web: serve\0x\n",
        toml='[process.job]\ncommand = "a\\u0000b"\n'
        '[process.env]\ncommand = "c"\nenvironment = { A = "x\\u0000" }\n',
    )
    nul = "holds a NUL character (\\u0000), which no name, path or argument can; remove it"
    assert problems() == [
        "Procfile:1: holds a NUL character, which no command can; remove it",
    ]
    write(cwd, procfile="web: serve\n")
    assert problems() == [
        f'pidone.toml:2: [process.job] command = "a\\u0000b": {nul}',
        f'pidone.toml:5: [process.env] environment = {{ A = "x\\u0000" }}: {nul}',
    ]


def test_an_expanded_readiness_target_is_bounded_too(cwd: Path) -> None:
    write(
        cwd,
        toml='[process.web]\ncommand = "serve"\nready = "file:${A}${A}"\n',
        env="A=" + "x" * (70 * 1024) + "\n",
    )
    assert problems() == [
        'pidone.toml:3: [process.web] ready = "file:${A}${A}": expands to more than 128 KiB '
        "(the kernel's limit for one environment value or argument); use fewer or shorter "
        "${VAR} references"
    ]


def test_a_long_bad_value_is_cut_short_in_its_message(cwd: Path) -> None:
    found = one_problem(cwd, f'restart = "{"x" * 5000}"')
    assert len(found) < 400
    assert '..." must be one of' in found or "...: must be one of" in found


def test_20000_processes_times_10000_variables_are_refused_before_they_are_built(
    cwd: Path,
) -> None:
    # 390 KB of files; each process's own environment copy made 2 * 10**8 entries
    write(
        cwd,
        procfile="".join(f"p{n}: serve\n" for n in range(20_000)),
        env="".join(f"V{n}=x\n" for n in range(10_000)),
    )
    assert problems() == [
        "Procfile:105: [process.p104]: the environments of all processes add up to more "
        f"than {config.MAX_ENV_ENTRIES} variables; define fewer processes or variables"
    ]


def test_an_environment_exec_would_refuse_with_e2big_is_refused_by_check(cwd: Path) -> None:
    from pidone.config import identity

    write(
        cwd,
        procfile="one: serve\nmany: serve\n",
        # 30 values of 100 KiB: 3 MB, over ARG_MAX; and one of 70,000 two-byte
        # characters: under the 128 KiB of characters, over exec's 131072 bytes
        env="B=" + "x" * (100 * 1024) + "\n" + "".join(f"V{n}=${{B}}\n" for n in range(30)),
        toml="[process.one]\nclear_env = false\n[process.many]\nclear_env = true\n"
        'environment = { W = "' + "\u00e9" * 70_000 + '" }\n',
    )
    with pytest.raises(ConfigError) as caught:
        config.load(None, None, None, environ={}, checks=[identity.check])
    assert [p.partition(": its")[0].partition(": an")[0] for p in caught.value.problems] == [
        "pidone.toml:1: [process.one]",
        "pidone.toml:3: [process.many]",
    ]
    assert "more than the 131072 bytes exec takes (E2BIG)" in caught.value.problems[1]
    assert "exec takes (ARG_MAX, E2BIG); shorten them" in caught.value.problems[0]


# --- PORT, as foreman and honcho give it --------------------------------------------------


def ports(loaded: Config) -> dict[str, str | None]:
    return {name: spec.env.get("PORT") for name, spec in loaded.processes.items()}


def test_port_is_5000_then_5100_5200_in_procfile_then_toml_order(cwd: Path) -> None:
    write(
        cwd,
        procfile="web: serve\nworker: work\nclock: tick\n",
        toml='[process.clock]\nuser = "app"\n[process.extra]\ncommand = "x"\n',
    )
    assert ports(load_here()) == {
        "web": "5000",
        "worker": "5100",
        "clock": "5200",
        "extra": "5300",
    }


def test_port_base_comes_from_dotenv_then_the_environment(cwd: Path) -> None:
    write(cwd, procfile="web: serve\nworker: work\n")
    assert ports(load_here({"PORT": "8000"})) == {"web": "8000", "worker": "8100"}
    write(cwd, env="PORT=3000\n")  # .env wins, as in foreman and honcho
    assert ports(load_here({"PORT": "8000"})) == {"web": "3000", "worker": "3100"}


def test_port_key_chooses_one_and_environment_port_wins(cwd: Path) -> None:
    write(
        cwd,
        procfile="web: serve\nworker: work\nadmin: adm\n",
        toml='[process.worker]\nport = 9000\n[process.admin]\nenvironment = { PORT = "81" }\n',
    )
    assert ports(load_here()) == {"web": "5000", "worker": "9000", "admin": "81"}


def test_port_is_in_environment_values_and_readiness_targets(cwd: Path) -> None:
    write(
        cwd,
        procfile="db: serve\nweb: serve\n",
        toml="""[process.web]
environment = { URL = "http://127.0.0.1:${PORT}/" }
ready = "tcp:127.0.0.1:$PORT"
""",
    )
    web = load_here().processes["web"]
    assert web.environment == {"URL": "http://127.0.0.1:5100/"}
    assert web.ready == ReadyCheck("tcp", "127.0.0.1:5100", host="127.0.0.1", port=5100)


def test_port_key_and_environment_port_together_are_refused(cwd: Path) -> None:
    write(cwd, toml='[process.web]\ncommand = "x"\nport = 80\nenvironment = { PORT = "81" }\n')
    assert problems() == [
        "pidone.toml:3: [process.web] port = 80: and environment.PORT both set PORT; "
        "keep only one of the two"
    ]


@pytest.mark.parametrize("value", [0, 65536, -1, "80", True, 8.5])
def test_port_key_out_of_range_is_refused(cwd: Path, value: object) -> None:
    shown = json.dumps(value) if not isinstance(value, bool) else "true"
    write(cwd, toml=f'[process.web]\ncommand = "x"\nport = {shown}\n')
    assert problems() == [
        f"pidone.toml:3: [process.web] port = {shown}: must be a TCP port from 1 to 65535, "
        "like port = 8000"
    ]


def test_a_base_port_that_is_not_a_port_is_refused_once(cwd: Path) -> None:
    write(cwd, procfile="web: serve\nworker: work\n")
    assert problems({"PORT": "http"}) == [
        'PORT in the environment = "http": not a port number from 1 to 65535; it is the base '
        "of each process's PORT (5000, 5100, ...): fix it, or set port = N in each "
        "[process.NAME]"
    ]
    write(cwd, env="PORT=99999\n")
    assert problems()[0].startswith('.env: PORT = "99999": not a port number')
    # Not needed when every process has its own.
    write(cwd, toml="[process.web]\nport = 1\n[process.worker]\nport = 2\n")
    assert ports(load_here()) == {"web": "1", "worker": "2"}


def test_a_port_past_65535_is_refused_with_the_process(cwd: Path) -> None:
    write(cwd, procfile="web: serve\nworker: work\n")
    assert problems({"PORT": "65500"}) == [
        "Procfile:2: [process.worker]: its PORT would be 65600 (65500 + 100 x its position 1), "
        "past 65535; set port = N in [process.worker], or a lower base PORT"
    ]


# --- readiness targets expand as commands do ------------------------------------------------


def test_readiness_targets_expand_from_the_process_environment(cwd: Path) -> None:
    write(
        cwd,
        procfile="redis: redis-server --port ${REDIS_PORT}\n",
        env="REDIS_PORT=6380\nSOCK=/run/app\n",
        toml='[process.redis]\nready = "tcp:127.0.0.1:${REDIS_PORT}"\n'
        '[process.web]\ncommand = "x"\nready = "unix:${SOCK:-/run}/app.sock"\n'
        '[process.api]\ncommand = "x"\nready = "http://127.0.0.1:${PORT}/health"\n',
    )
    loaded = load_here()
    assert loaded.processes["redis"].ready == ReadyCheck(
        "tcp", "127.0.0.1:6380", host="127.0.0.1", port=6380
    )
    assert loaded.processes["web"].ready == ReadyCheck(
        "unix", "/run/app/app.sock", path="/run/app/app.sock"
    )
    assert loaded.processes["api"].ready.port == 5200


def test_a_readiness_target_with_a_question_mark_form_says_its_message(cwd: Path) -> None:
    write(cwd, toml='[process.web]\ncommand = "x"\nready = "tcp:127.0.0.1:${DB_PORT:?set it}"\n')
    assert problems() == [
        'pidone.toml:3: [process.web] ready = "tcp:127.0.0.1:${DB_PORT:?set it}": '
        "DB_PORT is not set: set it"
    ]


def test_a_readiness_target_sees_what_the_child_sees_so_not_with_clear_env(cwd: Path) -> None:
    write(
        cwd,
        toml='[process.web]\ncommand = "x"\nclear_env = true\nready = "tcp:h:${P:-7}"\n',
    )
    assert load_here({"P": "8"}).processes["web"].ready.port == 7


def test_environment_values_take_every_posix_form(cwd: Path) -> None:
    write(
        cwd,
        env="FILE=/srv/app.tar.gz\n",
        toml='[process.web]\ncommand = "x"\n'
        'environment = { A = "${FILE##*/}", B = "${PORT:=3000}", C = "${NONE-d}", '
        'D = "${#FILE}" }\n',
    )
    assert load_here().processes["web"].environment == {
        "A": "app.tar.gz",
        "B": "5000",
        "C": "d",
        "D": "15",
    }


def test_a_dotenv_question_mark_form_is_refused_with_its_line(cwd: Path) -> None:
    write(cwd, procfile="web: x\n", env="A=1\nURL=${DATABASE_URL:?set DATABASE_URL}\n")
    assert problems() == [".env:2: URL: DATABASE_URL is not set: set DATABASE_URL"]


# --- warnings (pidone check prints them; nothing is refused) ---------------------------------


def test_an_undefined_variable_in_a_command_is_a_warning_with_its_line(cwd: Path) -> None:
    write(
        cwd,
        procfile='rails: [ -n "$RAILS_STARTUP" ] && $RAILS_STARTUP || bin/rails server\n'
        "web: serve --port $PORT ${WORKERS:-2} $FROM_ENV $FROM_DOTENV $HOME\n",
        env="FROM_DOTENV=1\n",
        toml='[process.web]\nuser = "app"\nready = "exec:check $CHECK_URL"\n'
        '[process.job]\ncommand = "run $JOB_ID"\n',
    )
    loaded = load_here({"FROM_ENV": "x"})
    assert list(loaded.warnings) == [
        'Procfile:1: warning: process "rails" command uses $RAILS_STARTUP, which nothing '
        "defines (pidone's environment, .env, environment, PORT), so the shell makes it "
        "empty; define it, or write ${RAILS_STARTUP:-default}",
        'pidone.toml:3: warning: process "web" ready check uses $CHECK_URL, which nothing '
        "defines (pidone's environment, .env, environment, PORT), so the shell makes it "
        "empty; define it, or write ${CHECK_URL:-default}",
        'pidone.toml:5: warning: process "job" command uses $JOB_ID, which nothing defines '
        "(pidone's environment, .env, environment, PORT), so the shell makes it empty; "
        "define it, or write ${JOB_ID:-default}",
    ]


def test_a_defined_variable_gives_no_warning(cwd: Path) -> None:
    write(cwd, procfile="web: serve $A ${B} \"$C\" '$UNDEFINED_BUT_QUOTED'\n", env="B=1\n")
    assert load_here({"A": "1", "C": "1"}).warnings == ()


@pytest.mark.parametrize("name", ["Procfile", "pidone.toml", ".env"])
def test_a_byte_order_mark_is_skipped_and_named_in_a_warning(cwd: Path, name: str) -> None:
    texts = {"Procfile": "web: serve\n", "pidone.toml": '[process.job]\ncommand = "x"\n'}
    texts[".env"] = "A=1\n"
    for file, text in texts.items():
        (cwd / file).write_text(("\ufeff" if file == name else "") + text)
    loaded = load_here()
    assert list(loaded.processes) == ["web", "job"]
    assert loaded.processes["web"].env["A"] == "1"
    assert list(loaded.warnings) == [
        f"{name}:1: warning: starts with a UTF-8 byte-order mark (U+FEFF), which pidone skips; "
        'save the file as UTF-8 without one (not "UTF-8 with BOM")'
    ]


# --- autostart, `pidone run NAME...` ----------------------------------------------------


def test_a_started_process_after_an_autostart_false_one_is_refused(cwd: Path) -> None:
    write(
        cwd,
        toml='[process.migrate]\ncommand = "m"\nautostart = false\n'
        '[process.web]\ncommand = "w"\nafter = ["migrate"]\n',
    )
    assert problems() == [
        'pidone.toml:6: [process.web] after = ["migrate"]: "migrate" has autostart = false, '
        "so web would wait for it forever; set autostart = false in [process.web] too "
        "(`pidone ctl start web` then starts migrate first), or remove migrate from after"
    ]


def test_run_names_keeps_them_and_what_they_are_after_each_started(cwd: Path) -> None:
    write(
        cwd,
        procfile="redis: r\nweb: w\nworker: k\nclock: c\n",
        toml='[process.web]\nafter = ["redis"]\nautostart = false\n'
        '[process.clock]\nafter = ["worker"]\nautostart = false\n'
        '[process.worker]\nafter = ["redis"]\nautostart = false\n',
    )
    selected = config.select(load_here(), ["clock"])
    assert list(selected.processes) == ["redis", "worker", "clock"]
    assert all(spec.autostart for spec in selected.processes.values())
    assert selected.start_waves == [["redis"], ["worker"], ["clock"]]
    assert selected.stop_waves == [["clock"], ["worker"], ["redis"]]


def test_run_with_an_unknown_name_says_which_are_known(cwd: Path) -> None:
    write(cwd, procfile="redis: r\nweb: w\n")
    with pytest.raises(ConfigError) as caught:
        config.select(load_here(), ["web", "wbe", "nope"])
    assert caught.value.problems == [
        'no process wbe in Procfile; known: redis, web; did you mean "web"?',
        "no process nope in Procfile; known: redis, web",
    ]
    assert caught.value.exit_code == 2


# --- touch ------------------------------------------------------------------------------


def test_touch_paths_are_absolute_relative_to_the_configurations_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "pidone.toml").write_text(
        '[process.web]\ncommand = "w"\n'
        'touch = ["reload", "../deploy/./done", "/srv/x", "reload"]\ntouch_signal = "hup"\n'
    )
    monkeypatch.chdir("/")  # not pidone's working directory
    spec = config.load(None, conf / "pidone.toml", None, environ={}).processes["web"]
    assert spec.touch == (str(conf / "reload"), str(tmp_path / "deploy" / "done"), "/srv/x")
    assert spec.touch_signal == signal.SIGHUP


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            'touch = "reload"',
            '[process.web] touch = "reload": must be a list of file paths, '
            'like ["/srv/app/reload"]',
        ),
        ('touch = ["/"]', "[process.web] touch = [\"/\"]: '/' is no file path; name a file"),
        (
            'touch_signal = "HUP"',
            '[process.web] touch_signal = "HUP": does nothing without touch; '
            'add touch = ["PATH"], or remove it',
        ),
    ],
)
def test_bad_touch_keys(cwd: Path, body: str, message: str) -> None:
    assert message in one_problem(cwd, body)


def test_more_than_64_touch_paths_in_all_is_refused(cwd: Path) -> None:
    many = ", ".join(f'"/srv/t{i}"' for i in range(40))
    write(
        cwd,
        toml=f'[process.a]\ncommand = "a"\ntouch = [{many}]\n'
        f'[process.b]\ncommand = "b"\ntouch = [{many}]\n',
    )
    found = problems()
    assert len(found) == 1
    assert found[0].startswith("pidone.toml:6: [process.b] touch = [")
    assert found[0].endswith(
        "more than 64 touch paths in all processes together; have the deploy touch fewer files"
    )


def test_pid_namespace_with_a_pidfile_is_refused_as_the_launchers_exit_would_end_it(
    cwd: Path,
) -> None:
    assert one_problem(cwd, 'pidfile = "/run/app.pid"\npid_namespace = true') == (
        "pidone.toml:4: [process.web] pid_namespace = true: a pidfile process daemonizes, and"
        " its launcher's exit would end its PID namespace with the daemon in it; drop pidfile"
        " (run it in the foreground) or pid_namespace"
    )


# --- the failure policy ----------------------------------------------------------------------

POSITIVE_RULE = "must be more than 0 seconds and at most 86400, like 10 or 2.5"
CODES_RULE = "must be a list of exit codes from 0 to 255, like [0, 3]"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("ready_timeout = 0", POSITIVE_RULE),
        ("ready_timeout = 86401", SECONDS_RULE),
        ('ready_timeout = "5"', SECONDS_RULE),
        ("backoff_initial = 0", POSITIVE_RULE),
        ("backoff_max = -1", SECONDS_RULE),
        ("fatal_after = 0", "must be a whole number of at least 1, like 5"),
        ("fatal_window = inf", SECONDS_RULE),
        ("success_exit_codes = []", CODES_RULE),
        ("success_exit_codes = [0, 256]", CODES_RULE),
        ("success_exit_codes = [-1]", CODES_RULE),
        ("success_exit_codes = [true]", CODES_RULE),
        ("success_exit_codes = 0", CODES_RULE),
        ('on_fatal = "quit"', 'must be one of "stay", "exit"'),
        ('on_fatal = "Exit"', 'must be one of "stay", "exit"; did you mean "exit"?'),
        ('required = "yes"', "must be true or false (without quotes)"),
    ],
)  # fmt: skip
def test_bad_failure_policy_values(cwd: Path, body: str, message: str) -> None:
    assert one_problem(cwd, f'ready = "tcp:127.0.0.1:1"\n{body}') == (
        f"pidone.toml:4: [process.web] {body}: {message}"
    )


def test_failure_policy_defaults_to_pidones_and_is_overridden_per_process(cwd: Path) -> None:
    write(
        cwd,
        toml="""\
[pidone]
backoff_initial = 2
backoff_max = 9
fatal_after = 7
fatal_window = 70
[process.a]
command = "a"
[process.b]
command = "b"
backoff_max = 4
fatal_after = 1
ready_timeout = 2.5
success_exit_codes = [0, 3, 3]
on_fatal = "exit"
required = true
""",
    )
    a, b = load_here().processes.values()
    policy = ("backoff_initial", "backoff_max", "fatal_after", "fatal_window")
    assert [getattr(a, key) for key in policy] == [2.0, 9.0, 7, 70.0]
    assert [getattr(b, key) for key in policy] == [2.0, 4.0, 1, 70.0]
    assert (a.ready_timeout, a.success_exit_codes, a.on_fatal, a.required) == (
        None, (0,), "stay", False
    )  # fmt: skip
    assert (b.ready_timeout, b.success_exit_codes, b.on_fatal, b.required) == (
        2.5, (0, 3), "exit", True
    )  # fmt: skip


@pytest.mark.parametrize(
    ("pidone", "body", "message"),
    [
        ("", "backoff_max = 0.1",
         "[process.web] backoff_max = 0.1: is below backoff_initial (0.5); make it at least that"),
        ("backoff_max = 3", "backoff_initial = 5",
         "[process.web] backoff_initial = 5: is above backoff_max (3.0, from [pidone]); make it "
         "at most that, or set backoff_max here too"),
    ],
)  # fmt: skip
def test_a_process_backoff_max_below_its_backoff_initial_is_refused(
    cwd: Path, pidone: str, body: str, message: str
) -> None:
    write(cwd, toml=f'[pidone]\n{pidone}\n[process.web]\ncommand = "serve"\n{body}\n')
    assert problems() == [f"pidone.toml:5: {message}"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("ready_timeout = 1",
         "ready_timeout = 1: is not longer than its settle time (1 s, as it has no ready check): "
         "it would be stopped before it could be ready; make it longer, or add a ready check"),
        ('on_fatal = "exit"\nrestart = "never"',
         'on_fatal = "exit": does nothing with restart = "never": it is never restarted, so '
         'never FATAL; remove it, or use restart = "on-failure"'),
        ("required = true\ncontrol = true",
         "required = true: does nothing with control = true: its exit stops pidone, so it is "
         "never FATAL; remove it"),
    ],
)  # fmt: skip
def test_failure_policy_keys_that_cannot_act_are_refused(
    cwd: Path, body: str, message: str
) -> None:
    assert one_problem(cwd, body) == f"pidone.toml:3: [process.web] {message}"


def test_ready_timeout_past_the_settle_time_is_accepted(cwd: Path) -> None:
    write(cwd, toml='[process.web]\ncommand = "serve"\nready = "settle:2"\nready_timeout = 2.5\n')
    assert load_here().processes["web"].ready_timeout == 2.5


def test_a_pidone_backoff_problem_is_reported_once_not_once_per_process(cwd: Path) -> None:
    write(cwd, procfile="a: x\nb: y\n", toml="[pidone]\nbackoff_initial = 5\nbackoff_max = 3\n")
    assert problems() == [
        "pidone.toml:3: [pidone] backoff_max = 3: is below backoff_initial (5.0); "
        "make it at least that"
    ]
