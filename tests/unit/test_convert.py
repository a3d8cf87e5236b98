"""`pidone import`'s pure converter (src/pidone/convert/) on the seeds' configs
(tests/fixtures/import/seed*) and on configs we wrote shaped like public ones;
the command line's refusals (exit 2) through cli.main."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import pytest
import tomllib

from pidone import cli
from pidone import commands as commands_module
from pidone.config import procfile
from pidone.convert import supervisord, uwsgi, write
from pidone.convert.ini import BadInput
from pidone.convert.model import Conversion, procfile_name

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "import"
ENV = {"PATH": "/usr/bin:/bin", "HOME": "/home/site"}


def convert(name: str, environ: dict[str, str] | None = None) -> Conversion:
    path = FIXTURES / name
    text = path.read_text()
    env = ENV if environ is None else environ
    if name.endswith(".ini"):
        return uwsgi.convert(text, str(path), env)
    return supervisord.convert(text, str(path), env, "host1")


def toml(conv: Conversion) -> dict[str, Any]:
    return tomllib.loads(write.pidone_toml(conv))


def commands(conv: Conversion) -> dict[str, str]:
    entries = procfile.parse(write.procfile(conv), "Procfile")
    return {entry.name: entry.command for entry in entries}


def notes(conv: Conversion) -> list[str]:
    return write.notes(conv)


def note_at(conv: Conversion, line: int) -> list[str]:
    return [n for n in notes(conv) if n.startswith(f"{conv.path}:{line}:")]


# --- the seeds ------------------------------------------------------------------------


def test_seed_002_djangosite_becomes_one_process_with_its_directory_and_umask() -> None:
    conv = convert("seed002-djangosite.conf")
    assert commands(conv) == {
        "django": "/srv/www/djangosite/app/current/env/bin/python manage.py run_gunicorn "
        "127.0.0.1:9011"
    }
    assert toml(conv)["process"] == {
        "django": {
            "directory": "/srv/www/djangosite/app/current",
            "umask": "0022",  # [supervisord] umask, inherited by every child
            "restart": "on-failure",  # supervisord's default autorestart = unexpected
        }
    }
    assert "pidone" not in toml(conv)
    # every section with no pidone meaning is listed with its line
    assert [n.split(": ")[1] for n in notes(conv)] == [
        "[supervisord] childlogdir, logfile, logfile_maxbytes, logfile_backups, loglevel, pidfile",
        "[unix_http_server]",
        "[supervisorctl]",
        "[rpcinterface:supervisor]",
    ]
    assert note_at(conv, 12) and note_at(conv, 16) and note_at(conv, 19)


def test_seed_003_inline_semicolon_comments_are_not_part_of_the_command() -> None:
    conv = convert("seed003-testproj.conf")
    assert commands(conv) == {
        "gunicorn": "/home/akshar/.virtualenvs/PythonEnv/bin/gunicorn testproj.wsgi:application "
        "--bind 127.0.0.1:8000 --pid /tmp/gunicorn.pid"
    }
    assert toml(conv)["process"]["gunicorn"] == {
        "directory": "/tmp/testproj/",
        "restart": "on-failure",
    }
    assert len(note_at(conv, 3)) == 1  # [supervisord]'s own settings, listed once
    assert "minfds" in note_at(conv, 3)[0]


def test_seed_001_every_daemon_kind_becomes_a_process_and_legion_is_listed() -> None:
    conv = convert("seed001-daemons.ini")
    assert list(commands(conv)) == [
        "uwsgi", "memcached", "memcached-2", "mongod", "mongod-2", "postgres", "celery",
        "delayed_job", "dropbear", "my_daemon-sh",
    ]  # fmt: skip
    processes = toml(conv)["process"]
    assert commands(conv)["delayed_job"] == "/var/apps/foobar/script/delayed_job start"
    assert processes["delayed_job"]["pidfile"] == "/var/apps/foobar/tmp/pids/delayed_job.pid"
    assert processes["postgres"]["pidfile"] == "/db/foobar1/postmaster.pid"
    assert "pidfile" not in processes["memcached"]  # attach-daemon: pidone is its parent
    assert processes["memcached-2"]["pidfile"] == "/tmp/memcached.pid"
    assert processes["my_daemon-sh"] == {
        "directory": "/var/apps/foobar",
        "environment": {"RAILS_ENV": "production"},
        "user": "33",
        "group": "33",
        "pidfile": "/tmp/my.pid",
        "stop_signal": "SIGQUIT",
    }
    assert processes["uwsgi"] == {"ready": "notify", "stop_signal": "SIGINT"}
    assert commands(conv)["uwsgi"] == f"uwsgi --ini {conv.path}"
    (legion,) = note_at(conv, 19)
    assert "legion" in legion and "issue 17" in legion


# --- supervisord features ---------------------------------------------------------------


def test_site_numprocs_names_each_instance_and_lists_the_name_mapping() -> None:
    conv = convert("site-supervisord.conf")
    assert list(commands(conv)) == [
        "redis",
        "web",
        "celery-01",
        "celery-02",
        "celery-beat",
        "flower",
    ]
    assert commands(conv)["celery-01"] == "celery -A site worker -n worker1@%h --loglevel=info"
    assert commands(conv)["celery-02"] == "celery -A site worker -n worker2@%h --loglevel=info"
    renamed = [n for n in notes(conv) if "named " in n]
    assert renamed == [
        f"{conv.path}:38: 'celery:01': named celery-01 (a Procfile name holds only letters, "
        'digits, "_" and "-")',
        f"{conv.path}:38: 'celery:02': named celery-02 (a Procfile name holds only letters, "
        'digits, "_" and "-")',
        f"{conv.path}:52: 'celery.beat': named celery-beat (a Procfile name holds only "
        'letters, digits, "_" and "-")',
    ]


def test_site_keys_map_to_pidone_keys() -> None:
    conv = convert("site-supervisord.conf")
    processes = toml(conv)["process"]
    here = str(FIXTURES)
    assert processes["web"]["environment"] == {
        "SITE_ROOT": here,  # [supervisord] environment reaches every child
        "LANG": "C.UTF-8",
        "DJANGO_SETTINGS_MODULE": "site.settings",
        "PATH": "${PATH}",  # %(ENV_PATH)s: pidone expands it from its own environment
        "PRICE": "5$$",  # a literal $ stays literal
    }
    assert commands(conv)["web"] == "gunicorn app:application --bind 127.0.0.1:8000 --workers 2"
    assert processes["web"]["user"] == "nobody"
    assert processes["web"]["umask"] == "0027"
    assert processes["flower"]["umask"] == "0002"  # its own wins
    celery = processes["celery-01"]
    assert (celery["stop_signal"], celery["stop_timeout"], celery["stop_target"]) == (
        "SIGQUIT", 75, "group",
    )  # fmt: skip
    assert celery["ready"] == "settle:5"
    assert processes["redis"]["ready"] == "settle:0"
    assert processes["celery-beat"]["autostart"] is False
    assert processes["celery-beat"]["restart"] == "never"
    assert processes["flower"]["restart"] == "always"
    assert celery["restart"] == "on-failure"
    # startretries = N: FATAL after N + 1 failed starts, each program its own
    assert [celery["fatal_after"], processes["celery-beat"]["fatal_after"]] == [2, 6]
    assert "fatal_after" not in processes["web"] and "pidone" not in toml(conv)
    # exitcodes: the exits supervisord does not restart under autorestart = unexpected
    assert celery["success_exit_codes"] == [0, 2]
    assert "success_exit_codes" not in processes["web"]


def test_site_priority_becomes_after_levels_without_cycling_dependents() -> None:
    processes = toml(convert("site-supervisord.conf"))["process"]
    assert "after" not in processes["redis"]
    assert processes["web"]["after"] == ["redis"]
    assert processes["celery-02"]["after"] == ["redis"]
    assert processes["flower"]["after"] == ["web", "celery-01", "celery-02"]
    assert processes["web"]["restart_dependents"] is False
    assert "after" not in processes["celery-beat"]  # autostart = false: in no order


def test_site_what_is_not_translated_is_listed_with_its_line() -> None:
    conv = convert("site-supervisord.conf")
    expected = {
        12: "[include]",
        15: "[group:site]",
        33: "[program:web] stdout_logfile, redirect_stderr",
        57: "[program:celery.beat] killasgroup = false",
        64: "[eventlistener:memmon]",
        68: "[fcgi-program:php]",
    }
    for line, what in expected.items():
        assert any(n.split(": ")[1] == what for n in note_at(conv, line)), (line, notes(conv))
    text = write.pidone_toml(conv)
    header = [line for line in text.splitlines() if line.startswith("#   ")]
    assert [line.removeprefix("#   ") for line in header] == notes(conv)


def test_supervisord_runs_no_shell_so_shell_syntax_is_quoted_as_plain_words() -> None:
    conv = convert("site-supervisord.conf")
    here = FIXTURES
    assert commands(conv)["flower"] == f"celery -A site flower '>' {here}/flower.log"
    assert (
        commands(conv)["celery-beat"] == f"celery -A site beat '--schedule={here}/beat-schedule;x'"
    )


def test_inline_comment_needs_whitespace_before_it_and_continuations_join() -> None:
    text = "[program:a]\ncommand = prog --x=1;2 ; a comment\n  --y\n\n  --z\n"
    conv = supervisord.convert(text, "/s/a.conf", {})
    assert conv.processes[0].command == "prog '--x=1;2' --y --z"  # a word, not a shell list


def test_env_expansion_in_a_command_becomes_a_quoted_shell_variable() -> None:
    text = "[program:a]\ncommand = run --name=%(ENV_POD)s-w1 %(ENV_ARGS)s\n"
    conv = supervisord.convert(text, "/s/a.conf", {})
    assert conv.processes[0].command == 'run "--name=${POD}-w1" "${ARGS}"'


def test_unset_env_in_directory_is_left_out_and_listed() -> None:
    text = "[program:a]\ncommand = run\ndirectory = %(ENV_APP_DIR)s\n"
    conv = supervisord.convert(text, "/s/a.conf", {})
    assert "directory" not in conv.processes[0].keys
    assert any("$APP_DIR is not set here" in n for n in note_at(conv, 3))
    conv = supervisord.convert(text, "/s/a.conf", {"APP_DIR": "/srv/a"})
    assert conv.processes[0].keys["directory"] == "/srv/a"
    assert any("expanded at import time" in n for n in note_at(conv, 3))


def test_names_map_deterministically_and_avoid_reserved_and_taken_names() -> None:
    taken: set[str] = set()
    assert [procfile_name(n, taken) for n in ("web:0", "web-0", "all", "", "a.b c", "pidone")] == [
        "web-0", "web-0-2", "all-2", "process", "a-b-c", "pidone-2",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[program:a]\ndirectory=/x\n", "a.conf:1: [program:a] has no command"),
        ("[program:a]\ncommand=x\nautorestart=sometimes\n", "a.conf:3: [program:a] autorestart"),
        ("[program:a]\ncommand=x\nnumprocs=2\n", "needs a process_name with %(process_num)s"),
        ("[program:a]\ncommand=x\nnumprocs=101\nprocess_name=%(process_num)s\n", "a.conf:3:"),
        ("[program:a]\ncommand=x 100%\n", "a.conf:2: command = 'x 100%': a % that is no"),
        ("[program:a]\ncommand=x %(nope)s\n", "%(nope)s is no supervisord expansion"),
        ("[program:a]\ncommand=x 'open\n", "a.conf:2: [program:a] command"),
        ("[program:a]\ncommand=x\nstopsignal=NOPE\n", "a.conf:3: [program:a] stopsignal"),
        ("[program:a]\ncommand=x\nenvironment=A=1,=2\n", "a.conf:3: environment"),
        ("[supervisord]\nlogfile=x\n", "no [program:NAME] section"),
        ("[include]\nfiles = conf.d/*.conf\n", "its [include] names the files that have them"),
        ("command=x\n", "a.conf:1: 'command=x' comes before any [section]"),
        ("[program:a]\ncommand=x\njunk line\n", "a.conf:3: 'junk line' is not a key = value"),
    ],
)
def test_bad_supervisord_input_is_refused_with_its_line(text: str, message: str) -> None:
    with pytest.raises(BadInput, match=None) as caught:
        supervisord.convert(text, "/s/a.conf", {})
    assert message in str(caught.value)


def test_a_bounded_width_keeps_a_format_from_growing_without_end() -> None:
    text = "[program:a]\ncommand=x %(process_num)99999999d\n"
    with pytest.raises(BadInput, match="a % that is no"):
        supervisord.convert(text, "/s/a.conf", {})


# --- uWSGI features ------------------------------------------------------------------------


def test_uwsgi_attach_daemon2_keys_map_to_pidone_keys() -> None:
    conv = convert("daemons-uwsgi.ini")
    processes = toml(conv)["process"]
    base = f"{FIXTURES}/"
    worker = processes["celery-2"]
    assert worker == {
        "directory": "/tmp",  # its chdir wins over [uwsgi] chdir
        "environment": {"APP_HOME": "${HOME}", "COST": "5$$"},
        "user": "nobody",
        "stop_signal": "SIGTERM",
        "reload_signal": "SIGHUP",
        "touch": [f"{FIXTURES}/reload.txt", f"{FIXTURES}/deploy.txt"],
        "stdin": True,
        "pid_namespace": True,
    }
    assert processes["watchdog"]["control"] is True  # attach-control-daemon
    assert processes["queue"]["control"] is True  # control=0: uWSGI turns it on anyway
    assert commands(conv)["queue"] == f"{base}/bin/queue ${{QUEUE_ARGS}}"
    assert processes["memcached"]["pidfile"] == "/tmp/memcached-test.pid"
    assert "pidfile" not in processes["celery"]  # smart-attach-daemon2: pidone's own child
    assert processes["uwsgi"] == {"ready": "notify", "stop_signal": "SIGTERM"}  # die-on-term
    assert commands(conv)["celery-2"] == "celery -A app worker -n w1@%k"
    listed = {n.split(": ")[1] for n in notes(conv)}
    assert "attach-daemon2 %k" in listed  # left as written, listed
    assert "daemonize" in listed and "[other]" in listed
    assert any("freq=3" in n for n in listed) and any("max_throttle=10" in n for n in listed)


def test_uwsgi_list_daemon_is_stopped_as_a_group() -> None:
    text = "[uwsgi]\nattach-daemon = cd /app/frontend && npm run dev\n"
    conv = uwsgi.convert(text, "/s/u.ini", {})
    (process,) = conv.processes
    assert (process.name, process.keys) == ("npm", {"stop_target": "group"})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[app]\nsocket=:1\n", "no [uwsgi] section"),
        ("[uwsgi]\n", "nothing to import"),
        ("[uwsgi]\nsmart-attach-daemon = /tmp/x.pid\n", "u.ini:2: smart-attach-daemon"),
        ("[uwsgi]\nattach-daemon2 = pidfile=/x\n", "u.ini:2: attach-daemon2 = 'pidfile=/x': no"),
        ("[uwsgi]\nattach-daemon2 = cmd=x,stopsignal=99\n", "u.ini:2: stopsignal=99"),
        ("[uwsgi]\nchdir = $(NOPE_X)\nattach-daemon = x\n", "u.ini:2: chdir"),
    ],
)
def test_bad_uwsgi_input_is_refused_with_its_line(text: str, message: str) -> None:
    with pytest.raises(BadInput) as caught:
        uwsgi.convert(text, "/s/u.ini", {})
    assert message in str(caught.value)


# --- the command line ------------------------------------------------------------------------


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = cli.main(["import", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_without_o_both_files_go_to_stdout_under_headers(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = run_cli([str(FIXTURES / "seed002-djangosite.conf")], capsys)
    assert code == 0
    procfile_part, toml_part = out.split("# ==> pidone.toml <==\n")
    assert procfile_part.startswith("# ==> Procfile <==\n")
    assert [e.name for e in procfile.parse(procfile_part, "-")] == ["django"]
    assert tomllib.loads(toml_part)["process"]["django"]["restart"] == "on-failure"
    assert err.count("pidone import: ") == 4


def test_o_refuses_to_overwrite_without_force(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = str(FIXTURES / "seed003-testproj.conf")
    (tmp_path / "pidone.toml").write_text("# mine\n")
    code, out, err = run_cli([source, "-o", str(tmp_path)], capsys)
    assert (code, out) == (2, "")
    assert f"{tmp_path}/pidone.toml: exists; pidone import does not overwrite it" in err
    assert (tmp_path / "pidone.toml").read_text() == "# mine\n"
    assert not (tmp_path / "Procfile").exists()  # nothing written
    code, _, err = run_cli([source, "-o", str(tmp_path), "--force"], capsys)
    assert code == 0
    assert (tmp_path / "Procfile").read_text() == write.procfile(convert("seed003-testproj.conf"))
    assert "[process.gunicorn]" in (tmp_path / "pidone.toml").read_text()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read it"),
        ("just text\n", "neither a supervisord config"),
        (b"\xff\xfe[program:a]", "not UTF-8 text"),
        ("[program:a]\ndirectory=/\n", "has no command"),
    ],
)
def test_bad_input_exits_2_with_a_clear_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str | bytes | None, message: str
) -> None:
    path = tmp_path / "in.conf"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    code, out, err = run_cli([str(path), "-o", str(tmp_path / "out")], capsys)
    assert (code, out) == (2, "")
    assert message in err
    assert not (tmp_path / "out").exists()


def test_import_help_names_its_options(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(["-h"], capsys)
    assert code == 0
    assert "-o DIR" in out and "--force" in out and "--from" in out


def test_uwsgi_daemon_inside_an_if_block_is_imported_and_listed() -> None:
    text = "[uwsgi]\nif-not-env = CI\nattach-daemon = watchmedo x\nendif =\n"
    conv = uwsgi.convert(text, "/s/u.ini", {})
    assert [p.name for p in conv.processes] == ["watchmedo"]  # no app: no uwsgi process
    (note,) = note_at(conv, 3)
    assert "inside if-not-env = 'CI' (line 2)" in note


def test_a_command_no_procfile_line_can_hold_goes_to_pidone_toml() -> None:
    conv = uwsgi.convert("[uwsgi]\nattach-daemon = run \\\\\nattach-daemon = ok\n", "/s/u.ini", {})
    assert commands(conv) == {"ok": "ok"}
    assert toml(conv)["process"]["run"] == {"command": "run \\\\"}


def test_uwsgi_ns_pid_with_a_pidfile_keeps_the_pidfile_and_lists_ns_pid() -> None:
    text = "[uwsgi]\nattach-daemon2 = cmd=memcached -d -P /tmp/m.pid,pidfile=/tmp/m.pid,ns_pid=1\n"
    conv = uwsgi.convert(text, "/s/u.ini", {})
    assert conv.processes[0].keys == {"pidfile": "/tmp/m.pid"}
    (note,) = note_at(conv, 2)
    assert "ns_pid: not translated: a daemon that forks away" in note
    text = "[uwsgi]\nattach-daemon2 = cmd=memcached,pidfile=/tmp/m.pid,daemonize=1,ns_pid=1\n"
    conv = uwsgi.convert(text, "/s/u.ini", {})
    assert conv.processes[0].keys == {"pid_namespace": True}  # uWSGI daemonized it: foreground


def test_a_repeated_supervisord_section_adds_to_the_first() -> None:
    text = "[program:a]\ncommand = one\n[program:b]\ncommand = b\n[program:a]\ncommand = two\n"
    conv = supervisord.convert(text, "/s/a.conf", {})
    assert [(p.name, p.command) for p in conv.processes] == [("a", "two"), ("b", "b")]


def test_placeholders_over_a_thousand_daemons_and_a_repeated_option_are_looked_up_once() -> None:
    # Each %(o) is found by bisection in o's own lines: a scan of every line
    # per placeholder took 100,000 x 60,000 steps here.
    text = "[uwsgi]\n" + "o = v\n" * 20_000 + ("attach-daemon = x " + "%(o)" * 100 + "\n") * 999
    conv = uwsgi.convert(text, "/s/u.ini", {})
    assert len(conv.processes) == 1 + 999  # o makes uWSGI itself a process
    assert conv.processes[-1].command == "x " + "v" * 100


def test_an_import_past_pidone_s_file_bound_is_refused_not_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # two priority levels of 100 x 5 processes: each of the upper 500 is after
    # all 500 below it, some 3 MB of `after` lists
    programs = "".join(
        f"[program:p{i}]\ncommand = x\nnumprocs = 100\npriority = {1 + i // 5}\n"
        "process_name = %(program_name)s_%(process_num)d\n"
        for i in range(10)
    )
    source = tmp_path / "big.conf"
    source.write_text(programs)
    code, out, err = run_cli([str(source), "-o", str(tmp_path / "out")], capsys)
    assert (code, out) == (2, "")
    assert "its pidone.toml would be larger than 1024 KiB, more than pidone reads" in err
    assert not (tmp_path / "out").exists()


def test_uwsgi_daemon2_numbers_given_as_names_are_translated_and_listed() -> None:
    text = "[uwsgi]\nattach-daemon2 = cmd=x,uid=www-data,stopsignal=QUIT\n"
    conv = uwsgi.convert(text, "/s/u.ini", {})
    assert conv.processes[0].keys == {"user": "www-data", "stop_signal": "SIGQUIT"}
    assert [n.split(": ")[1] for n in note_at(conv, 2)] == [
        "attach-daemon2 uid=www-data",
        "attach-daemon2 stopsignal=QUIT",
    ]


def test_from_names_the_kind_whatever_the_sections_say(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "odd.ini"
    source.write_text("[program:a]\ncommand = x\n")
    code, out, err = run_cli([str(source), "--from", "uwsgi"], capsys)
    assert (code, out) == (2, "")
    assert "no [uwsgi] section" in err
    code, out, _ = run_cli([str(source), "--from", "supervisord"], capsys)
    assert code == 0 and "\na: x\n" in out


# --- [include] followed (commands._include_reader reads the files for real) ----------

INCLUDED = Path(__file__).resolve().parents[1] / "fixtures" / "import-include"


def with_includes(main: Path, environ: dict[str, str] | None = None) -> Conversion:
    reader = commands_module._include_reader(main)
    return supervisord.convert(main.read_text(), str(main), environ or ENV, "host1", reader)


def imported_failure(main: Path) -> str:
    with pytest.raises(BadInput) as caught:
        with_includes(main)
    return str(caught.value)


def write_conf(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_an_include_is_followed_each_value_keeping_its_own_file_and_line() -> None:
    main = INCLUDED / "supervisord.conf"
    conv = with_includes(main)
    assert commands(conv) == {
        "web": "python3 -m http.server 8000 --bind 127.0.0.1",
        "redis": 'redis-server --port 6390 --save ""',
    }
    web = conv.processes[0]
    assert web.where == f"{main}:10"  # its section starts in the main file
    # %(here)s of an included file is that file's directory, as supervisord has it
    assert web.keys["directory"] == str(INCLUDED / "conf.d")
    assert web.keys["stop_signal"] == "SIGINT"  # from conf.d/20-web.conf
    assert not any("[include]" in n for n in notes(conv))  # followed: no "not followed"
    assert [n.split(": ")[0] for n in notes(conv)] == [f"{main}:4", f"{main}:12"]


def test_a_note_of_an_included_file_names_that_file_and_line(tmp_path: Path) -> None:
    main = write_conf(tmp_path / "supervisord.conf", "[include]\nfiles = conf.d/*.conf\n")
    worker = write_conf(
        tmp_path / "conf.d/w.conf", "; worker\n[program:w]\ncommand = celery\nbogus = 1\n"
    )
    conv = with_includes(main)
    assert note_at_file(conv, worker, 4) == [
        f"{worker}:4: [program:w] bogus: not a supervisord key; ignored"
    ]


def note_at_file(conv: Conversion, path: Path, line: int) -> list[str]:
    return [n for n in notes(conv) if n.startswith(f"{path}:{line}:")]


def test_included_files_merge_in_pattern_order_the_later_key_winning(tmp_path: Path) -> None:
    main = write_conf(
        tmp_path / "s.conf",
        "[include]\nfiles = b/*.conf %(here)s/a.conf\n[program:w]\ncommand = one\n",
    )
    write_conf(tmp_path / "b/2.conf", "[program:w]\ncommand = three\n")
    write_conf(tmp_path / "b/1.conf", "[program:w]\ncommand = two\nstopsignal = INT\n")
    write_conf(tmp_path / "a.conf", "[program:w]\ncommand = four\n")
    conv = with_includes(main)
    assert commands(conv) == {"w": "four"}
    assert conv.processes[0].keys["stop_signal"] == "SIGINT"


def test_a_pattern_matching_nothing_is_listed_as_supervisord_warns(tmp_path: Path) -> None:
    main = write_conf(
        tmp_path / "s.conf",
        "[include]\nfiles = none.d/*.conf gone.conf\n[program:w]\ncommand = x\n",
    )
    conv = with_includes(main)
    assert [n.split(": ", 1)[1] for n in note_at(conv, 2)] == [
        "[include] files: none.d/*.conf: matches no file (supervisord warns and goes on)",
        "[include] files: gone.conf: matches no file (supervisord warns and goes on)",
    ]


def test_an_include_in_an_included_file_is_not_followed_as_supervisord_does(
    tmp_path: Path,
) -> None:
    main = write_conf(tmp_path / "s.conf", "[include]\nfiles = a.conf\n")
    nested = write_conf(
        tmp_path / "a.conf", "[program:a]\ncommand = x\n[include]\nfiles = more/*.conf\n"
    )
    write_conf(tmp_path / "more/b.conf", "[program:b]\ncommand = y\n")
    conv = with_includes(main)
    assert commands(conv) == {"a": "x"}
    assert note_at_file(conv, nested, 3) == [
        f"{nested}:3: [include]: not followed: supervisord follows only its main file's"
        f" [include]; list these files in {main}:2"
    ]


def test_an_include_matching_its_own_file_is_refused_as_a_cycle(tmp_path: Path) -> None:
    main = write_conf(tmp_path / "s.conf", "[include]\nfiles = *.conf\n[program:a]\ncommand = x\n")
    assert imported_failure(main) == (
        f"{main}:2: [include] files: {main}: is {main} itself, a cycle; narrow the pattern to"
        " the other files"
    )


def test_an_include_through_a_symlink_to_its_own_file_is_refused_as_a_cycle(
    tmp_path: Path,
) -> None:
    main = write_conf(tmp_path / "s.conf", "[include]\nfiles = d/*\n[program:a]\ncommand = x\n")
    (tmp_path / "d").mkdir()
    (tmp_path / "d/loop.conf").symlink_to("../s.conf")
    assert "a cycle" in imported_failure(main)


def test_more_than_64_included_files_are_refused(tmp_path: Path) -> None:
    main = write_conf(tmp_path / "s.conf", "[include]\nfiles = a/*.conf b/*.conf\n")
    for n in range(40):
        write_conf(tmp_path / f"a/{n:02}.conf", f"[program:a{n}]\ncommand = x\n")
    for n in range(24):
        write_conf(tmp_path / f"b/{n:02}.conf", f"[program:b{n}]\ncommand = x\n")
    assert len(with_includes(main).processes) == 64
    write_conf(tmp_path / "b/99.conf", "")
    assert imported_failure(main) == (
        f"{main}:2: [include] files: {tmp_path}/b/*.conf: more than 64 files in all;"
        " import it in parts"
    )


def test_included_files_past_4_mib_in_all_are_refused(tmp_path: Path) -> None:
    main = write_conf(tmp_path / "s.conf", "[include]\nfiles = d/*.conf\n")
    comment = ("; " + "x" * 1000 + "\n") * 1000  # just under 1 MiB each
    for n in range(5):
        write_conf(tmp_path / f"d/{n}.conf", comment)
    message = imported_failure(main)
    assert message.startswith(f"{main}:2: [include] files: more than 4096 KiB in all with ")
    assert message.endswith("d/4.conf; import it in parts")


def test_an_included_file_over_the_file_bound_is_refused(tmp_path: Path) -> None:
    main = write_conf(tmp_path / "s.conf", "[include]\nfiles = big.conf\n")
    write_conf(tmp_path / "big.conf", ";" * (1024 * 1024 + 1))
    assert imported_failure(main) == (
        f"{main}:2: [include] files: {tmp_path}/big.conf: larger than 1024 KiB; not a config"
    )


def refused_in_time(main: Path) -> str:
    """imported_failure(main) from a thread given 10 s: a hang fails, not blocks."""
    got: list[str] = []
    thread = threading.Thread(target=lambda: got.append(imported_failure(main)), daemon=True)
    thread.start()
    thread.join(10)
    assert got, "the import hung"
    return got[0]


def test_an_include_matching_a_fifo_is_refused_not_hung(tmp_path: Path) -> None:
    main = write_conf(tmp_path / "s.conf", "[include]\nfiles = d/*.conf\n")
    (tmp_path / "d").mkdir()
    os.mkfifo(tmp_path / "d/fifo.conf")  # no writer: a plain open() would wait forever
    assert refused_in_time(main) == (
        f"{main}:2: [include] files: {tmp_path}/d/fifo.conf: is not a regular file (a FIFO, a"
        " device, a directory?); an [include] reads only files"
    )


def test_an_include_matching_dev_zero_is_refused_not_read(tmp_path: Path) -> None:
    main = write_conf(tmp_path / "s.conf", "[include]\nfiles = zero.conf\n")
    (tmp_path / "zero.conf").symlink_to("/dev/zero")
    assert "zero.conf: is not a regular file" in refused_in_time(main)


def test_an_include_symlink_loop_is_refused(tmp_path: Path) -> None:
    main = write_conf(tmp_path / "s.conf", "[include]\nfiles = a.conf\n")
    (tmp_path / "a.conf").symlink_to("b.conf")
    (tmp_path / "b.conf").symlink_to("a.conf")
    assert imported_failure(main) == (
        f"{main}:2: [include] files: {tmp_path}/a.conf: cannot read it: Too many levels of"
        " symbolic links"
    )


def test_an_include_without_files_is_refused_as_supervisord_does(tmp_path: Path) -> None:
    main = write_conf(tmp_path / "s.conf", "[include]\n[program:a]\ncommand = x\n")
    assert imported_failure(main).startswith(f"{main}:1: [include] has no files = ")


def test_an_include_with_an_unset_env_variable_is_refused(tmp_path: Path) -> None:
    main = write_conf(tmp_path / "s.conf", "[include]\nfiles = %(ENV_CONF_DIR)s/*.conf\n")
    assert "%(ENV_CONF_DIR)s is not set here" in imported_failure(main)
    write_conf(tmp_path / "c/a.conf", "[program:a]\ncommand = x\n")
    conv = with_includes(main, {**ENV, "CONF_DIR": str(tmp_path / "c")})
    assert commands(conv) == {"a": "x"}


def test_the_command_line_follows_an_include(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli([str(INCLUDED / "supervisord.conf")], capsys)
    assert code == 0, err
    assert "\nredis: redis-server --port 6390" in out
    assert "not followed" not in err
