"""Replicas on a private network, for the legion tests.

`Netns` is a network and UTS namespace held open by a small process the
test starts (and SIGKILLs at the end, by pid; it also dies with the test
process, PR_SET_PDEATHSIG): the kernel frees the namespace, and the veth
ends in it, once nothing is left inside. `Replicas` builds:

    redis namespace (hostname "redis")
        br0 10.217.0.1/24, redis-server bound to it
        vr1, vr2, vr3 (bridge ports)
    replica-N namespace (hostname "replica-N"), for N = 1, 2, 3
        eth0 10.217.0.(10+N)/24, the other end of vrN

Everything is created inside these namespaces (the veth pairs in the redis
namespace, their far ends moved into the replicas'): nothing on the host's
interfaces, no route out. Each replica's `pidone run` is PID 1 of a PID
namespace of its own (tests/helpers/stack.py, mode "pid1") entered into
its replica's network and UTS namespaces with nsenter. The test talks to
redis only from inside the redis namespace (redis-cli through nsenter).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.helpers.running import HELPERS, PYTHON, wait_for
from tests.helpers.stack import Stack

WEBAPP_VENV = Path("/opt/pidone-webapp-venv")  # celery[redis], made by examples/webapp/install.sh
CELERY = WEBAPP_VENV / "bin" / "celery"
REDIS_HOST = "10.217.0.1"
REDIS_PORT = 6379
REDIS_URL = f"redis://{REDIS_HOST}:{REDIS_PORT}/0"
QUEUE = "celery"  # the broker's default queue: where beat's ticks land
BEAT_MARK = "beat_app"  # in the command line of every beat of these tests

# The holder: dies with its parent (the test), else waits for SIGKILL.
_HOLD = (
    "import ctypes, os, signal, sys\n"
    "ctypes.CDLL(None).prctl(1, signal.SIGKILL)\n"  # PR_SET_PDEATHSIG
    "os.getppid() == int(sys.argv[1]) or sys.exit(1)\n"
    "while True: signal.pause()\n"
)


def _ns(pid: int | str, kind: str) -> str:
    return os.readlink(f"/proc/{pid}/ns/{kind}")


class Netns:
    """A network + UTS namespace with hostname `hostname` and loopback up."""

    def __init__(self, hostname: str) -> None:
        self.hostname = hostname
        argv = ["unshare", "--net", "--uts", "--", PYTHON, "-c", _HOLD, str(os.getpid())]
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, start_new_session=True)
        self.pid = self.proc.pid
        # Until unshare(2) has run, /proc/PID/ns/* are still ours: entering
        # them then would configure the host. Both change in one syscall.
        ours = _ns("self", "net")
        wait_for(
            lambda: self.proc.poll() is not None or _ns(self.pid, "net") != ours,
            what=f"the namespace of {hostname}",
        )
        assert self.proc.poll() is None, f"unshare for {hostname} exited {self.proc.returncode}"
        assert _ns(self.pid, "uts") != _ns("self", "uts")
        self.net = _ns(self.pid, "net")
        self.run("hostname", hostname)
        self.run("ip", "link", "set", "lo", "up")

    def enter(self) -> list[str]:
        """A command prefix that runs the rest inside this namespace."""
        return ["nsenter", f"--net=/proc/{self.pid}/ns/net", f"--uts=/proc/{self.pid}/ns/uts", "--"]

    def run(self, *argv: str, timeout: float = 30.0, check: bool = True) -> str:
        done = subprocess.run(
            [*self.enter(), *argv], capture_output=True, text=True, timeout=timeout
        )
        assert not check or done.returncode == 0, f"{argv} in {self.hostname}: {done.stderr}"
        return done.stdout

    def close(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            self.proc.wait(10)


@dataclass(frozen=True)
class Tick:
    sent_at: float  # the wall clock of the beat that sent it
    sender: str  # its replica's hostname


@dataclass
class Replica:
    n: int
    netns: Netns
    dir: Path
    stack: Stack | None = None

    @property
    def hostname(self) -> str:
        return self.netns.hostname


@dataclass
class Sample:
    at: float  # time.monotonic()
    beats: dict[str, list[int]] = field(default_factory=dict)  # hostname -> host pids


class Replicas:
    """The redis namespace, N replica namespaces, one redis-server; the
    replicas' pidones are started by the test (`start(n, toml)`)."""

    def __init__(self, tmp_path: Path, count: int = 3) -> None:
        self.dir = tmp_path
        self.netns: list[Netns] = []
        self.redis_proc: subprocess.Popen[bytes] | None = None
        self.replicas: list[Replica] = []
        self.samples: list[Sample] = []
        self._sampling = threading.Event()
        self._sampler: threading.Thread | None = None
        try:
            self.redis_ns = self._netns("redis")
            self.redis_ns.run("ip", "link", "add", "br0", "type", "bridge")
            self.redis_ns.run("ip", "addr", "add", f"{REDIS_HOST}/24", "dev", "br0")
            self.redis_ns.run("ip", "link", "set", "br0", "up")
            for n in range(1, count + 1):
                self.replicas.append(self._replica(n))
            self.start_redis()
        except BaseException:
            self.close()
            raise

    def _netns(self, hostname: str) -> Netns:
        ns = Netns(hostname)
        self.netns.append(ns)
        return ns

    def _replica(self, n: int) -> Replica:
        ns = self._netns(f"replica-{n}")
        port = f"vr{n}"
        self.redis_ns.run("ip", "link", "add", port, "type", "veth",
                          "peer", "name", "eth0", "netns", str(ns.pid))  # fmt: skip
        self.redis_ns.run("ip", "link", "set", port, "master", "br0", "up")
        ns.run("ip", "addr", "add", f"10.217.0.{10 + n}/24", "dev", "eth0")
        ns.run("ip", "link", "set", "eth0", "up")
        where = self.dir / f"replica-{n}"
        where.mkdir()
        return Replica(n, ns, where)

    # -- redis --

    def start_redis(self) -> None:
        """redis-server on br0's address; its data (the ticks) is saved
        when it is stopped (SIGTERM) and loaded when it starts again."""
        assert self.redis_proc is None or self.redis_proc.poll() is not None
        argv = ["redis-server", "--bind", REDIS_HOST, "--port", str(REDIS_PORT),
                "--protected-mode", "no", "--dir", str(self.dir), "--dbfilename", "redis.rdb",
                "--save", "3600 1", "--appendonly", "no", "--logfile", str(self.dir / "redis.log"),
                "--daemonize", "no"]  # fmt: skip
        self.redis_proc = subprocess.Popen(
            [*self.redis_ns.enter(), *argv], stdin=subprocess.DEVNULL, start_new_session=True
        )
        wait_for(self._redis_answers, timeout=20, what="redis-server to answer")

    def _redis_answers(self) -> bool:
        assert self.redis_proc is not None
        assert self.redis_proc.poll() is None, f"redis-server exited {self.redis_proc.returncode}"
        return self.redis("PING", check=False) == "PONG"

    def stop_redis(self) -> None:
        """SIGTERM to redis-server (by pid): it saves, then exits."""
        assert self.redis_proc is not None
        self.redis_proc.send_signal(signal.SIGTERM)
        assert self.redis_proc.wait(20) == 0

    def kill_redis(self) -> None:
        """SIGKILL to redis-server (by pid): it saves nothing, it starts
        again empty (as a redis without persistence restarted)."""
        assert self.redis_proc is not None
        self.redis_proc.kill()
        self.redis_proc.wait(20)
        (self.dir / "redis.rdb").unlink(missing_ok=True)

    def redis(self, *command: str, check: bool = True) -> str:
        out = self.redis_ns.run("redis-cli", "-h", REDIS_HOST, "-p", str(REDIS_PORT), "--raw",
                                *command, check=check)  # fmt: skip
        return out.rstrip("\n")

    def ticks(self) -> list[Tick]:
        """Every tick beat has sent (a message in the queue), oldest first."""
        found = []
        for line in self.redis("LRANGE", QUEUE, "0", "-1").splitlines():
            headers = json.loads(line)["headers"]
            found.append(Tick(float(headers["sent_at"]), str(headers["sender"])))
        return sorted(found, key=lambda t: t.sent_at)

    # -- the replicas' pidones --

    def start(self, n: int, toml: str) -> Stack:
        replica = self.replicas[n - 1]
        assert replica.stack is None or replica.stack.init.proc.poll() is not None
        replica.stack = Stack("pid1", replica.dir).start(toml, prefix=replica.netns.enter())
        return replica.stack

    def stack(self, n: int) -> Stack:
        stack = self.replicas[n - 1].stack
        assert stack is not None
        return stack

    def cut(self, n: int) -> None:
        """Replica N's link down, from inside its namespace."""
        self.replicas[n - 1].netns.run("ip", "link", "set", "eth0", "down")

    def mend(self, n: int) -> None:
        self.replicas[n - 1].netns.run("ip", "link", "set", "eth0", "up")

    # -- beats, counted from the host's /proc --

    def beats(self) -> dict[str, list[int]]:
        """The live beat processes in each replica (host pids): every process
        on this host whose command line is a beat of beat_app, by the network
        namespace it is in (the PID namespace may be dying: SIGKILLed pidone)."""
        by_net = {r.netns.net: r.hostname for r in self.replicas}
        found: dict[str, list[int]] = {r.hostname: [] for r in self.replicas}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
                net = os.readlink(entry / "ns" / "net")
            except (FileNotFoundError, ProcessLookupError, PermissionError):
                continue
            if b"beat" in argv and any(BEAT_MARK.encode() in a for a in argv) and net in by_net:
                found[by_net[net]].append(int(entry.name))
        return found

    def running_beat(self) -> list[str]:
        """The hostnames of the replicas that run a beat now."""
        return [host for host, pids in self.beats().items() if pids]

    def start_sampling(self, every: float = 0.02) -> None:
        """Record who runs a beat every `every` seconds, until close()."""

        def sample() -> None:
            while not self._sampling.wait(every):
                self.samples.append(Sample(time.monotonic(), self.beats()))

        self._sampler = threading.Thread(target=sample, daemon=True)
        self._sampler.start()

    def most_beats_at_once(self) -> int:
        return max((sum(len(p) for p in s.beats.values()) for s in self.samples), default=0)

    def close(self) -> None:
        self._sampling.set()
        if self._sampler is not None:
            self._sampler.join(10)
        for replica in self.replicas:
            if replica.stack is not None:
                replica.stack.__exit__(None, None, None)
        if self.redis_proc is not None and self.redis_proc.poll() is None:
            self.redis_proc.kill()
            self.redis_proc.wait(10)
        for ns in self.netns:
            ns.close()

    def __enter__(self) -> Replicas:
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is not None:
            for replica in self.replicas:
                if replica.stack is not None:
                    print(f"--- {replica.hostname}'s pidone said ---")
                    print(replica.stack.stdout_so_far()[-4000:])
                    print(replica.stack.stderr_so_far()[-4000:])
        self.close()


def beat_command(replica: Replica) -> str:
    """The beat each replica's pidone runs, its schedule file in the replica's directory."""
    return (
        f"{CELERY} -A {BEAT_MARK} beat --loglevel INFO --schedule {replica.dir / 'beat-schedule'}"
    )


def beat_environment() -> str:
    """`environment` for [process.beat]: where beat_app is, and the broker."""
    return f'{{ PYTHONPATH = "{HELPERS}", REDIS_URL = "{REDIS_URL}" }}'
