#!/usr/bin/python3
"""Run the webapp example as a container platform would run a pod of two
containers, without a container engine: `make demo` runs this.

    run.py [--state DIR] [--netns]      the stack, in the foreground (Ctrl-C stops it)
    run.py exec [--state DIR] CMD...    run CMD inside the app "container"
                                        (`run.py exec pidone ctl status`, `... ps -ef`)

The app "container": `pidone run` (redis, uwsgi, the celery worker) as PID 1
of a new PID namespace, in a mount namespace of its own where /run is a
fresh tmpfs (so pidone's control socket is its own) and the volume is
mounted at /run/pidone-webapp.

The nginx "sidecar": nginx as www-data, PID 1 of another PID namespace, in a
root of its own that holds the host's /usr and /etc read-only and, of the
app's files, only the volume, also at /run/pidone-webapp
(nginx-sidecar.sh). The volume is a plain directory, STATE/volume, like a
pod's emptyDir: pidone gives it owner, group and mode and binds uwsgi's
socket in it; nginx connects to that socket. Both share the network
namespace (the host's, or with --netns a new one with only loopback, for
the tests), as the containers of a pod do.

Signals: Ctrl-C or SIGTERM stops nginx first (SIGQUIT: graceful, requests in
progress finish), then pidone (SIGINT: each process with its own stop
signal, in reverse dependency order), and waits for both. SIGHUP reloads:
pidone passes each process its reload signal (uwsgi re-imports the app),
nginx rereads its configuration. run.py exits with pidone's status.

Standard library only, run by Debian's /usr/bin/python3, as root.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import pwd
import selectors
import signal
import stat
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
VENV = Path(os.environ.get("WEBAPP_VENV", "/opt/pidone-webapp-venv"))
DEFAULT_STATE = Path("/var/lib/pidone-webapp")
# Where both containers see the volume: pidone.toml and nginx.conf name it.
VOLUME_MOUNT = "/run/pidone-webapp"
APP_URL = "http://127.0.0.1:8080/"
METRICS_URL = "http://127.0.0.1:9100/metrics"
NGINX_STOP_TIMEOUT = 15.0  # nginx.conf: worker_shutdown_timeout 10s
READY_TIMEOUT = 120.0
PR_SET_PDEATHSIG = 1  # linux/prctl.h
IN_NETNS = "PIDONE_WEBAPP_IN_NETNS"  # set once run.py runs in its own network namespace

# The app container's first process: its own /run, the volume in it, then
# exec pidone, which becomes PID 1 of the namespace.
APP_SETUP = """
set -e
mount -t tmpfs -o mode=0755,size=16m,nosuid,nodev app-run /run
mkdir -p "$1"
mount --bind "$2" "$1"
shift 2
exec "$@"
"""

REQUIRED = [
    VENV / "bin" / "pidone",
    VENV / "bin" / "uwsgi",
    VENV / "bin" / "celery",
    Path("/usr/bin/redis-server"),
    Path("/usr/sbin/nginx"),
    Path("/usr/bin/unshare"),
    Path("/usr/bin/nsenter"),
    Path("/usr/bin/setpriv"),
    Path("/usr/sbin/pivot_root"),
    Path("/usr/sbin/ip"),
]


def say(message: str, fd: int = 1) -> None:
    """One line, in one write: it never mixes with pidone's lines. A closed
    terminal or pipe does not stop us from stopping the stack properly."""
    try:
        os.write(fd, f"runner | {message}\n".encode())
    except OSError:
        pass


def fail(message: str) -> int:
    say(message, fd=2)
    return 1


def die_with_the_runner(runner: int) -> Callable[[], None]:
    """For Popen's preexec_fn: the child (unshare) gets SIGKILL when run.py
    dies, even by SIGKILL; `unshare --kill-child` passes it on to the
    namespace's PID 1, and with it the kernel ends the whole namespace. So
    no stack outlives its runner."""
    libc = ctypes.CDLL(None, use_errno=True)

    def preexec() -> None:
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != runner:  # the runner died before prctl
            os._exit(1)

    return preexec


def status_of(returncode: int) -> int:
    """A shell-style exit status: 128+N for death by signal N."""
    return 128 - returncode if returncode < 0 else returncode


def first_child(pid: int, timeout: float = 10.0) -> int:
    """The pid of the first child of `pid` (unshare --fork's child)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except FileNotFoundError:
            break
        if children:
            return int(children[0])
        time.sleep(0.01)
    raise RuntimeError(f"unshare (pid {pid}) started no child")


def kill(pid: int | None, signum: int) -> None:
    if pid is None:
        return
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


class Stack:
    def __init__(self, state: Path, netns: bool, config: Path | None = None) -> None:
        self.state = state
        self.netns = netns
        self.config = config  # None: pidone.toml here
        self.volume = state / "volume"
        self.redis_dir = state / "redis"
        self.sidecar_root = state / "sidecar-root"
        self.app: subprocess.Popen[bytes] | None = None
        self.sidecar: subprocess.Popen[bytes] | None = None
        self.pidone: int | None = None  # pids on our side of the PID namespaces
        self.nginx: int | None = None
        self.app_status: int | None = None
        self.sidecar_status: int | None = None
        self.stopping: int | None = None  # the signal that asked us to stop
        self.nginx_deadline: float | None = None
        self.nginx_escalated = False
        self.done = threading.Event()  # tells the readiness thread to give up

    # -- setting up --

    def prepare(self) -> None:
        self.state.mkdir(parents=True, exist_ok=True)
        self.state.chmod(0o755)
        # The volume, as a platform makes it: root's, empty or not. pidone
        # gives it owner, group and mode, and removes a stale socket.
        self.volume.mkdir(exist_ok=True)
        self.sidecar_root.mkdir(exist_ok=True)
        self.redis_dir.mkdir(exist_ok=True)
        redis = pwd.getpwnam("redis")
        os.chown(self.redis_dir, redis.pw_uid, redis.pw_gid)
        self.redis_dir.chmod(0o750)

    def start_app(self) -> None:
        env = dict(os.environ)
        env.pop(IN_NETNS, None)
        # The image's PATH: the venv first (uwsgi, celery, pidone).
        env["PATH"] = f"{VENV / 'bin'}:{env.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}"
        env["REDIS_DIR"] = str(self.redis_dir)  # the Procfile's redis --dir
        argv = ["unshare", "--pid", "--fork", "--kill-child", "--mount-proc", "--",
                "/bin/sh", "-c", APP_SETUP, "app-setup", VOLUME_MOUNT, str(self.volume),
                str(VENV / "bin" / "pidone"), "run"]  # fmt: skip
        if self.config is not None:
            argv += ["-c", str(self.config)]
        # Its own session: Ctrl-C on the terminal reaches run.py only, which
        # stops nginx and pidone in order. pidone's output is our output.
        self.app = subprocess.Popen(
            argv,
            cwd=HERE,
            env=env,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=die_with_the_runner(os.getpid()),
        )
        self.pidone = first_child(self.app.pid)
        say(f"app: pidone is pid 1 of its PID namespace (pid {self.pidone} outside)")

    def start_sidecar(self) -> None:
        argv = ["unshare", "--pid", "--fork", "--kill-child", "--mount",
                "--propagation", "private", "--",
                "/bin/bash", str(HERE / "nginx-sidecar.sh"), str(self.sidecar_root),
                str(self.volume), str(HERE / "nginx.conf")]  # fmt: skip
        self.sidecar = subprocess.Popen(
            argv,
            cwd="/",
            env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"},  # nothing of ours
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_the_runner(os.getpid()),
        )
        assert self.sidecar.stdout is not None
        threading.Thread(target=relay, args=(self.sidecar.stdout, "nginx "), daemon=True).start()
        self.nginx = first_child(self.sidecar.pid)
        say(f"sidecar: nginx as www-data, pid 1 of its own namespaces (pid {self.nginx} outside)")

    def write_pids(self) -> None:
        info = {"runner": os.getpid(), "pidone": self.pidone, "nginx": self.nginx,
                "netns": self.netns}  # fmt: skip
        tmp = self.state / "stack.json.tmp"
        tmp.write_text(json.dumps(info) + "\n")
        tmp.rename(self.state / "stack.json")

    # -- readiness, in a thread: the main loop stays free for signals --

    def wait_ready(self) -> None:
        """Ready once a request goes through nginx to uwsgi, and a task
        through redis to the worker and back."""
        started = time.monotonic()
        task = None
        while not self.done.wait(0.2):
            if time.monotonic() - started > READY_TIMEOUT:
                step = "a request to uwsgi" if task is None else "a task to the worker"
                say(f"not ready after {READY_TIMEOUT:g} s (stuck at {step}); still running")
                return
            try:
                if task is None:
                    if get(APP_URL).startswith("Hello"):
                        task = json.loads(get(APP_URL + "enqueue?seconds=0"))["id"]
                elif json.loads(get(f"{APP_URL}result/{task}")).get("state") == "SUCCESS":
                    self.banner(time.monotonic() - started)
                    return
            except (OSError, ValueError, KeyError):
                continue  # not up yet (refused, 502, ...): try again

    def banner(self, seconds: float) -> None:
        where = ""
        if self.netns:
            where = f"  (in a network namespace: nsenter --net=/proc/{os.getpid()}/ns/net curl ...)"
        say(f"ready in {seconds:.1f} s: a task went nginx -> uwsgi -> redis -> celery and back")
        say(f"  the app:  {APP_URL}{where}")
        say(f"            {APP_URL}enqueue?seconds=5, then {APP_URL}result/<id>")
        say(f"  metrics:  {METRICS_URL}")
        say(f"  inside:   {HERE / 'run.py'} exec pidone ctl status   (or ps -ef, redis-cli ...)")
        say(f"  stop:     Ctrl-C (or kill -INT {os.getpid()}); reload: kill -HUP {os.getpid()}")

    # -- the loop: signals and the two containers' exits, no polling --

    def run(self, rfd: int) -> int:
        """Until both have exited; `rfd` is the signal wakeup pipe."""
        assert self.app is not None and self.sidecar is not None
        sel = selectors.DefaultSelector()
        sel.register(rfd, selectors.EVENT_READ, "signal")
        sel.register(os.pidfd_open(self.app.pid), selectors.EVENT_READ, "app")
        sel.register(os.pidfd_open(self.sidecar.pid), selectors.EVENT_READ, "sidecar")
        threading.Thread(target=self.wait_ready, daemon=True).start()
        while self.app_status is None or self.sidecar_status is None:
            timeout = None
            if self.nginx_deadline is not None:
                timeout = max(0.0, self.nginx_deadline - time.monotonic())
            events = sel.select(timeout)
            if not events and self.nginx_deadline is not None:
                # SIGTERM is nginx's fast stop; SIGKILL if even that hangs
                escalate = signal.SIGKILL if self.nginx_escalated else signal.SIGTERM
                say(f"nginx still running after its stop timeout: {escalate.name}")
                kill(self.nginx, escalate)
                self.nginx_escalated = True
                self.nginx_deadline = time.monotonic() + 5.0
            for key, _ in events:
                if key.data == "signal":
                    for signum in os.read(rfd, 512):
                        self.on_signal(signum)
                elif key.data == "app":
                    sel.unregister(key.fileobj)
                    os.close(key.fd)
                    self.app_status = status_of(self.app.wait())
                    self.pidone = None
                    self.on_app_exit()
                elif key.data == "sidecar":
                    sel.unregister(key.fileobj)
                    os.close(key.fd)
                    self.sidecar_status = status_of(self.sidecar.wait())
                    self.nginx = None
                    self.nginx_deadline = None
                    self.on_sidecar_exit()
        self.done.set()
        (self.state / "stack.json").unlink(missing_ok=True)
        say(f"pidone exited with status {self.app_status}, nginx with {self.sidecar_status}")
        if self.app_status == 0 and self.sidecar_status != 0:
            return 1
        return self.app_status

    def on_signal(self, signum: int) -> None:
        name = signal.Signals(signum).name
        if signum == signal.SIGHUP:
            say("SIGHUP: reloading (SIGHUP to pidone and to nginx)")
            kill(self.pidone, signal.SIGHUP)
            kill(self.nginx, signal.SIGHUP)
            return
        if self.stopping is None:
            self.stopping = signum
            self.done.set()
            if self.nginx is not None:
                say(f"{name}: stopping nginx (SIGQUIT: graceful), then pidone")
                self.stop_nginx()
            else:
                self.stop_pidone()
        else:  # asked again: pass it on; pidone knows what a second one means
            say(f"{name} again: passing it to pidone; still waiting for everything to stop")
            kill(self.pidone, signum)

    def stop_nginx(self) -> None:
        kill(self.nginx, signal.SIGQUIT)
        self.nginx_deadline = time.monotonic() + NGINX_STOP_TIMEOUT

    def stop_pidone(self) -> None:
        if self.pidone is None:
            return
        # SIGINT for Ctrl-C, SIGTERM for SIGTERM: the same graceful stop to pidone.
        signum = signal.SIGINT if self.stopping == signal.SIGINT else signal.SIGTERM
        say(f"stopping pidone ({signal.Signals(signum).name})")
        kill(self.pidone, signum)

    def on_app_exit(self) -> None:
        if self.sidecar_status is None and self.stopping is None:
            say(f"pidone exited with status {self.app_status}: stopping nginx")
            self.stopping = signal.SIGTERM
            self.done.set()
            self.stop_nginx()

    def on_sidecar_exit(self) -> None:
        if self.stopping is None:
            say(f"nginx exited on its own with status {self.sidecar_status}: stopping the app")
            self.stopping = signal.SIGTERM
            self.done.set()
        self.stop_pidone()

    def kill_all(self) -> None:
        """After a failed start: end what did start (each namespace's PID 1)."""
        for pid in (self.pidone, self.nginx):
            kill(pid, signal.SIGKILL)
        for proc in (self.app, self.sidecar):
            if proc is not None:
                proc.wait()


def relay(stream: object, name: str) -> None:
    """Each line of the sidecar's output, prefixed, in one write."""
    readline = getattr(stream, "readline")  # noqa: B009 (a BufferedReader)
    while line := readline():
        try:
            os.write(1, f"{name} | ".encode() + line.rstrip(b"\n") + b"\n")
        except OSError:
            pass  # our output is gone; keep draining nginx's


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return str(response.read().decode())


def preflight(state: Path) -> str | None:
    if os.geteuid() != 0:
        return "run.py runs as root: it makes namespaces, mounts and users' processes"
    missing = [str(path) for path in REQUIRED if not os.access(path, os.X_OK)]
    if missing:
        return f"missing {', '.join(missing)}: run `make webapp-install` (install.sh here)"
    if state.resolve().is_relative_to("/run"):
        return f"--state {state}: not under /run (the app gets a /run of its own)"
    # redis, app and celery read their files here (the Procfile's cwd)
    for folder in [*reversed(HERE.parents), HERE]:
        mode = folder.stat().st_mode
        if not mode & stat.S_IXOTH:
            return (
                f"{folder} (mode {stat.S_IMODE(mode):04o}) is not traversable by other users:"
                f" the app's users (redis, app, celery) cannot read {HERE}. Fix: `chmod o+x"
                f" {folder}`, or clone into a folder every user can traverse"
            )
    return None


def catch_signals() -> int:
    """Signals wake the loop through a pipe (one byte each) from now on:
    one that comes while the stack starts is handled once it runs."""
    rfd, wfd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wfd)
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, lambda *_: None)
    return rfd


def up(state: Path, netns: bool, config: Path | None = None) -> int:
    problem = preflight(state)
    if problem:
        return fail(problem)
    if netns and os.environ.get(IN_NETNS) != "1":
        # Again, in a new network namespace (same pid: unshare without --fork).
        os.environ[IN_NETNS] = "1"
        os.execvp("unshare", ["unshare", "--net", "--", sys.executable, *sys.argv])
    rfd = catch_signals()
    if netns:
        subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    stack = Stack(state, netns, config)
    stack.prepare()
    say(f"state in {state}; the volume shared with nginx: {stack.volume}")
    try:
        stack.start_app()
        stack.start_sidecar()
        stack.write_pids()
    except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
        stack.kill_all()
        return fail(f"could not start the stack: {exc}")
    return stack.run(rfd)


def exec_in(state: Path, argv: list[str]) -> int:
    """Run argv in the app container: its PID, mount and network namespaces."""
    if os.geteuid() != 0:
        return fail("run.py exec runs as root (it enters namespaces)")
    try:
        info = json.loads((state / "stack.json").read_text())
    except FileNotFoundError:
        return fail(f"no stack running with state in {state} (no stack.json)")
    path = f"{VENV / 'bin'}:{os.environ.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}"
    os.environ["PATH"] = path
    os.execvp("nsenter", ["nsenter", f"--target={info['pidone']}", "--pid", "--mount", "--net",
                          f"--wd={HERE}", "--", *argv])  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--state",
        type=Path,
        default=DEFAULT_STATE,
        help=f"where the volume and redis's data live (default {DEFAULT_STATE})",
    )
    parser.add_argument(
        "--netns", action="store_true", help="in a new network namespace, loopback only (tests)"
    )
    parser.add_argument(
        "--config",
        type=Path,
        help="pidone's configuration instead of pidone.toml here (tests: one setting changed)",
    )
    parser.add_argument(
        "command", nargs=argparse.REMAINDER, help="`exec CMD...`: run CMD in the app container"
    )
    args = parser.parse_args()
    state = args.state.absolute()
    if not args.command:
        return up(state, args.netns, args.config.absolute() if args.config else None)
    if args.command[0] == "exec" and len(args.command) > 1:
        return exec_in(state, args.command[1:])
    parser.error("the only command is `exec CMD...`")
    return 2


if __name__ == "__main__":
    sys.exit(main())
