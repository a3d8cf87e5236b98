"""Liveness checks and the per-process watchdog, for real: pidone as PID 1
of a new PID namespace and as a subreaper (the `mode` fixture), services
that hang (SIGSTOP) or stop pinging, a real uwsgi whose workers all hang."""

from __future__ import annotations

import os
import re
import signal
import sys
import time
import urllib.request
from pathlib import Path

from tests.helpers.running import children_of, wait_for
from tests.helpers.stack import Stack, free_port

BIN = Path(sys.executable).parent
APP_DIR = Path(__file__).parent.parent / "helpers"


def said(stack: Stack, text: str) -> int:
    return (stack.stdout_so_far() + stack.stderr_so_far()).count(text)


def ready_count(stack: Stack, name: str) -> int:
    return len(re.findall(rf"^{name}\s+\| ready$", stack.stdout_so_far(), re.M))


def get(url: str, timeout: float = 2.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return str(r.read().decode())


def threads_not_blocking(pid: int, signum: int) -> list[int]:
    """The threads of PID that do not block signum (/proc's SigBlk masks)."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        blocked = re.search(r"^SigBlk:\s*([0-9a-f]+)$", (task / "status").read_text(), re.M)
        assert blocked is not None
        if not int(blocked[1], 16) & (1 << (signum - 1)):
            found.append(int(task.name))
    return found


def test_a_hung_http_server_is_restarted_by_liveness(mode: str, tmp_path: Path) -> None:
    port = free_port()
    with Stack(mode, tmp_path) as stack:
        stack.start(f"""
[process.web]
command = "{stack.svc("web", "--http", str(port))}"
ready = "http://127.0.0.1:{port}/"
alive = "http://127.0.0.1:{port}/"
alive_interval = 0.3
alive_timeout = 0.2
alive_failures = 2
stop_timeout = 5
""")
        wait_for(lambda: ready_count(stack, "web") == 1, what="web ready")
        assert get(f"http://127.0.0.1:{port}/") == "ok"
        old = stack.host_pid("web")
        # Only its main thread can take the SIGTERM (its HTTP thread blocks
        # it): sent while it is stopped, the SIGTERM goes to whichever thread
        # runs first after the SIGCONT, and Python runs handlers in the main one.
        assert threads_not_blocking(old, signal.SIGTERM) == [old]
        os.kill(old, signal.SIGSTOP)  # accepts (the kernel does), never answers
        wait_for(lambda: stack.count("web up") == 2, timeout=20, what="web restarted")
        assert said(stack, "liveness check failed (1 of 2): no answer within 0.2 s") >= 1
        assert said(stack, "liveness check failed 2 times in a row") == 1
        # Its stop signal, then SIGCONT: the stopped process ran its handler.
        assert stack.count("web term") == 1
        wait_for(lambda: stack.count("web listening") == 2, timeout=10)
        assert get(f"http://127.0.0.1:{port}/") == "ok"
        assert stack.host_pid("web") != old


def test_a_healthy_process_is_never_restarted_by_liveness(mode: str, tmp_path: Path) -> None:
    port = free_port()
    with Stack(mode, tmp_path) as stack:
        stack.start(f"""
[process.web]
command = "{stack.svc("web", "--tcp", str(port))}"
ready = "tcp:127.0.0.1:{port}"
alive = "tcp:127.0.0.1:{port}"
alive_interval = 0.25
alive_timeout = 0.25
alive_failures = 1
""")
        wait_for(lambda: ready_count(stack, "web") == 1, what="web ready")
        time.sleep(3)  # 12 attempts
        assert stack.count("web up") == 1
        assert said(stack, "liveness check failed") == 0


def test_a_process_that_stops_pinging_is_restarted_by_its_watchdog(
    mode: str, tmp_path: Path
) -> None:
    with Stack(mode, tmp_path) as stack:
        stack.start(f"""
[pidone]
settle_time = 0.1
[process.wdog]
command = "{stack.svc("dog", "--watchdog", "6")}"
watchdog = 1
""")
        events = stack.wait_for("dog pings stopped")
        # Its environment: WATCHDOG_USEC in microseconds, no WATCHDOG_PID.
        assert "dog watchdog 1000000 -" in events
        wait_for(lambda: stack.count("dog up") == 2, timeout=10, what="dog restarted")
        assert said(stack, "watchdog: no WATCHDOG=1 within 1 s: restarting") == 1
        # Not before it stopped pinging: ~2 s of pings, then 1 s of silence.
        entries = stack.journal()
        stopped = next(e.ns for e in entries if e.event == "pings stopped")
        term = next(e.ns for e in entries if e.name == "dog" and e.event == "term")
        assert 0.5e9 <= term - stopped <= 3e9


def test_a_process_that_keeps_pinging_is_not_restarted(mode: str, tmp_path: Path) -> None:
    with Stack(mode, tmp_path) as stack:
        stack.start(f"""
[process.wdog]
command = "{stack.svc("dog", "--watchdog", "-1")}"
ready = "notify"
watchdog = 0.5
""")
        stack.wait_for("dog watchdog 500000")
        time.sleep(3)  # six watchdog periods
        assert stack.count("dog up") == 1
        assert said(stack, "watchdog:") == 0


def test_a_flood_of_watchdog_pings_is_bounded(mode: str, tmp_path: Path) -> None:
    port = free_port()
    with Stack(mode, tmp_path) as stack:
        stack.start(f"""
[process.wdog]
command = "{stack.svc("dog", "--watchdog", "-1", "--flood", "200000")}"
watchdog = 5
[process.web]
command = "{stack.svc("web", "--tcp", str(port), "--delay", "0.5")}"
ready = "tcp:127.0.0.1:{port}"
""")
        # pidone drains 200,000 datagrams 64 at a time and stays responsive:
        # the other process becomes ready meanwhile, nothing is restarted.
        stack.wait_for("dog flooded", timeout=60)
        wait_for(lambda: ready_count(stack, "web") == 1, timeout=10, what="web ready")
        assert stack.count("dog up") == 1
        assert said(stack, "watchdog:") == 0


def uwsgi_command(port: int) -> str:
    return (
        f"{BIN / 'uwsgi'} --master --processes 2 --http-socket 127.0.0.1:{port} --need-app"
        f" --chdir {APP_DIR} --module wsgi_app"
        " --hook-master-start 'unix_signal:15 gracefully_kill_them_all'"
    )


def test_uwsgi_with_every_worker_hung_is_restarted_by_liveness_and_serves_again(
    mode: str, tmp_path: Path
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/health"
    with Stack(mode, tmp_path) as stack:
        stack.start(f"""
[process.liveweb]
command = "{uwsgi_command(port)}"
ready = "notify"
alive = "{url}"
alive_interval = 0.5
alive_timeout = 0.4
alive_failures = 3
stop_timeout = 3
""")
        wait_for(lambda: ready_count(stack, "liveweb") == 1, timeout=30, what="web ready")
        assert get(url).startswith("served by ")
        master = stack.host_pid_of("uwsgi")
        workers = children_of(master)
        assert len(workers) == 2
        for worker in workers:  # every worker hangs: requests wait in the backlog
            os.kill(worker, signal.SIGSTOP)
        wait_for(lambda: said(stack, "liveness check failed 3 times in a row"), timeout=20)
        wait_for(lambda: ready_count(stack, "liveweb") == 2, timeout=30, what="uwsgi ready again")
        assert stack.host_pid_of("uwsgi") != master
        assert get(url).startswith("served by ")
        assert not any(w in children_of(stack.host_pid_of("uwsgi")) for w in workers)
