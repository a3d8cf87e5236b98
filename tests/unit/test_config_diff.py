"""config/diff.py: what `pidone ctl reread` reports and `update` acts on."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

from pidone.config import load as config
from pidone.config.diff import (
    APPLIED,
    NEEDS_RESTART,
    RESTART_KEYS,
    SETTINGS,
    diff,
    lines,
)
from pidone.config.specs import Config, ProcessSpec, Settings


def load(tmp_path: Path, toml: str, env: str | None = None) -> Config:
    (tmp_path / "pidone.toml").write_text(toml)
    env_path = None
    if env is not None:
        env_path = tmp_path / ".env"
        env_path.write_text(env)
    return config.load(None, tmp_path / "pidone.toml", env_path, environ={})


BASE = """
[process.web]
command = "web --port 1"
[process.worker]
command = "worker"
after = ["web"]
"""


def test_the_same_configuration_read_again_is_nothing_to_do(tmp_path: Path) -> None:
    d = diff(load(tmp_path, BASE), load(tmp_path, BASE))
    assert d.empty
    assert d.unchanged == ("web", "worker")
    assert d.changed == ()
    assert d.added == d.removed == ()
    assert lines(d) == ["unchanged: web, worker", "nothing to do"]


def test_added_and_removed_processes_in_their_configs_order(tmp_path: Path) -> None:
    old = load(tmp_path, BASE)
    new = load(
        tmp_path,
        BASE.replace("[process.worker]", "[process.beat]") + "\n[process.z]\ncommand = 'z'\n",
    )
    d = diff(old, new)
    assert d.added == ("beat", "z")
    assert d.removed == ("worker",)
    assert d.unchanged == ("web",)
    assert "added: beat" in lines(d) and "removed: worker" in lines(d)


def test_a_changed_command_is_named_as_the_toml_spells_it_and_restarts(tmp_path: Path) -> None:
    d = diff(load(tmp_path, BASE), load(tmp_path, BASE.replace("--port 1", "--port 2")))
    (changed,) = d.changed
    assert changed.name == "web"
    assert changed.keys == ("command",)  # command and command_line: one key
    assert d.restarted() == ("web",)
    assert d.in_place() == ()
    assert "changed: web: command (restarted)" in lines(d)


def test_environment_from_the_toml_or_the_env_file_is_one_key_that_restarts(
    tmp_path: Path,
) -> None:
    old = load(tmp_path, BASE, env="A=1\n")
    new = load(tmp_path, BASE, env="A=2\n")
    d = diff(old, new)
    assert [(c.name, c.keys) for c in d.changed] == [
        ("web", ("environment",)),
        ("worker", ("environment",)),
    ]
    assert d.restarted() == ("web", "worker")


def test_keys_only_the_supervisor_reads_are_applied_in_place(tmp_path: Path) -> None:
    new = BASE.replace(
        'after = ["web"]',
        'stop_timeout = 3\nstop_signal = "INT"\nrestart = "on-failure"\n'
        "backoff_max = 5\nafter = []",
    )
    d = diff(load(tmp_path, BASE), load(tmp_path, new))
    (changed,) = d.changed
    assert changed.keys == ("after", "restart", "stop_signal", "stop_timeout", "backoff_max")
    assert changed.restart == ()
    assert d.restarted() == ()
    assert d.in_place() == ("worker",)
    assert "changed: worker: after, restart, stop_signal, stop_timeout, backoff_max" in " ".join(
        lines(d)
    )


def test_pidfile_and_user_restart_with_the_other_in_place_keys(tmp_path: Path) -> None:
    new = BASE.replace(
        'after = ["web"]', 'after = ["web"]\npidfile = "/run/w.pid"\nstop_timeout = 2'
    )
    d = diff(load(tmp_path, BASE), load(tmp_path, new))
    (changed,) = d.changed
    assert changed.restart == ("pidfile",)
    assert changed.in_place == ("stop_timeout",)
    assert d.restarted() == ("worker",)


def test_every_process_field_is_classed_and_spawn_settings_restart() -> None:
    for f in fields(ProcessSpec):
        key = {"command_line": "command", "env": "environment"}.get(f.name, f.name)
        if f.metadata["spawn"] in ("child", "spawn"):
            assert key in RESTART_KEYS, f.name
    assert {"pidfile", "legion", "pid_namespace", "command", "sockets"} <= RESTART_KEYS
    assert not {"restart", "stop_signal", "stop_timeout", "after", "ready", "alive"} & RESTART_KEYS


def test_every_setting_is_applied_or_needs_a_restart_of_pidone() -> None:
    assert set(SETTINGS) == {f.name for f in fields(Settings)}
    assert set(SETTINGS.values()) == {APPLIED, NEEDS_RESTART}
    assert SETTINGS["metrics"] == SETTINGS["control_socket"] == NEEDS_RESTART
    assert SETTINGS["shutdown_delay"] == SETTINGS["stop_timeout"] == APPLIED


def test_a_changed_default_stop_timeout_is_each_processs_in_place_change(tmp_path: Path) -> None:
    d = diff(load(tmp_path, BASE), load(tmp_path, "[pidone]\nstop_timeout = 4\n" + BASE))
    assert d.settings == (("stop_timeout", APPLIED),)
    assert [(c.name, c.keys) for c in d.changed] == [
        ("web", ("stop_timeout",)),
        ("worker", ("stop_timeout",)),
    ]
    assert d.restarted() == ()
    assert "setting changed: stop_timeout (applied)" in lines(d)


def test_a_changed_metrics_address_needs_a_restart_of_pidone(tmp_path: Path) -> None:
    d = diff(load(tmp_path, BASE), load(tmp_path, '[pidone]\nmetrics = "127.0.0.1:9"\n' + BASE))
    assert d.settings == (("metrics", NEEDS_RESTART),)
    assert not d.changed
    assert not d.empty
    assert "setting changed: metrics (needs a restart of pidone)" in lines(d)


SOCK = """
[socket.app]
path = "{dir}/app.sock"
listen = true
[process.web]
command = "web"
sockets = ["app"]
[process.other]
command = "other"
"""


def test_a_changed_socket_restarts_every_process_that_uses_it(tmp_path: Path) -> None:
    old = load(tmp_path, SOCK.format(dir=tmp_path))
    new = load(
        tmp_path, SOCK.format(dir=tmp_path).replace("listen = true", "mode = 0o600\nlisten = true")
    )
    d = diff(old, new)
    assert d.sockets.changed == (("app", ("mode",)),)
    assert d.changed == ()
    assert d.unchanged == ("web", "other")
    assert d.restarted() == ("web",)
    assert "restarted: web: a socket it uses changed" in lines(d)


def test_sockets_added_and_removed(tmp_path: Path) -> None:
    text = SOCK.format(dir=tmp_path)
    old = load(tmp_path, text)
    new = load(tmp_path, text.replace("[socket.app]", "[socket.api]").replace('["app"]', '["api"]'))
    d = diff(old, new)
    assert d.sockets.added == ("api",) and d.sockets.removed == ("app",)
    assert [(c.name, c.keys) for c in d.changed] == [("web", ("sockets",))]
    assert d.restarted() == ("web",)


def test_a_changed_legion_needs_a_restart_of_pidone(tmp_path: Path) -> None:
    text = '[legion.beat]\nredis = "redis://127.0.0.1:1/0"\nttl = 10\n' + BASE
    d = diff(load(tmp_path, text), load(tmp_path, text.replace("1/0", "2/0")))
    assert d.legions.changed == (("beat", ("redis",)),)
    assert "legions: needs a restart of pidone" in lines(d)
