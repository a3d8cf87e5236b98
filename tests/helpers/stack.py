"""A `pidone run` stack for tests: write the config, start pidone for real
(as PID 1 of a new namespace, or as a subreaper), read what happened.

Services are tests/helpers/svc.py instances that append to one journal
file with a shared monotonic clock, so order across processes is exact.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from pidone.config import rundir
from tests.helpers.running import PYTHON, Init, children_of, descendants, wait_for

SVC = str(Path(__file__).parent / "svc.py")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Entry:
    ns: int
    name: str
    event: str


class Stack:
    """`stack = Stack(mode, tmp_path)`, build commands with `stack.svc(...)`,
    then `stack.start(toml)`; used as a context manager for teardown."""

    def __init__(self, mode: str, tmp_path: Path) -> None:
        self.mode = mode
        self.dir = tmp_path
        self.journal_path = tmp_path / "journal"
        # services running as other users append to it too
        self.journal_path.touch()
        self.journal_path.chmod(0o666)
        self._init: Init | None = None

    @property
    def init(self) -> Init:
        assert self._init is not None, "start() first"
        return self._init

    def start(self, toml: str, *, procfile: str | None = None,
              extra: tuple[str, ...] = (), run_args: tuple[str, ...] = (),
              prefix: list[str] | None = None,
              stdin: int = subprocess.DEVNULL) -> Stack:  # fmt: skip
        """`extra`: pidone's options before `run`; `run_args`: after it;
        `prefix`: a launcher that execs pidone's command line; `stdin`:
        pidone's fd 0 (an fd)."""
        (self.dir / "pidone.toml").write_text(toml)
        args = ["run", "-c", str(self.dir / "pidone.toml"), *run_args]
        if procfile is not None:
            (self.dir / "Procfile").write_text(procfile)
            args += ["-f", str(self.dir / "Procfile")]
        self.control_socket = self.dir / "control.sock"  # not the host's /run/pidone
        env = {**os.environ, "PIDONE_CONTROL_SOCKET": str(self.control_socket)}
        self._init = Init(
            self.mode, [*extra, *args], cwd=str(self.dir), env=env, prefix=prefix, stdin=stdin
        )
        # Read pidone's output all along, as a container runtime does: a
        # full pipe would throttle the stack (the relay's backpressure).
        self._out: list[bytes] = []
        self._err: list[bytes] = []
        self._readers = [
            threading.Thread(target=_drain, args=(self.init.proc.stdout, self._out), daemon=True),
            threading.Thread(target=_drain, args=(self.init.proc.stderr, self._err), daemon=True),
        ]
        for reader in self._readers:
            reader.start()
        return self

    def svc(self, name: str, *flags: str) -> str:
        """The command line of a fake service writing to our journal."""
        return " ".join([PYTHON, SVC, name, "--journal", str(self.journal_path), *flags])

    def journal(self) -> list[Entry]:
        text = self.journal_path.read_text()
        entries = []
        for line in text.splitlines():
            ns, name, event = line.split(" ", 2)
            entries.append(Entry(int(ns), name, event))
        return entries

    def events(self) -> list[str]:
        """'name event' strings in the order they happened."""
        return [f"{e.name} {e.event}" for e in self.journal()]

    def wait_for(self, *wanted: str, timeout: float = 20.0) -> list[str]:
        """Wait until each 'name event' (prefix match) is in the journal."""
        deadline = time.monotonic() + timeout
        while True:
            events = self.events()
            missing = [w for w in wanted if not any(e.startswith(w) for e in events)]
            if not missing:
                return events
            if time.monotonic() > deadline:
                raise AssertionError(f"never saw {missing}; journal: {events}")
            time.sleep(0.02)

    def count(self, wanted: str) -> int:
        return sum(e.startswith(wanted) for e in self.events())

    def host_pid(self, name: str, timeout: float = 10.0) -> int:
        """Host pid of the latest instance of service NAME (its journal has
        the pid as seen inside the namespace), once that instance is live:
        one ready by its settle time, or just restarted, may not have written
        its "up" yet, and the latest "up" is then an instance already gone."""
        found: list[int] = []

        def live() -> bool:
            ups = [e for e in self.events() if e.startswith(f"{name} up ")]
            found[:] = [] if not ups else self._live_host_pid(int(ups[-1].split()[2]))
            return bool(found)

        wait_for(live, timeout=timeout, what=f"a live {name} with its 'up' in the journal")
        return found[0]

    def _live_host_pid(self, ns_pid: int) -> list[int]:
        """[host pid] of pidone's live (not zombie) descendant with namespace
        pid `ns_pid`, or []."""
        for pid in descendants(self.init.pid):
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except FileNotFoundError:
                continue
            fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
            nspid = fields.get("NSpid", "").split()
            if nspid and int(nspid[-1]) == ns_pid and fields.get("State", "").split()[:1] != ["Z"]:
                return [pid]
        return []

    def host_pid_of(self, word: str) -> int:
        """Host pid of pidone's direct child whose command line has `word`."""
        for pid in children_of(self.init.pid):
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
            except FileNotFoundError:
                continue
            if word.encode() in cmdline:
                return pid
        raise AssertionError(f"no child of pidone runs {word!r}")

    def output(self) -> tuple[str, str]:
        """All of pidone's stdout and stderr, once it has exited."""
        for reader in self._readers:
            reader.join(timeout=10)
        return b"".join(self._out).decode(), b"".join(self._err).decode()

    def stdout_so_far(self) -> str:
        return b"".join(list(self._out)).decode(errors="replace")

    def stderr_so_far(self) -> str:
        return b"".join(list(self._err)).decode(errors="replace")

    def __enter__(self) -> Stack:
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is not None:  # what pidone said, in the failed test's report
            print(f"--- pidone's stdout ---\n{self.stdout_so_far()}")
            print(f"--- pidone's stderr ---\n{self.stderr_so_far()}")
        if self._init is not None:
            self._init.__exit__(*exc)
            _remove_notify_dir(str(self.control_socket))


def _remove_notify_dir(control_socket: str) -> None:
    """A root pidone's notify directory (/run/pidone/notify-HASH, by its
    control socket: config/rundir.py), which a SIGKILLed one leaves behind:
    each test's control socket is another, so they would pile up."""
    found = rundir.RuntimeDir(rundir.ROOT_DIR, private=False)
    directory = rundir.notify_dir_for(found, control_socket)
    if directory == found.notify_dir or not os.path.isdir(directory):
        return
    for name in os.listdir(directory):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(directory, name))
    with contextlib.suppress(OSError):
        os.rmdir(directory)


def _drain(stream: object, into: list[bytes]) -> None:
    read = getattr(stream, "read1", None)
    assert read is not None
    while chunk := read(65536):
        into.append(chunk)


def before(events: list[str], first: str, second: str) -> bool:
    """Did the first event matching `first` happen before the first `second`?"""
    i = next(i for i, e in enumerate(events) if e.startswith(first))
    j = next(j for j, e in enumerate(events) if e.startswith(second))
    return i < j


def nth(events: list[str], prefix: str, n: int) -> int:
    """Index of the n-th (1-based) event starting with prefix."""
    hits = [i for i, e in enumerate(events) if e.startswith(prefix)]
    assert len(hits) >= n, f"only {len(hits)} x {prefix!r} in {events}"
    return hits[n - 1]


def whoami_report(stack: Stack, name: str, *, once: bool = False) -> dict[str, object]:
    """What tests/helpers/whoami.py, run as process `name`, said about itself
    (its `WHOAMI <json>` line); `once`: and it said it only once (it ran once,
    it was not restarted)."""
    pattern = re.compile(rf"^{name}\s+\| WHOAMI (.*)$", re.M)
    found: list[str] = []

    def reported() -> bool:
        found[:] = pattern.findall(stack.stdout_so_far())
        return bool(found)

    wait_for(reported, what=f"{name} to report")
    assert not once or len(found) == 1, found
    report = json.loads(found[0])
    assert isinstance(report, dict)
    return report
