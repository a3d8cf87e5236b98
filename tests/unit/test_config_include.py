"""`include = [...]` in pidone.toml (config/include.py, config/load.py): the
merge order, the per-key win, file:line of the file that set a key, the
bounds, and the files an include must never read or hang on."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from pidone.config import include
from pidone.config import load as config
from pidone.config.specs import Config
from pidone.errors import ConfigError


@pytest.fixture
def cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pidone.d").mkdir()
    yield tmp_path


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def load_here() -> Config:
    return config.load(None, None, None, environ={})


def problems() -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_here()
    return caught.value.problems


MAIN = """include = ["pidone.d/*.toml"]
[process.web]
command = "sleep 100"
stop_signal = "TERM"
"""


def test_included_files_merge_after_pidone_toml_in_sorted_order_the_last_winning_per_key(
    cwd: Path,
) -> None:
    write(cwd / "pidone.toml", MAIN)
    write(cwd / "pidone.d/20-b.toml", "[process.web]\nstop_timeout = 4\n")
    a = '[process.web]\nstop_timeout = 3\n[process.worker]\ncommand = "sleep 5"\n'
    write(cwd / "pidone.d/10-a.toml", a)
    loaded = load_here()
    web = loaded.processes["web"]
    assert web.stop_timeout == 4.0  # 20-b after 10-a
    assert web.stop_signal == 15  # pidone.toml's, not touched by either
    assert list(loaded.processes) == ["web", "worker"]
    assert loaded.sources.included == (Path("pidone.d/10-a.toml"), Path("pidone.d/20-b.toml"))


def test_patterns_merge_in_their_order_each_one_s_matches_sorted(cwd: Path) -> None:
    write(cwd / "pidone.toml", 'include = ["z.d/*.toml", "a.toml"]\n[process.web]\ncommand = "x"\n')
    write(cwd / "z.d/2.toml", "[process.web]\nstop_timeout = 2\n")
    write(cwd / "z.d/1.toml", "[process.web]\nstop_timeout = 1\n")
    write(cwd / "a.toml", "[process.web]\nstop_timeout = 9\n")
    loaded = load_here()
    assert loaded.sources.included == (Path("z.d/1.toml"), Path("z.d/2.toml"), Path("a.toml"))
    assert loaded.processes["web"].stop_timeout == 9.0


def test_a_key_set_twice_takes_the_last_value_whole_even_a_table(cwd: Path) -> None:
    write(cwd / "pidone.toml", MAIN.replace('"TERM"', '"TERM"\nenvironment = { A = "1", B = "2" }'))
    write(cwd / "pidone.d/a.toml", '[process.web]\nenvironment = { C = "3" }\n')
    env = dict(load_here().processes["web"].environment)
    assert "C" in env and "A" not in env and "B" not in env


def test_a_bad_value_in_an_included_file_names_that_file_and_line(cwd: Path) -> None:
    write(cwd / "pidone.toml", MAIN)
    write(cwd / "pidone.d/10-a.toml", "[process.web]\nstop_timeout = 3\n")
    write(cwd / "pidone.d/20-b.toml", '# b\n[process.web]\nstop_signal = "SIGFOO"\nbogus = 1\n')
    found = problems()
    assert len(found) == 2
    assert found[0].startswith('pidone.d/20-b.toml:3: [process.web] stop_signal = "SIGFOO": ')
    assert found[1].startswith("pidone.d/20-b.toml:4: [process.web] bogus: unknown key")


def test_a_key_overridden_by_an_include_is_located_there_and_os_checks_too(cwd: Path) -> None:
    write(cwd / "pidone.toml", MAIN + 'user = "app"\n')
    write(cwd / "pidone.d/a.toml", '\n\n[process.web]\nuser = "nobody-here"\n')
    sources = load_here().sources
    assert sources.where("process.web", "user") == "pidone.d/a.toml:4"
    assert sources.where("process.web", "stop_signal") == "pidone.toml:4"
    assert sources.where("process.web") == "pidone.toml:2"  # the table: where it starts
    said = sources.problem("process.web", "user", 'no user "nobody-here"')
    assert said == 'pidone.d/a.toml:4: [process.web] user: no user "nobody-here"'


def test_an_octal_mode_in_an_included_file_is_read_from_that_file(cwd: Path) -> None:
    write(cwd / "pidone.toml", MAIN)
    write(cwd / "pidone.d/s.toml", '[socket.app]\npath = "/run/app/app.sock"\n\nmode = 0o660\n')
    assert load_here().sockets["app"].mode == 0o660


def test_a_pattern_matching_nothing_is_fine_a_missing_plain_path_is_an_error(cwd: Path) -> None:
    write(cwd / "pidone.toml", MAIN.replace('"pidone.d/*.toml"', '"none.d/*.toml", "extra.toml"'))
    assert problems() == [
        "extra.toml: no such file (included by pidone.toml:1); create it, or fix the include"
    ]
    write(cwd / "extra.toml", "")
    assert load_here().sources.included == (Path("extra.toml"),)


def test_an_absolute_pattern_and_a_directory_with_glob_characters(cwd: Path) -> None:
    odd = cwd / "a[1]*"  # its own [ and * are no pattern
    main = f'include = ["*.d/*.toml", "{cwd}/abs.toml"]\n[process.web]\ncommand = "x"\n'
    write(odd / "pidone.toml", main)
    write(odd / "p.d/a.toml", "[process.web]\nstop_timeout = 5\n")
    write(odd / "p.d/.hidden.toml", "[process.web]\nstop_timeout = 6\n")  # a dot file: not matched
    write(cwd / "abs.toml", '[process.other]\ncommand = "y"\n')
    loaded = config.load(None, odd / "pidone.toml", None, environ={})
    assert loaded.processes["web"].stop_timeout == 5.0
    assert loaded.sources.included == (odd / "p.d/a.toml", cwd / "abs.toml")


@pytest.mark.parametrize(
    "value", ['"pidone.d/*.toml"', "[1]", '[""]', '["a\\u0000b"]', "{ a = 1 }"]
)
def test_include_not_a_list_of_patterns_is_an_error_at_its_line(cwd: Path, value: str) -> None:
    write(cwd / "pidone.toml", f'# x\ninclude = {value}\n[process.web]\ncommand = "x"\n')
    (found,) = problems()
    assert found.startswith("pidone.toml:2: include = "), found
    assert found.endswith(('like include = ["pidone.d/*.toml"]', "which no path can; remove it"))


def test_include_below_a_table_header_is_said_to_belong_above_it(cwd: Path) -> None:
    main = '[pidone]\ninclude = ["pidone.d/*.toml"]\n[process.web]\ncommand = "x"\n'
    write(cwd / "pidone.toml", main)
    assert problems() == [
        "pidone.toml:2: [pidone] include: unknown key; include is a top-level key: move it"
        " above the first [table]"
    ]


def test_64_included_files_are_read_65_are_refused(cwd: Path) -> None:
    write(cwd / "pidone.toml", MAIN)
    for n in range(include.MAX_FILES):
        write(cwd / f"pidone.d/{n:02}.toml", f"[process.web]\nstop_timeout = {n}\n")
    assert load_here().processes["web"].stop_timeout == 63.0
    write(cwd / "pidone.d/99.toml", "")
    assert problems() == [
        'pidone.toml:1: include = ["pidone.d/*.toml"]: matches more than 64 files; merge some'
        " of them, or name fewer"
    ]


def test_an_included_file_over_the_size_bound_is_refused(cwd: Path) -> None:
    write(cwd / "pidone.toml", MAIN)
    write(cwd / "pidone.d/big.toml", "#" * (config.MAX_FILE_BYTES + 1))
    (found,) = problems()
    assert found.startswith("pidone.d/big.toml: larger than 1024 KiB; ")
    assert found.endswith("check the include of pidone.toml:1")


def test_an_include_matching_pidone_toml_itself_is_refused_as_a_cycle(cwd: Path) -> None:
    write(cwd / "pidone.toml", MAIN.replace("pidone.d/*.toml", "*.toml"))
    assert problems() == [
        "pidone.toml: included twice (included by pidone.toml:1): it is pidone.toml itself;"
        " narrow the patterns"
    ]


def test_an_include_through_a_symlink_to_pidone_toml_is_refused_as_a_cycle(cwd: Path) -> None:
    write(cwd / "pidone.toml", MAIN)
    (cwd / "pidone.d/self.toml").symlink_to("../pidone.toml")
    (found,) = problems()
    assert found.startswith("pidone.d/self.toml: included twice ")
    assert "it is pidone.toml itself" in found


def test_a_file_matched_by_two_patterns_is_refused(cwd: Path) -> None:
    write(cwd / "pidone.toml", MAIN.replace('"pidone.d/*.toml"', '"pidone.d/a.toml", "pidone.d/*"'))
    write(cwd / "pidone.d/a.toml", "")
    assert problems() == [
        "pidone.d/a.toml: included twice (included by pidone.toml:1): it is pidone.d/a.toml;"
        " narrow the patterns"
    ]


def test_a_nested_include_is_refused(cwd: Path) -> None:
    write(cwd / "pidone.toml", MAIN)
    write(cwd / "pidone.d/a.toml", 'include = ["../pidone.toml"]\n')
    assert problems() == [
        "pidone.d/a.toml:1: include: an included file cannot include others (included by"
        " pidone.toml:1); list its patterns in the include of pidone.toml"
    ]


def test_an_include_symlink_loop_is_refused(cwd: Path) -> None:
    write(cwd / "pidone.toml", MAIN)
    (cwd / "pidone.d/a.toml").symlink_to("b.toml")
    (cwd / "pidone.d/b.toml").symlink_to("a.toml")
    found = problems()
    assert found == [
        f"pidone.d/{n}.toml: cannot read it: Too many levels of symbolic links (included by"
        " pidone.toml:1)"
        for n in "ab"
    ]


def refused_within_seconds() -> list[str]:
    """load_here()'s problems, from a thread given 10 s: a hang fails, not blocks."""
    got: list[list[str]] = []
    thread = threading.Thread(target=lambda: got.append(problems()), daemon=True)
    thread.start()
    thread.join(10)
    assert got, "the load hung"
    return got[0]


def test_an_include_matching_a_fifo_is_refused_not_hung(cwd: Path) -> None:
    write(cwd / "pidone.toml", MAIN)
    os.mkfifo(cwd / "pidone.d/fifo.toml")  # no writer: a plain open() would wait forever
    assert refused_within_seconds() == [
        "pidone.d/fifo.toml: is not a regular file (a FIFO, a device, a directory?) (included"
        " by pidone.toml:1); include only reads files"
    ]


def test_an_include_matching_dev_zero_is_refused_not_read(cwd: Path) -> None:
    write(cwd / "pidone.toml", MAIN.replace("pidone.d/*.toml", "pidone.d/*"))
    (cwd / "pidone.d/zero").symlink_to("/dev/zero")
    (cwd / "pidone.d/dir").mkdir()
    assert refused_within_seconds() == [
        f"pidone.d/{n}: is not a regular file (a FIFO, a device, a directory?) (included by"
        " pidone.toml:1); include only reads files"
        for n in ("dir", "zero")
    ]


def test_ctl_s_settings_only_sees_an_included_control_socket(cwd: Path) -> None:
    write(cwd / "pidone.toml", MAIN + '[pidone]\ncontrol_socket = "/run/a.sock"\n')
    write(cwd / "pidone.d/ctl.toml", '[pidone]\ncontrol_socket = "/run/b.sock"\n')
    assert config.settings_only(cwd / "pidone.toml").control_socket == "/run/b.sock"
    write(cwd / "pidone.d/ctl.toml", '[pidone]\ncontrol_socket = "b.sock"\n')
    with pytest.raises(ConfigError) as caught:
        config.settings_only(cwd / "pidone.toml")
    assert caught.value.problems[0].startswith(
        f'{cwd}/pidone.d/ctl.toml:2: [pidone] control_socket = "b.sock": '
    )


def test_merge_is_per_key_below_the_tables_and_whole_for_anything_else() -> None:
    into = {"pidone": {"a": 1, "b": 2}, "process": {"web": {"x": 1, "env": {"A": "1"}}}, "odd": 1}
    include.merge(into, {"pidone": {"b": 3}, "process": {"web": {"env": {"B": "2"}}}, "odd": {}})
    assert into == {
        "pidone": {"a": 1, "b": 3},
        "process": {"web": {"x": 1, "env": {"B": "2"}}},
        "odd": {},
    }
