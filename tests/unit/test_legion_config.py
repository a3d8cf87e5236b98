"""[legion.NAME] and `legion = NAME`: parsed, checked (file:line, how to fix)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pidone.config import load as config
from pidone.config.specs import Config, legion_margin, legion_max_stop_timeout, legion_min_ttl
from pidone.errors import ConfigError

LEGION = '[legion.beat]\nredis = "redis://10.0.0.7:6390/2"\n'
BEAT = '[process.beat]\ncommand = "sleep 100"\nlegion = "beat"\nstop_timeout = 3\n'


@pytest.fixture
def cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.chdir(tmp_path)
    yield tmp_path


def load(directory: Path, toml: str, environ: dict[str, str] | None = None) -> Config:
    (directory / "pidone.toml").write_text(toml)
    return config.load(None, None, None, environ=environ or {})


def problems(directory: Path, toml: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load(directory, toml)
    return caught.value.problems


def test_a_legion_table_is_read_with_its_defaults(cwd: Path) -> None:
    cfg = load(cwd, LEGION + BEAT)
    legion = cfg.legions["beat"]
    assert (legion.host, legion.port, legion.db, legion.path) == ("10.0.0.7", 6390, 2, None)
    assert (legion.ttl, legion.priority, legion.key) == (10.0, 0, "pidone:legion:beat")
    assert cfg.processes["beat"].legion == "beat"
    assert cfg.warnings == ()


def test_a_unix_socket_address_and_priority(cwd: Path) -> None:
    toml = '[legion.beat]\nredis = "unix:///run/redis.sock?db=3"\nttl = 4\npriority = -2\n'
    legion = load(cwd, toml + BEAT.replace("3\n", "1\n")).legions["beat"]
    assert (legion.path, legion.db, legion.host, legion.ttl, legion.priority) == (
        "/run/redis.sock", 3, None, 4.0, -2,
    )  # fmt: skip


def test_a_password_in_the_redis_url_is_refused(cwd: Path) -> None:
    toml = '[legion.beat]\nredis = "redis://:secret@127.0.0.1:6379/0"\n' + BEAT
    (problem,) = problems(cwd, toml)
    assert problem.startswith("pidone.toml:2: [legion.beat] redis = ")
    assert "password_env" in problem


@pytest.mark.parametrize(
    "url", ["http://x", "redis://", "redis://host:0/0", "redis://h:70000", "redis://h/99999", 7]
)
def test_a_bad_redis_address_is_refused_with_its_line(cwd: Path, url: object) -> None:
    value = f'"{url}"' if isinstance(url, str) else str(url)
    (problem,) = problems(cwd, f"[legion.beat]\nredis = {value}\n" + BEAT)
    assert problem.startswith("pidone.toml:2: [legion.beat] redis = ")


@pytest.mark.parametrize("ttl", ["0.5", "3601", "0", '"ten"'])
def test_a_ttl_out_of_range_is_refused(cwd: Path, ttl: str) -> None:
    (problem,) = problems(cwd, LEGION + f"ttl = {ttl}\n" + BEAT)
    assert problem.startswith(f"pidone.toml:3: [legion.beat] ttl = {ttl}: must be")


def test_an_unknown_legion_is_refused_with_a_hint(cwd: Path) -> None:
    (problem,) = problems(cwd, LEGION + BEAT.replace('legion = "beat"', 'legion = "beta"'))
    assert problem == (
        'pidone.toml:5: [process.beat] legion = "beta": no legion named "beta"; '
        'did you mean "beat"?'
    )


def test_a_legion_no_process_uses_is_a_warning(cwd: Path) -> None:
    cfg = load(cwd, LEGION + '[process.web]\ncommand = "sleep 1"\n')
    assert cfg.warnings == (
        'pidone.toml:1: warning: no process is in legion "beat"; add legion = "beat" to a '
        "[process.NAME] table, or remove it",
    )


def test_the_timing_rule_with_numbers() -> None:
    # ttl 10: renew every 3.33 s, down 0.5 s before expiry, stop_timeout at most 4.5 s
    assert legion_margin(10) == 0.5
    assert legion_max_stop_timeout(10) == 4.5
    assert legion_margin(60) == 3.0 and legion_max_stop_timeout(60) == 27.0
    for stop in (0.5, 4.5, 7, 100):  # the inverse: the shortest ttl for a stop_timeout
        assert abs(legion_max_stop_timeout(legion_min_ttl(stop)) - stop) < 1e-9


def test_a_stop_timeout_too_long_for_the_ttl_is_refused(cwd: Path) -> None:
    (problem,) = problems(cwd, LEGION + BEAT.replace("stop_timeout = 3", "stop_timeout = 7"))
    assert problem.startswith("pidone.toml:6: [process.beat] stop_timeout = 7.0: too long")
    assert "stop_timeout <= 4.50" in problem and "ttl >= 15.56" in problem


def test_the_default_stop_timeout_counts_too(cwd: Path) -> None:
    (problem,) = problems(cwd, LEGION + BEAT.replace("stop_timeout = 3\n", ""))
    assert "[process.beat] stop_timeout = 10.0: too long" in problem


def test_a_process_after_a_legion_process_is_refused(cwd: Path) -> None:
    toml = LEGION + BEAT + '[process.web]\ncommand = "sleep 1"\nafter = ["beat"]\n'
    (problem,) = problems(cwd, toml)
    assert problem.startswith('pidone.toml:9: [process.web] after = ["beat"]: "beat" runs only')


def test_a_legion_process_after_a_plain_one_is_fine(cwd: Path) -> None:
    toml = LEGION + BEAT + 'after = ["redis"]\n[process.redis]\ncommand = "sleep 1"\n'
    assert load(cwd, toml).start_waves == [["redis"], ["beat"]]


@pytest.mark.parametrize("key", ["autostart = false", "control = true"])
def test_a_legion_process_with_autostart_false_or_control_is_refused(cwd: Path, key: str) -> None:
    (problem,) = problems(cwd, LEGION + BEAT + key + "\n")
    assert problem.startswith(f"pidone.toml:7: [process.beat] {key}:")


def test_password_env_must_be_a_variable_name(cwd: Path) -> None:
    (problem,) = problems(cwd, LEGION + 'password_env = "$X"\n' + BEAT)
    assert problem.startswith('pidone.toml:3: [legion.beat] password_env = "$X": is the NAME')


def test_an_unset_password_env_is_a_warning(cwd: Path) -> None:
    cfg = load(cwd, LEGION + 'password_env = "REDIS_PW"\n' + BEAT)
    assert cfg.warnings == (
        "pidone.toml:3: warning: REDIS_PW is not set in pidone's environment: no AUTH is sent",
    )
    assert (
        load(cwd, LEGION + 'password_env = "REDIS_PW"\n' + BEAT, {"REDIS_PW": "x"}).warnings == ()
    )


def test_select_keeps_only_the_legions_of_the_selected_processes(cwd: Path) -> None:
    cfg = load(cwd, LEGION + BEAT + '[process.web]\ncommand = "sleep 1"\n')
    assert config.select(cfg, ["web"]).legions == {}
    assert list(config.select(cfg, ["beat"]).legions) == ["beat"]


def test_check_describes_the_legion_and_its_processes(cwd: Path) -> None:
    from pidone.commands import describe

    text = describe(load(cwd, LEGION + BEAT))
    assert "  beat: sleep 100 (only on the lord of legion beat)\n" in text
    assert text.endswith(
        "  beat: redis://10.0.0.7:6390/2 key pidone:legion:beat, ttl 10 s, priority 0: beat\n"
    )
