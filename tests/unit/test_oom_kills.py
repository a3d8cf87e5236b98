"""OOM kills: the core's wording and counting (replayed, no fork), and the
system layer's reading of cgroup counters from a real file tree laid out as
/proc and cgroupfs are (mountinfo, /proc/PID/cgroup, memory.events)."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from pidone.control.client import format_last_exit
from pidone.control.protocol import status_rows
from pidone.core.supervisor import Boot, Reaped, SignalReceived, Tick
from pidone.system.cgroup import (
    COUNTER_FILE_MAX,
    OomCounters,
    counter_file,
    parse_mounts,
    parse_oom_kills,
)
from tests.unit.test_supervisor import killed, logs, sim_for

KILL = int(signal.SIGKILL)
TERM = int(signal.SIGTERM)


def test_a_sigkill_death_across_which_the_counter_rose_is_an_oom_kill(tmp_path: Path) -> None:
    sim = sim_for(tmp_path, '[process.a]\ncommand = "a"\n')
    sim.do(Boot())
    out = sim.do(Reaped(sim.pid("a"), *killed(KILL), oom_kills=1))
    assert "a: exited with signal SIGKILL, killed by the OOM killer" in logs(out)
    p = sim.core.snapshot().processes[0]
    assert (p.oom_kills, p.last_exit is not None and p.last_exit.oom) == (1, True)
    row = status_rows(sim.core.snapshot(), sim.now)[0]
    assert row["last_exit"]["oom"] is True
    assert format_last_exit(row["last_exit"]).startswith("killed by the OOM killer (SIGKILL)")
    assert p.restarts_by_reason == {"crash": 1}  # restarted like any crash


def test_a_plain_kill_9_is_not_called_an_oom_kill(tmp_path: Path) -> None:
    sim = sim_for(tmp_path, '[process.a]\ncommand = "a"\n')
    sim.do(Boot())
    out = sim.do(Reaped(sim.pid("a"), *killed(KILL)))
    assert "a: exited with signal SIGKILL" in logs(out)
    p = sim.core.snapshot().processes[0]
    assert (p.oom_kills, p.last_exit is not None and p.last_exit.oom) == (0, False)
    row = status_rows(sim.core.snapshot(), sim.now)[0]
    assert format_last_exit(row["last_exit"]).startswith("SIGKILL, ")


def test_a_counter_rise_across_a_death_by_another_signal_is_not_an_oom_kill(
    tmp_path: Path,
) -> None:
    sim = sim_for(tmp_path, '[process.a]\ncommand = "a"\n')
    sim.do(Boot())
    out = sim.do(Reaped(sim.pid("a"), *killed(TERM), oom_kills=1))
    assert "a: exited with signal SIGTERM" in logs(out)
    assert sim.core.snapshot().processes[0].oom_kills == 0


def test_pidones_own_stop_timeout_sigkill_is_not_called_an_oom_kill(tmp_path: Path) -> None:
    sim = sim_for(tmp_path, '[process.a]\ncommand = "a"\nstop_timeout = 1\n')
    sim.do(Boot())
    pid = sim.pid("a")
    sim.do(SignalReceived(TERM))
    sim.now = 1.0
    sim.do(Tick())  # the stop timeout: pidone sends SIGKILL
    out = sim.do(Reaped(pid, *killed(KILL), oom_kills=1))
    assert "a: stopped (signal SIGKILL)" in logs(out)
    assert sim.core.snapshot().processes[0].oom_kills == 0


# --- reading the counters ------------------------------------------------------------

MOUNTINFO_V1 = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
35 31 0:32 / {root}/memory rw,relatime - cgroup cgroup rw,memory
41 31 0:38 / {root}/unified rw,relatime - cgroup2 cgroup2 rw
"""


def tree(tmp_path: Path, mountinfo: str, cgroup: str, pid: int = 7) -> Path:
    root = tmp_path / "sys"
    (tmp_path / "mountinfo").write_text(mountinfo.format(root=root))
    (tmp_path / "proc" / str(pid)).mkdir(parents=True)
    (tmp_path / "proc" / str(pid) / "cgroup").write_text(cgroup)
    return root


def counters(tmp_path: Path) -> OomCounters:
    return OomCounters(str(tmp_path / "mountinfo"), str(tmp_path / "proc"))


def test_v1_memory_hierarchy_is_preferred_and_its_oom_control_counted(tmp_path: Path) -> None:
    root = tree(tmp_path, MOUNTINFO_V1, "4:memory:/job/a\n0::/\n")
    control = root / "memory" / "job" / "a" / "memory.oom_control"
    control.parent.mkdir(parents=True)
    control.write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 3\n")
    oom = counters(tmp_path)
    oom.sample(7)
    control.write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 4\n")
    assert oom.death(7, True) == 1
    assert oom.death(7, True) == 0  # its entry went with its death


def test_v2_memory_events_are_read_under_a_subtree_mount(tmp_path: Path) -> None:
    # a container's bind mount of its own subtree: mountinfo's root is that cgroup
    mountinfo = "41 31 0:38 /pod/c1 {root} rw - cgroup2 cgroup2 rw\n"
    root = tree(tmp_path, mountinfo, "0::/pod/c1/web\n")
    events = root / "web" / "memory.events"
    events.parent.mkdir(parents=True)
    events.write_text("low 0\nhigh 0\nmax 9\noom 1\noom_kill 0\noom_group_kill 0\n")
    oom = counters(tmp_path)
    oom.sample(7)
    events.write_text("low 0\nhigh 0\nmax 12\noom 2\noom_kill 1\noom_group_kill 0\n")
    assert oom.death(7, True) == 1


def test_one_oom_kill_in_a_shared_cgroup_is_given_to_one_of_two_sigkill_deaths(
    tmp_path: Path,
) -> None:
    root = tree(tmp_path, MOUNTINFO_V1, "4:memory:/\n")
    (tmp_path / "proc" / "8").mkdir()
    (tmp_path / "proc" / "8" / "cgroup").write_text("4:memory:/\n")
    control = root / "memory" / "memory.oom_control"
    control.parent.mkdir(parents=True)
    control.write_text("oom_kill 0\n")
    oom = counters(tmp_path)
    oom.sample(7)
    oom.sample(8)
    control.write_text("oom_kill 1\n")
    assert (oom.death(7, True), oom.death(8, True)) == (1, 0)


def test_a_removed_cgroup_is_unknown_not_a_crash(tmp_path: Path) -> None:
    root = tree(tmp_path, MOUNTINFO_V1, "4:memory:/gone\n")
    control = root / "memory" / "gone" / "memory.oom_control"
    control.parent.mkdir(parents=True)
    control.write_text("oom_kill 0\n")
    oom = counters(tmp_path)
    oom.sample(7)
    control.unlink()
    control.parent.rmdir()
    assert oom.death(7, True) == 0


def test_a_death_not_by_sigkill_reads_nothing_and_counts_nothing(tmp_path: Path) -> None:
    root = tree(tmp_path, MOUNTINFO_V1, "4:memory:/\n")
    control = root / "memory" / "memory.oom_control"
    control.parent.mkdir(parents=True)
    control.write_text("oom_kill 0\n")
    oom = counters(tmp_path)
    oom.sample(7)
    control.write_text("oom_kill 1\n")
    assert oom.death(7, False) == 0


def test_a_sample_again_of_a_pid_never_spawned_keeps_nothing(tmp_path: Path) -> None:
    root = tree(tmp_path, MOUNTINFO_V1, "4:memory:/\n")
    (root / "memory").mkdir(parents=True)
    (root / "memory" / "memory.oom_control").write_text("oom_kill 5\n")
    oom = counters(tmp_path)
    oom.sample(7, again=True)  # an adopted daemon's ready: not ours to follow
    (root / "memory" / "memory.oom_control").write_text("oom_kill 6\n")
    assert oom.death(7, True) == 0


def test_no_cgroup_mounts_is_unknown(tmp_path: Path) -> None:
    tree(tmp_path, "22 1 0:5 / /proc rw - proc proc rw\n", "0::/\n")
    oom = counters(tmp_path)
    oom.sample(7)
    assert oom.death(7, True) == 0


@pytest.mark.parametrize(
    "path",
    ["/../../etc", "/a/../../b", "/x (deleted)", "relative", "/elsewhere"],
)
def test_a_cgroup_path_escaping_its_mount_is_refused(path: str) -> None:
    mounts = parse_mounts("35 31 0:32 /mine /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n")
    assert counter_file(f"4:memory:{path}\n", mounts) is None


def test_mountinfo_escapes_are_undone() -> None:
    memory, unified = parse_mounts(r"41 31 0:38 / /a\040b rw - cgroup2 cgroup2 rw" + "\n")
    assert (memory, unified) == (None, ("/", "/a b"))


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("oom 1\noom_kill 2\n", 2),
        ("oom_kill -1\n", None),
        ("oom_kill 9999999999999999999999\n", None),
        ("oom_kill ٣\n", None),  # a digit to str.isdigit, not ASCII
        ("oom 1\n", None),
        ("", None),
    ],
)
def test_only_a_plain_oom_kill_count_is_taken(text: str, value: int | None) -> None:
    assert parse_oom_kills(text) == value


def test_a_counter_file_longer_than_its_bound_is_unknown(tmp_path: Path) -> None:
    big = tmp_path / "memory.events"
    big.write_text("oom_kill 1\n" + "x" * COUNTER_FILE_MAX)
    assert OomCounters.read(str(big)) is None
    big.write_text("oom_kill 1\n")
    assert OomCounters.read(str(big)) == 1
