"""`pidone ctl` and /metrics against a real `pidone run` (PID 1 of its own
namespace): every command, who may use the socket, garbage that must not
hurt, and metrics read back with prometheus-client's own parser."""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import re
import select
import signal
import socket
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics,
)
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers.load import UnixLoad
from tests.helpers.running import PIDONE, PYTHON, wait_for
from tests.helpers.stack import Stack, free_port, nth
from tests.helpers.users import APP, EXTRA, as_user, socket_table

BIN = Path(sys.executable).parent
APP_DIR = Path(__file__).parent.parent / "helpers"
UWSGI = (
    f"{BIN / 'uwsgi'} --master --processes 2 --http-socket fd://3 --chdir {APP_DIR}"
    " --module wsgi_app --hook-master-start 'unix_signal:15 gracefully_kill_them_all'"
)


def ctl(stack: Stack, *args: str, user: str | None = None) -> subprocess.CompletedProcess[str]:
    wait_for(stack.control_socket.exists, what="the control socket")
    argv = [PIDONE, "ctl", "--socket", str(stack.control_socket), *args]
    if user is not None:
        return as_user(user, argv)
    return subprocess.run(argv, capture_output=True, text=True, timeout=60)


def metrics(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of /metrics, keyed by (name, sorted labels)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[s.name, tuple(sorted(s.labels.items()))] = s.value
    return samples


def http_status(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def two_processes(stack: Stack, extra: str = "") -> str:
    return f"""
[pidone]
settle_time = 0.2
{extra}
[process.a]
command = "{stack.svc("a")}"
[process.b]
command = "{stack.svc("b")}"
after = ["a"]
"""


def test_every_ctl_command_as_root(shared: Path) -> None:
    with Stack("pid1", shared) as stack:
        stack.start(two_processes(stack))
        assert ctl(stack, "wait-ready", "--timeout", "20").returncode == 0
        # Ready by settle_time says nothing of the services' own start: the
        # stop below must find b's SIGTERM handler, which it sets before "up".
        stack.wait_for("a up", "b up")
        status = ctl(stack, "status")
        assert status.returncode == 0
        lines = status.stdout.splitlines()
        assert lines[0].split() == [
            "NAME",
            "STATE",
            "READY",
            "PID",
            "UPTIME",
            "RESTARTS",
            "LAST",
            "EXIT",
        ]
        assert [ln.split()[:3] for ln in lines[1:]] == [
            ["a", "READY", "yes"],
            ["b", "READY", "yes"],
        ]
        rows = json.loads(ctl(stack, "status", "--json").stdout)["processes"]
        assert [(r["name"], r["state"], r["restarts"]) for r in rows] == [
            ("a", "ready", 0),
            ("b", "ready", 0),
        ]

        stop = ctl(stack, "stop", "b")
        assert (stop.returncode, stop.stdout) == (0, "b: stopped\n")
        assert "b exit 0" in stack.events()
        start = ctl(stack, "start", "b")
        assert (start.returncode, start.stdout) == (0, "b: ready\n")
        # the restart below stops this b first: its handler must be set ("term")
        wait_for(lambda: stack.count("b up") == 2, what="the new b's journal line")

        restart = ctl(stack, "restart", "a")  # b is after a: cycled with it, in order
        assert (restart.returncode, restart.stdout) == (0, "a: ready\n")
        # ready by settle_time: the new a may not have written its "up" yet
        wait_for(lambda: stack.count("a up") == 2, what="the new a's journal line")
        events = stack.events()
        assert nth(events, "b term", 2) < nth(events, "a term", 1) < nth(events, "a up", 2)
        wait_for(lambda: stack.count("b up") == 3, what="b to come back after a")
        assert ctl(stack, "wait-ready", "--timeout", "20").returncode == 0
        rows = json.loads(ctl(stack, "status", "--json").stdout)["processes"]
        assert [(r["name"], r["restarts"]) for r in rows] == [("a", 1), ("b", 2)]

        assert ctl(stack, "reload", "all").returncode == 0
        stack.wait_for("a SIGHUP", "b SIGHUP")
        assert ctl(stack, "signal", "USR2", "b").returncode == 0
        stack.wait_for("b SIGUSR2")
        assert stack.count("a SIGUSR2") == 0

        unknown = ctl(stack, "stop", "nope")
        assert unknown.returncode == 1
        assert "nope" in unknown.stderr
        usage = ctl(stack, "frobnicate")
        assert usage.returncode == 2

        assert ctl(stack, "shutdown").returncode == 0
        assert stack.init.wait() == 0


def test_group_members_may_use_the_socket_and_others_are_refused(shared: Path) -> None:
    with Stack("pid1", shared) as stack:
        stack.start(two_processes(stack, f'control_group = "{EXTRA}"'))
        assert ctl(stack, "wait-ready", "--timeout", "20").returncode == 0
        st = stack.control_socket.stat()
        assert (st.st_mode & 0o777, st.st_gid) == (0o660, __import__("grp").getgrnam(EXTRA).gr_gid)
        member = ctl(stack, "status", user=APP)  # APP is in EXTRA
        assert member.returncode == 0, member.stderr
        assert "READY" in member.stdout
        outsider = ctl(stack, "status", user="nobody")
        assert outsider.returncode == 1
        assert "ermission denied" in outsider.stderr
        assert ctl(stack, "restart", "b", user=APP).returncode == 0


def test_garbage_and_oversized_requests_get_errors_and_pidone_carries_on(shared: Path) -> None:
    def raw(payload: bytes) -> dict[str, object]:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(10)
            s.connect(str(stack.control_socket))
            # the server may answer and close before reading it all
            with contextlib.suppress(BrokenPipeError):
                s.sendall(payload)
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        reply = json.loads(data)
        assert isinstance(reply, dict)
        return reply

    with Stack("pid1", shared) as stack:
        stack.start(two_processes(stack))
        assert ctl(stack, "wait-ready", "--timeout", "20").returncode == 0
        for payload, expected in [
            (b"this is not json\n", "json"),
            (b"[1, 2, 3]\n", "object"),
            (b'{"args": {}}\n', "command"),
            (b'{"command": "stop", "args": {"names": [1]}}\n', "names"),
            (b"\xff\xfe\n", ""),
            (b"x" * (200 * 1024), "too large"),
        ]:
            reply = raw(payload)
            assert reply["ok"] is False
            assert expected in str(reply["error"]).lower()
        assert ctl(stack, "status").returncode == 0
        assert stack.init.proc.poll() is None
        stack.init.signal(signal.SIGTERM)
        assert stack.init.wait() == 0


def test_restart_of_a_process_that_never_gets_ready_fails_with_the_reason(shared: Path) -> None:
    with Stack("pid1", shared) as stack:
        stack.start(f"""
[process.never]
command = "{stack.svc("never")}"
ready = "tcp:127.0.0.1:{free_port()}"
""")
        stack.wait_for("never listening")
        result = ctl(stack, "restart", "--timeout", "2", "never")
        assert result.returncode == 1
        assert "never: not ready in time (running)" in result.stderr
        # it was restarted (spawned: "running"); its own "up" line may come later
        wait_for(lambda: stack.count("never up") == 2, what="the new instance's journal line")


def start_uwsgi(stack: Stack, sock: Path) -> None:
    stack.start(
        socket_table(sock)
        + f"""
[process.web]
command = "{UWSGI}"
user = "{APP}"
sockets = ["app"]
ready = "notify"
"""
    )
    assert ctl(stack, "wait-ready", "--timeout", "30").returncode == 0


def test_ctl_restart_web_under_load_fails_no_request(shared: Path) -> None:
    sock = shared / "run" / "app.sock"
    with Stack("pid1", shared) as stack:
        start_uwsgi(stack, sock)
        # uwsgi's part: a worker told to stop gracefully exits at once when
        # not in a request, which races an accept() that just returned
        # (gracefully_kill in uwsgi's core): now and then one connection is
        # reset before any answer. The client makes such a request again, as
        # the example's nginx does (README: "uwsgi's own graceful reload").
        with UnixLoad(str(sock), retry_reset=True) as load:
            load.wait_for_ok(200)
            for _ in range(3):
                result = ctl(stack, "restart", "web")
                assert (result.returncode, result.stdout) == (0, "web: ready\n"), result.stderr
                load.wait_for_ok(100)
        print(f"ctl restart web x3 under load: {dict(load.results)}, {load.retried} retried")
        # pidone's part: the socket is always there and always accepts, so no
        # request is refused, misses the socket or fails twice.
        assert set(load.results) == {"ok"}, load.results


def test_ctl_reload_web_reloads_uwsgi_in_place_under_load(shared: Path) -> None:
    sock = shared / "run" / "app.sock"
    with Stack("pid1", shared) as stack:
        start_uwsgi(stack, sock)
        master = stack.host_pid_of("uwsgi")
        # as above: a reset before any answer (uwsgi's race) is made once more
        with UnixLoad(str(sock), retry_reset=True) as load:
            load.wait_for_ok(200)
            for n in (1, 2, 3):
                assert ctl(stack, "reload", "web").returncode == 0
                wait_for(lambda n=n: stack.stderr_so_far().count("binary reloading uWSGI") == n,
                         what="uwsgi to reload")  # fmt: skip
                load.wait_for_ok(200)
        print(f"ctl reload web x3 under load: {dict(load.results)}, {load.retried} retried")
        assert stack.host_pid_of("uwsgi") == master  # reloaded in place, not restarted
        assert set(load.results) == {"ok"}, load.results
        assert load.results["ok"] >= 800


def test_metrics_count_restarts_exits_and_the_whole_process_tree(shared: Path) -> None:
    port = free_port()
    eater = (
        f"{PYTHON} -c 'import os,time\n"
        "if os.fork() == 0:\n"
        "    block = bytearray(50 * 1024 * 1024)\n"
        "    for i in range(0, len(block), 4096): block[i] = 1\n"
        '    print("eaten", flush=True)\n'
        "    time.sleep(3600)\n"
        "time.sleep(3600)'"
    )
    with Stack("pid1", shared) as stack:
        stack.start(f"""
[pidone]
metrics = "127.0.0.1:{port}"
settle_time = 0.2
[process.a]
command = "{stack.svc("a")}"
[process.eater]
command = '''{eater}'''
""")
        assert ctl(stack, "wait-ready", "--timeout", "20").returncode == 0
        key = ("pidone_process_restarts_total", (("process", "a"), ("reason", "crash")))
        exits_137 = ("pidone_process_exits_total", (("process", "a"), ("status", "137")))
        for n in (1, 2):
            os.kill(stack.host_pid("a"), signal.SIGKILL)
            wait_for(lambda n=n: stack.count("a up") == n + 1, what="a to restart")
            assert ctl(stack, "wait-ready", "--timeout", "20").returncode == 0
            m = metrics(port)
            assert m[key] == n  # exactly one more per kill -9
            assert m[exits_137] == n
        m = metrics(port)
        assert m["pidone_process_up", (("process", "a"),)] == 1
        assert m["pidone_process_ready", (("process", "eater"),)] == 1
        # The tree is sampled at each scrape; its worker is in it from its
        # fork, its 50 MiB only once it has touched them: it says when.
        wait_for(lambda: re.search(r"^eater\s+\| eaten$", stack.stdout_so_far(), re.M),
                 what="the eater's worker to touch its memory")  # fmt: skip
        m = metrics(port)
        assert m["pidone_process_processes", (("process", "eater"),)] == 2
        assert m["pidone_process_resident_memory_bytes", (("process", "eater"),)] > 50 * 2**20
        assert m["pidone_zombies_reaped_total", ()] >= 2
        assert m["pidone_build_info", (("version", "0.1.0"),)] == 1
        assert any(name == "process_resident_memory_bytes" for name, _ in m)
        assert http_status(f"http://127.0.0.1:{port}/healthz") == (200, "ok\n")
        assert http_status(f"http://127.0.0.1:{port}/readyz")[0] == 200
        stack.init.signal(signal.SIGTERM)
        assert stack.init.wait() == 0


def test_the_metrics_option_overrides_the_config(shared: Path) -> None:
    configured, asked = free_port(), free_port()
    with Stack("pid1", shared) as stack:
        stack.start(
            f'[pidone]\nmetrics = "127.0.0.1:{configured}"\n'
            f'[process.a]\ncommand = "{stack.svc("a")}"\n',
            run_args=("--metrics", f"127.0.0.1:{asked}"),
        )
        up = ("pidone_process_up", (("process", "a"),))
        wait_for(lambda: _answers(asked) and up in metrics(asked), what="a's series on the port")
        assert metrics(asked)[up] in (0, 1)
        assert not _answers(configured)
        stack.init.signal(signal.SIGTERM)
        assert stack.init.wait() == 0


def test_readyz_is_503_with_the_reason_until_ready(shared: Path) -> None:
    port = free_port()
    flag = shared / "slow-is-ready"
    with Stack("pid1", shared) as stack:
        # ready only once the test says so: the 503 is seen however slow the machine is
        stack.start(f"""
[pidone]
metrics = "127.0.0.1:{port}"
[process.slow]
command = "{stack.svc("slow")}"
ready = "file:{flag}"
""")
        wait_for(lambda: _answers(port), what="the metrics server")
        # 503 "starting" until the loop publishes its first snapshot, then
        # 503 naming the process that is not ready yet
        wait_for(lambda: http_status(f"http://127.0.0.1:{port}/readyz") == (503,
                 "not ready: slow (running)\n"), what="a 503 naming slow")  # fmt: skip
        flag.touch()
        wait_for(lambda: http_status(f"http://127.0.0.1:{port}/readyz")[0] == 200, what="ready")
        assert http_status(f"http://127.0.0.1:{port}/readyz") == (200, "ready\n")


def test_metrics_and_readyz_are_never_behind_a_ctl_reply(mode: str, shared: Path) -> None:
    # A deploy script's `pidone ctl stop a && curl /metrics`: each reply is
    # sent in the loop turn that made it true, and the snapshot the metrics
    # thread serves must be that turn's already, not the turn before.
    port = free_port()
    flag = shared / "b-ready"
    with Stack(mode, shared) as stack:
        stack.start(f"""
[pidone]
metrics = "127.0.0.1:{port}"
settle_time = 0.2
[process.a]
command = "{stack.svc("a")}"
[process.b]
command = "{stack.svc("b")}"
ready = "file:{flag}"
""")
        stack.wait_for("a up", "b up")  # a's SIGTERM handler is set: a clean stop
        wait_for(lambda: _answers(port), what="the metrics server")
        readyz = f"http://127.0.0.1:{port}/readyz"
        stopped = ctl(stack, "stop", "a")
        assert (stopped.returncode, stopped.stdout) == (0, "a: stopped\n"), stopped.stderr
        assert metrics(port)["pidone_process_up", (("process", "a"),)] == 0
        started = ctl(stack, "start", "a")  # ready at its settle time, in a Tick's turn
        assert (started.returncode, started.stdout) == (0, "a: ready\n"), started.stderr
        assert metrics(port)["pidone_process_ready", (("process", "a"),)] == 1
        assert http_status(readyz) == (503, "not ready: b (running)\n")
        flag.touch()  # b's check sees it in a turn of the prober's
        assert ctl(stack, "wait-ready", "--timeout", "20").returncode == 0
        assert http_status(readyz) == (200, "ready\n")
        stack.init.signal(signal.SIGTERM)
        assert stack.init.wait() == 0


def _answers(port: int) -> bool:
    try:
        http_status(f"http://127.0.0.1:{port}/healthz")
    except OSError:
        return False
    return True


def test_the_same_through_a_real_prometheus(shared: Path) -> None:
    from tests.helpers.prometheus import Prometheus

    port = free_port()
    with Stack("pid1", shared) as stack:
        stack.start(two_processes(stack, f'metrics = "127.0.0.1:{port}"'))
        assert ctl(stack, "wait-ready", "--timeout", "20").returncode == 0
        with Prometheus(shared / "prometheus", target=f"127.0.0.1:{port}") as prom:
            series = prom.wait_for_query("pidone_process_up == 1", count=2)
            # Prometheus asks for gzip (and OpenMetrics): its scrapes succeeded,
            # with the library's own collectors' series among them
            up = prom.wait_for_query('up{job="pidone"} == 1', count=1)
            gc = prom.wait_for_query("python_gc_collections_total", count=3)
        assert sorted(s["metric"]["process"] for s in series) == ["a", "b"]
        assert re.match(r"127\.0\.0\.1:\d+", series[0]["metric"]["instance"])
        assert len(up) == 1
        assert sorted(s["metric"]["generation"] for s in gc) == ["0", "1", "2"]
        # What pidone sends a client that accepts gzip, as Prometheus does
        asked = urllib.request.Request(
            f"http://127.0.0.1:{port}/metrics",
            headers={"Accept-Encoding": "gzip", "Accept": PROMETHEUS_ACCEPT},
        )
        with urllib.request.urlopen(asked, timeout=10) as r:
            encoding, ctype, body = (
                r.headers["Content-Encoding"],
                r.headers["Content-Type"],
                r.read(),
            )
        assert encoding == "gzip"
        assert ctype.startswith("application/openmetrics-text; version=1.0.0")
        text = gzip.decompress(body).decode()
        families = {f.name for f in parse_openmetrics(text)}  # type: ignore[no-untyped-call]
        assert {"pidone_process_up", "pidone_zombies_reaped", "process_cpu_seconds"} <= families


# What Prometheus 2.x sends (scrape.go's acceptHeader with OpenMetrics on).
PROMETHEUS_ACCEPT = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
    "text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)


def under_strace(shared: Path, toml: str, inject: str) -> subprocess.Popen[bytes]:
    """pidone run in a PID namespace of its own, under strace injecting
    `inject` (a syscall made slow: a window held open), its control socket
    at shared/control.sock. Killing what this returns ends it all
    (unshare's --kill-child)."""
    syscall = inject.split(":", 1)[0]
    (shared / "pidone.toml").write_text(toml)
    return subprocess.Popen(
        ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child",
         "strace", "-f", "-qq", "-o", "/dev/null", "-e", f"trace={syscall}",
         "-e", f"inject={inject}", PIDONE, "run", "-c", str(shared / "pidone.toml")],
        env={**os.environ, "PIDONE_CONTROL_SOCKET": str(shared / "control.sock")},
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip


def test_a_client_that_connects_once_the_control_socket_appears_is_never_refused(
    shared: Path,
) -> None:
    """A script waits for the socket's file, then runs `pidone ctl`. Each
    listen() of pidone is made 0.4 s slow (strace's syscall delay), so a
    file bound in place would refuse connections that long."""
    sock = shared / "control.sock"
    toml = '[process.a]\ncommand = "sleep 1000"\n'
    launch = under_strace(shared, toml, "listen:delay_enter=400000")
    try:
        deadline = time.monotonic() + 30
        while not sock.exists():  # as a script's loop would, but with no sleep
            assert time.monotonic() < deadline, "no control socket within 30 s"
        with socket.socket(socket.AF_UNIX) as client:
            client.connect(str(sock))  # refused (ECONNREFUSED) if not listening yet
        status = subprocess.run(
            [PIDONE, "ctl", "--socket", str(sock), "status"], capture_output=True, text=True
        )
        assert status.returncode == 0, status.stderr
        assert [p.name for p in shared.iterdir() if p.name.startswith(".control")] == []
        done = subprocess.run([PIDONE, "ctl", "--socket", str(sock), "shutdown"])
        assert done.returncode == 0
        assert launch.wait(timeout=30) == 0
    finally:
        if launch.poll() is None:
            launch.kill()
            launch.wait()
    assert not sock.exists()


def test_a_symlink_swapped_in_for_the_control_socket_after_its_bind_is_never_chowned_through(
    shared: Path,
) -> None:
    """The control socket in a directory its user may write to, with a
    control_group: between pidone's bind() (made 0.5 s slow to return) and
    its chown, that user puts a symlink to a root file in the socket's
    place. Root must not give that file the control group and mode 0660."""
    victim = shared / "victim"
    victim.write_text("root's secret\n")
    victim.chmod(0o600)
    shared.chmod(0o777)  # the site user's, say
    toml = '[pidone]\ncontrol_group = "nogroup"\n[process.a]\ncommand = "sleep 1000"\n'
    launch = under_strace(shared, toml, "bind:delay_exit=500000")
    try:
        deadline = time.monotonic() + 30
        while not (bound := [p for p in shared.iterdir() if p.name.startswith(".control")]):
            assert time.monotonic() < deadline, "no control socket bound within 30 s"
        bound[0].unlink()
        bound[0].symlink_to(victim)
        assert launch.stderr is not None
        said = b""
        deadline = time.monotonic() + 20
        while b"control socket" not in said and time.monotonic() < deadline:
            ready, _, _ = select.select([launch.stderr], [], [], 0.1)
            if ready:
                said += os.read(launch.stderr.fileno(), 65536)
        st = victim.stat()  # followed, the chown would have made it nogroup's, 0660
        assert (st.st_gid, stat.S_IMODE(st.st_mode)) == (0, 0o600)
        assert victim.read_text() == "root's secret\n"
        assert b"is not a socket; pidone will not change it" in said, said.decode()
    finally:
        launch.kill()
        launch.wait()
