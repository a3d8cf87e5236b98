"""system/inotify.py against the real kernel: what counts as a touch, the
bound on one read, an overflowing queue and a directory that goes away."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pidone.system import inotify


def read_all(watcher: inotify.Watcher) -> tuple[set[str], bool, list[str], int]:
    """Every read until none is left: (touched, overflow, gone, reads)."""
    touched: set[str] = set()
    gone: list[str] = []
    overflow, reads = False, 0
    while True:
        try:
            paths, over, lost = watcher.read()
        except BlockingIOError:
            return touched, overflow, gone, reads
        reads += 1
        touched |= paths
        overflow |= over
        gone += lost


@pytest.fixture
def watched(tmp_path: Path) -> Iterator[tuple[Path, inotify.Watcher]]:
    deploy = tmp_path / "deploy"
    deploy.mkdir()
    watcher = inotify.Watcher([str(deploy / "reload"), str(deploy / "other")])
    assert watcher.problems == []
    yield deploy, watcher
    watcher.close()


def test_each_way_of_touching_a_file_is_seen(watched: tuple[Path, inotify.Watcher]) -> None:
    deploy, watcher = watched
    with pytest.raises(BlockingIOError):
        watcher.read()  # nothing yet: the loop sleeps
    reload = deploy / "reload"

    def replace_by_rename() -> None:  # a deploy's mv
        (deploy / "new").write_text("y")
        read_all(watcher)  # "new" itself is no touch of reload
        os.rename(deploy / "new", reload)

    touches: list[Callable[[], object]] = [
        reload.touch,  # created
        lambda: os.utime(reload),  # `touch` of an existing file
        lambda: reload.write_text("x"),  # written and closed
        replace_by_rename,
        lambda: os.chmod(reload, 0o600),  # metadata
    ]
    for touch in touches:
        touch()
        touched, overflow, gone, _ = read_all(watcher)
        assert (str(reload) in touched, overflow, gone) == (True, False, [])


def test_a_read_is_bounded_and_the_rest_waits(watched: tuple[Path, inotify.Watcher]) -> None:
    deploy, watcher = watched
    names = {str(deploy / f"unrelated-{i:04}") for i in range(2000)}
    for name in names:  # 2 events of 48 bytes each: more than one read's 64 KiB
        Path(name).touch()
    touched, overflow, _, reads = read_all(watcher)
    # Every name in the directory: which of them matter is the core's to say.
    assert (touched, overflow) == (names, False)
    assert reads >= 2


def test_an_overflowing_queue_is_said(watched: tuple[Path, inotify.Watcher]) -> None:
    deploy, watcher = watched
    limit = int(Path("/proc/sys/fs/inotify/max_queued_events").read_text())
    for i in range(limit // 2 + 10):  # two events each (IN_CREATE, IN_CLOSE_WRITE), unread
        (deploy / f"f{i}").touch()  # distinct names: the kernel merges only repeats
    _, overflow, gone, _ = read_all(watcher)
    assert (overflow, gone) == (True, [])


def test_a_removed_directory_is_said_once_and_then_nothing(
    watched: tuple[Path, inotify.Watcher],
) -> None:
    deploy, watcher = watched
    deploy.rmdir()
    touched, overflow, gone, _ = read_all(watcher)
    assert (touched, overflow, gone) == (set(), False, [str(deploy)])
    assert watcher.directories == {}
    deploy.mkdir()  # a new directory of that name is another inode: not watched
    (deploy / "reload").touch()
    assert read_all(watcher)[:3] == (set(), False, [])


def test_a_renamed_directory_is_no_longer_watched(watched: tuple[Path, inotify.Watcher]) -> None:
    deploy, watcher = watched
    os.rename(deploy, deploy.with_name("old"))
    assert read_all(watcher)[2] == [str(deploy)]
    (deploy.with_name("old") / "reload").touch()
    assert read_all(watcher)[:3] == (set(), False, [])


def test_a_missing_directory_is_a_problem_not_an_error(tmp_path: Path) -> None:
    watcher = inotify.Watcher([str(tmp_path / "nowhere" / "reload")])
    try:
        assert watcher.problems == [f"{tmp_path / 'nowhere'}: No such file or directory"]
        assert watcher.directories == {}
    finally:
        watcher.close()
    assert inotify.directory_problem(str(tmp_path / "nowhere")) == (
        f"its directory {tmp_path / 'nowhere'}: No such file or directory"
    )
    (tmp_path / "file").touch()
    assert (
        inotify.directory_problem(str(tmp_path / "file"))
        == f"{tmp_path / 'file'} is not a directory"
    )
