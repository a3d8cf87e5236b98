"""A supervisord config imported with `pidone import`, then run for real by
`pidone run`, as PID 1 of a new PID namespace and as a subreaper: real redis,
a real HTTP server and two shell workers (numprocs = 2) come up in priority
order and stop cleanly, leaving nothing behind."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import urllib.request
from pathlib import Path

from tests.helpers.running import PIDONE, Init, children_of, descendants, wait_for
from tests.helpers.stack import free_port

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "import" / "run-supervisord.conf"


def redis_pong(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(16) == b"+PONG\r\n"
    except OSError:
        return False


def http_ok(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1) as reply:
            return int(reply.status) == 200
    except OSError:
        return False


def test_imported_supervisord_site_runs_and_stops_cleanly(mode: str, tmp_path: Path) -> None:
    redis_port, web_port = free_port(), free_port()
    env = {
        **os.environ,
        "REDIS_PORT": str(redis_port),
        "WEB_PORT": str(web_port),
        "PIDONE_CONTROL_SOCKET": str(tmp_path / "control.sock"),
    }
    site = tmp_path / "site"
    result = subprocess.run(
        [PIDONE, "import", str(FIXTURE), "-o", str(site)],
        capture_output=True, text=True, timeout=30, env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    check = subprocess.run(
        [PIDONE, "check"], cwd=site, capture_output=True, text=True, timeout=30, env=env
    )
    assert check.returncode == 0, check.stderr
    # priority 10 before 20: redis alone in the first wave
    assert "1. redis\n  2. web, worker-0, worker-1\n" in check.stdout
    with Init(mode, ["run"], cwd=str(site), env=env) as init:
        wait_for(lambda: redis_pong(redis_port), timeout=20, what="redis to answer PING")
        wait_for(lambda: http_ok(web_port), timeout=20, what="the web server to answer")
        programs: dict[int, str] = {}

        def all_up() -> bool:
            programs.clear()
            for pid in descendants(init.pid):
                try:
                    programs[pid] = Path(f"/proc/{pid}/cmdline").read_bytes().decode()
                except FileNotFoundError:
                    continue
            workers = [p for p, c in programs.items() if c.startswith("sh\0-c\0trap")]
            # each past its `trap` (its loop's sleep runs): a SIGTERM finds it set
            return len(workers) == 2 and all(
                any(programs.get(child, "").startswith("sleep\0") for child in children_of(w))
                for w in workers
            )

        wait_for(all_up, timeout=20, what="both workers")
        assert sum("redis-server" in c for c in programs.values()) == 1
        assert sum("http.server" in c for c in programs.values()) == 1
        init.signal(signal.SIGTERM)
        # exit 0: each stopped by its own stop signal (web: SIGINT) or exited 0
        assert init.wait(timeout=30) == 0, init.stderr()
        # nothing outlived pidone, nor was left unreaped (as a subreaper, a
        # survivor would now be the host's)
        assert [pid for pid in programs if Path(f"/proc/{pid}").exists()] == []
    assert not redis_pong(redis_port)
