"""The webapp example's stack, run for real: `examples/webapp/run.py --netns`.

The runner starts pidone (redis, uwsgi, the celery worker) as PID 1 of one
PID namespace and nginx as PID 1 of another, both in a network namespace
of their own with only loopback, so nothing here collides with a `make
demo` running beside it. `Webapp` reads the runner's output line by line
(pidone's lines, nginx's and the runner's, each timestamped on arrival),
finds the programs' pids, and sends requests from inside that network
namespace through tests/e2e/client.py. Teardown kills each namespace's
PID 1 by pid, and the runner.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.helpers.running import children_of

REPO = Path(__file__).resolve().parents[2]
WEBAPP_DIR = REPO / "examples" / "webapp"
RUNNER = WEBAPP_DIR / "run.py"
INSTALL = WEBAPP_DIR / "install.sh"
CLIENT = Path(__file__).resolve().parent / "client.py"
APP = "http://127.0.0.1:8080"
REQUEST_LOG = re.compile(r"\[pid: \d+\|app: ")  # uwsgi's line per request
PROGRAMS = {"redis": "redis-server", "web": "uwsgi", "worker": "celery"}
_LINE = re.compile(r"^(\S+)\s*\| ?(.*)$")


@dataclass(frozen=True)
class Line:
    at: float  # time.monotonic() when the test read it
    name: str  # "pidone", "redis", "web", "worker", "nginx", "runner"
    text: str


class Webapp:
    def __init__(self, state: Path, config: Path | None = None) -> None:
        self.state = state
        # the client, where www-data and nobody can read it
        shutil.copy(CLIENT, state / "client.py")
        (state / "client.py").chmod(0o644)
        argv = ["/usr/bin/python3", str(RUNNER), "--state", str(state), "--netns"]
        self.proc = subprocess.Popen(
            argv + (["--config", str(config)] if config is not None else []),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._lines: list[Line] = []
        self._eof = False
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.info: dict[str, Any] = {}

    # -- output --

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            text = raw.decode(errors="replace").rstrip("\n")
            match = _LINE.match(text)
            line = Line(time.monotonic(), *(match.groups() if match else ("", text)))
            with self._cond:
                self._lines.append(line)
                self._cond.notify_all()
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    def mark(self) -> int:
        """Where the output is now: later searches can start here."""
        with self._cond:
            return len(self._lines)

    def line(self, index: int) -> Line:
        with self._cond:
            return self._lines[index]

    def lines(self, after: int = 0) -> list[Line]:
        with self._cond:
            return self._lines[after:]

    def find(self, name: str, pattern: str, after: int = 0) -> int | None:
        """Index of the first line of `name` that matches `pattern` (re.search)."""
        regex = re.compile(pattern)
        with self._cond:
            for i in range(after, len(self._lines)):
                line = self._lines[i]
                if line.name == name and regex.search(line.text):
                    return i
        return None

    def find_all(self, name: str, pattern: str, after: int = 0) -> list[int]:
        regex = re.compile(pattern)
        with self._cond:
            return [
                i
                for i in range(after, len(self._lines))
                if self._lines[i].name == name and regex.search(self._lines[i].text)
            ]

    def wait_for(self, name: str, pattern: str, *, after: int = 0, timeout: float = 30.0) -> int:
        """Wait for a line of `name` matching `pattern`; its index."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._cond:
            start = after
            while True:
                for i in range(start, len(self._lines)):
                    line = self._lines[i]
                    if line.name == name and regex.search(line.text):
                        return i
                start = len(self._lines)
                left = deadline - time.monotonic()
                if self._eof or left <= 0:
                    why = "the runner exited" if self._eof else f"{timeout:g} s passed"
                    raise AssertionError(
                        f"{why} without a line `{name} | ...{pattern}...`; the last lines:\n"
                        + self.tail()
                    )
                self._cond.wait(left)

    def tail(self, n: int = 80) -> str:
        with self._cond:
            return "\n".join(f"{ln.name:6} | {ln.text}" for ln in self._lines[-n:])

    def events(self, n: int = 150) -> str:
        """The last N lines that are not uwsgi's per-request log: what the
        stack said about itself (nginx's errors, pidone's and uwsgi's own)."""
        with self._cond:
            kept = [ln for ln in self._lines if not REQUEST_LOG.match(ln.text)]
        return "\n".join(f"{ln.name:6} | {ln.text}" for ln in kept[-n:])

    def wait_ready(self, timeout: float = 90.0) -> None:
        self.wait_for("runner", r"^ready in ", timeout=timeout)
        self.info = json.loads((self.state / "stack.json").read_text())

    # -- pids (on our side of the PID namespaces) --

    @property
    def runner(self) -> int:
        return self.proc.pid

    @property
    def pidone(self) -> int:
        return int(self.info["pidone"])

    @property
    def nginx(self) -> int:
        return int(self.info["nginx"])

    def main_pid(self, name: str) -> int:
        """pid of the process pidone runs as `name` (redis, web, worker)."""
        found = [pid for pid in children_of(self.pidone) if PROGRAMS[name] in cmdline(pid)]
        assert len(found) == 1, f"{name}: pidone's children running {PROGRAMS[name]}: {found}"
        return found[0]

    def wait_main_pid(self, name: str, timeout: float = 30.0) -> int:
        deadline = time.monotonic() + timeout
        while True:
            found = [pid for pid in children_of(self.pidone) if PROGRAMS[name] in cmdline(pid)]
            if len(found) == 1:
                return found[0]
            if time.monotonic() > deadline:
                raise AssertionError(f"{name}: pidone's children running it: {found}")
            time.sleep(0.05)

    # -- requests, from inside the stack's network namespace --

    def _in_netns(self, *args: str) -> list[str]:
        return ["nsenter", f"--net=/proc/{self.runner}/ns/net", "--", *args]

    def client(self, *args: str, timeout: float = 60.0) -> list[dict[str, Any]]:
        result = subprocess.run(
            self._in_netns("/usr/bin/python3", str(self.state / "client.py"), *args),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        assert result.returncode == 0, f"client {args}: {result.stderr}"
        return [json.loads(line) for line in result.stdout.splitlines()]

    def get(self, path: str) -> tuple[int | None, str]:
        [answer] = self.client("get", APP + path)
        return answer["status"], answer.get("body") or answer.get("error", "")

    def get_json(self, path: str, expect: int = 200) -> dict[str, Any]:
        status, body = self.get(path)
        assert status == expect, f"GET {path}: {status} {body}"
        data = json.loads(body)
        assert isinstance(data, dict)
        return data

    def enqueue(self, seconds: float) -> str:
        task = self.get_json(f"/enqueue?seconds={seconds:g}", expect=202)["id"]
        assert isinstance(task, str)
        return task

    def wait_state(self, task: str, *states: str, timeout: float = 30.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            answer = self.get_json(f"/result/{task}")
            if answer["state"] in states:
                return answer
            if time.monotonic() > deadline:
                raise AssertionError(f"task {task} never reached {states}: {answer}")
            time.sleep(0.1)

    def roundtrip(self, seconds: float = 0.0, timeout: float = 30.0) -> dict[str, Any]:
        """A task through nginx, uwsgi, redis and the worker; its result."""
        answer = self.wait_state(self.enqueue(seconds), "SUCCESS", "FAILURE", timeout=timeout)
        assert answer["state"] == "SUCCESS", answer
        result = answer["result"]
        assert isinstance(result, dict)
        return result

    def redis(self, *command: str) -> str:
        """A redis command from inside the network namespace (redis-cli)."""
        result = subprocess.run(
            self._in_netns("redis-cli", "-h", "127.0.0.1", "-p", "6379", "--raw", *command),
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout.rstrip("\n")

    @contextmanager
    def load(
        self, *, threads: int = 8, seconds: float = 60.0, max_requests: int = 60_000
    ) -> Iterator[LoadRun]:
        argv = ["/usr/bin/python3", str(self.state / "client.py"), "load", APP + "/",
                "--threads", str(threads), "--seconds", str(seconds),
                "--max-requests", str(max_requests)]  # fmt: skip
        run = LoadRun(self._in_netns(*argv))
        try:
            yield run
        finally:
            run.stop()

    # -- the end --

    def wait_exit(self, timeout: float = 120.0) -> int:
        code = self.proc.wait(timeout)
        self._reader.join(10)
        return code

    def kill(self) -> None:
        """Teardown: SIGKILL each namespace's PID 1 (the kernel ends the
        rest of its namespace), then the runner; all by pid."""
        if self.proc.poll() is None:
            for unshare in children_of(self.runner):
                for pid1 in children_of(unshare):
                    _kill(pid1, signal.SIGKILL)
            _kill(self.runner, signal.SIGKILL)
            self.proc.wait(30)
        self._reader.join(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


class LoadRun:
    """client.py load in the stack's network namespace: a second process
    making requests through nginx on new connections, reporting as it goes."""

    def __init__(self, argv: list[str]) -> None:
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.latest: dict[str, Any] = {"ok": 0, "failed": {}}
        self.final: dict[str, Any] | None = None
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            report = json.loads(line)
            with self._cond:
                self.latest = report
                if report.get("final"):
                    self.final = report
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def ok(self) -> int:
        with self._cond:
            return int(self.latest["ok"])

    def wait_ok(self, n: int, timeout: float = 30.0) -> None:
        """Wait for n more successful requests than there are now."""
        deadline = time.monotonic() + timeout
        with self._cond:
            goal = int(self.latest["ok"]) + n
            while int(self.latest["ok"]) < goal:
                left = deadline - time.monotonic()
                if left <= 0 or self.final is not None:
                    raise AssertionError(f"fewer than {n} more successful requests: {self.latest}")
                self._cond.wait(left)

    def stop(self) -> dict[str, Any]:
        if self.proc.poll() is None and self.proc.stdin is not None:
            try:
                self.proc.stdin.write("stop\n")
                self.proc.stdin.close()
            except BrokenPipeError:
                pass
        self.proc.wait(30)
        self._reader.join(10)
        assert self.final is not None, f"the load client ended without a report: {self.latest}"
        return self.final


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except (FileNotFoundError, ProcessLookupError):
        return ""


def ns_pid(pid: int) -> int:
    """pid as seen inside its own PID namespace (the last NSpid field)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("NSpid:"):
            return int(line.split()[-1])
    raise AssertionError(f"no NSpid for {pid}")


@contextmanager
def pinned_namespace(pid: int) -> Iterator[str]:
    """The PID namespace of `pid` ("pid:[4026532712]"), held open so that
    its number is not given to a new namespace once it is gone (the kernel
    reuses them): in_namespace() can then tell that it is empty."""
    fd = os.open(f"/proc/{pid}/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
    try:
        yield os.readlink(f"/proc/self/fd/{fd}")
    finally:
        os.close(fd)


def in_namespace(ns: str) -> list[int]:
    """Every live process whose PID namespace is `ns` (a readlink of
    /proc/PID/ns/pid, like "pid:[4026532712]")."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.readlink(entry / "ns" / "pid") == ns:
                    found.append(int(entry.name))
            except (FileNotFoundError, ProcessLookupError, PermissionError):
                continue
    return found


def _kill(pid: int, signum: int) -> None:
    with suppress(ProcessLookupError):
        os.kill(pid, signum)
