"""examples/site on a server: Debian's systemd booted as PID 1 of a podman
container (`podman run --systemd=always`), pidone-site.service enabled by the
site's install.sh at image build (tests/container/site-server.Dockerfile),
and started by systemd at boot. No network but the container's loopback:
every request is made from inside it, to gunicorn's unix socket.

What is proven, in order (one container for the module; each test leaves it
running for the next):
- systemd reports the unit active only after pidone's READY=1, which pidone
  sends once every process of the Procfile is ready (Type=notify);
- every process in the unit's cgroup runs as the site's user (from /proc);
- a request, a task through redis and celery, beat's periodic task;
- the control socket: a deploy-group member and the site's user get in,
  anyone else is refused;
- the deploy restart (`pidone ctl restart web` by the deploy member, no sudo)
  under continuous requests fails no request;
- pidone killed: systemd starts it again (Restart=on-failure);
- `podman restart` (a reboot): pidone stopped everything in order (redis
  saved: a result stored before is there after), and the site is back.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import tomllib

from tests.container.images import SITE, Images
from tests.container.podman import podman, remove_containers, wait_until

pytestmark = [pytest.mark.root, pytest.mark.timeout(300)]

NAME = "pidone-test-site"
UNIT = "pidone-site.service"
SOCKET = "/run/pidone-site/web/gunicorn.sock"
CONTROL = "/run/pidone-site/control.sock"
SITE_DIR = "/srv/site"
PROCESSES = ("redis", "web", "worker", "beat")

# GET PATH over gunicorn's unix socket, from inside the container.
FETCH = """
import http.client, json, socket, sys
class Unix(http.client.HTTPConnection):
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(sys.argv[1])
c = Unix("site", timeout=10)
c.request("GET", sys.argv[2])
r = c.getresponse()
print(json.dumps({"status": r.status, "body": json.loads(r.read())}))
"""

# Requests without a pause from 4 threads, a new connection each, until the
# stop file appears; then the counts, every failure (the first 20) and which
# gunicorn workers answered, into the result file.
LOAD = """
import http.client, json, os, socket, sys, threading
path, stop, out = sys.argv[1:4]
class Unix(http.client.HTTPConnection):
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(path)
lock = threading.Lock()
ok, failed, pids = [0], [], set()
def run():
    while not os.path.exists(stop):
        try:
            c = Unix("site", timeout=60)
            c.request("GET", "/")
            r = c.getresponse()
            body = r.read()
            c.close()
            if r.status != 200:
                raise RuntimeError(f"status {r.status}: {body[:200]!r}")
            pid = json.loads(body)["pid"]
            with lock:
                ok[0] += 1
                pids.add(pid)
        except Exception as exc:
            with lock:
                failed.append(repr(exc))
threads = [threading.Thread(target=run) for _ in range(4)]
for t in threads: t.start()
for t in threads: t.join()
with open(out + ".tmp", "w") as f:
    result = {"ok": ok[0], "failed": failed[:20], "failures": len(failed)}
    json.dump({**result, "pids": sorted(pids)}, f)
os.rename(out + ".tmp", out)
"""


@dataclass
class Server:
    image: str

    def sh(self, script: str, *, user: str | None = None, workdir: str | None = None) -> str:
        return self.run(["sh", "-c", script], user=user, workdir=workdir).stdout

    def run(
        self, argv: list[str], *, user: str | None = None, workdir: str | None = None,
        check: bool = True, timeout: float = 60,
    ) -> subprocess.CompletedProcess[str]:  # fmt: skip
        who = ["--user", user] if user else []
        where = ["--workdir", workdir] if workdir else []
        return podman("exec", *who, *where, NAME, *argv, check=check, timeout=timeout)

    def fetch(self, path: str) -> dict[str, Any]:
        done = podman("exec", NAME, "python3", "-c", FETCH, SOCKET, path, timeout=30)
        got = json.loads(done.stdout)
        assert isinstance(got, dict)
        return got

    def show(self, *properties: str) -> dict[str, str]:
        out = self.sh(f"systemctl show {UNIT} " + " ".join(f"-p {p}" for p in properties))
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def journal(self) -> list[str]:
        """The unit's journal, pidone's output included, since the first boot
        (a container has the host's boot id: one "boot" for journald)."""
        return self.sh(f"journalctl -u {UNIT} -o cat --no-pager").splitlines()

    def started_at(self) -> str:
        return podman("inspect", "--format", "{{.State.StartedAt}}", NAME).stdout.strip()

    def ids(self, user: str) -> tuple[int, int]:
        uid, gid = self.sh(f"id -u {user}; id -g {user}").split()
        return int(uid), int(gid)


def booted(server: Server) -> None:
    """Wait for systemd to finish booting (its bus answers, no job is left),
    then require "running": every unit started, the site's included."""
    states: list[str] = []

    def settled() -> bool:
        done = podman("exec", NAME, "systemctl", "is-system-running", check=False, timeout=30)
        states.append(done.stdout.strip())
        return states[-1] not in ("", "initializing", "starting")

    wait_until(settled, 150, "systemd to finish booting", interval=0.5)
    assert states[-1] == "running", f"systemd is {states[-1]}:\n" + server.sh(
        "systemctl --failed --no-pager; journalctl -b -u pidone-site -o cat --no-pager | tail -40"
    )


@pytest.fixture(scope="module")
def server(images: Images) -> Iterator[Server]:
    remove_containers([NAME])  # a stale one of ours
    # --systemd=always puts a tmpfs on /var/log/journal; a volume of its own
    # instead (anonymous: removed with the container) keeps the journal
    # across the reboot, as a server's disk does.
    volume = ["--volume", "/var/log/journal"]
    podman("run", "--detach", "--name", NAME, "--systemd=always", *volume, images.site, timeout=60)
    made = Server(images.site)
    try:
        booted(made)
        yield made
    finally:
        remove_containers([NAME])


def unit_pids(server: Server) -> dict[int, dict[str, str]]:
    """Every process in the unit's cgroup (name=systemd in /proc/PID/cgroup):
    its Name, PPid, Uid, Gid and Groups lines from /proc/PID/status, and its command."""
    script = (
        "for d in /proc/[0-9]*; do "
        f'grep -qs "/system.slice/{UNIT}$" $d/cgroup || continue; '
        'echo "PID ${d#/proc/}"; grep -E "^(Name|PPid|Uid|Gid|Groups):" $d/status; '
        'echo "Cmd: $(tr "\\0" " " < $d/cmdline)"; done'
    )
    found: dict[int, dict[str, str]] = {}
    current: dict[str, str] = {}
    for line in server.sh(script).splitlines():
        if line.startswith("PID "):
            current = found.setdefault(int(line.split()[1]), {})
        elif ":" in line:
            key, _, value = line.partition(":")
            current[key] = value.strip()
    return {pid: fields for pid, fields in found.items() if "Uid" in fields}


def test_unit_passes_systemd_analyze_verify(server: Server) -> None:
    """systemd's own lint of the installed unit (unknown keys, bad values,
    missing executables): no complaint at all."""
    done = server.run(["systemd-analyze", "verify", f"/etc/systemd/system/{UNIT}"], check=False)
    assert (done.returncode, done.stdout, done.stderr) == (0, "", ""), done


def test_stop_timeout_of_the_unit_is_above_pidones_longest_stop() -> None:
    """pidone stops web, worker and beat together, then redis (what they are
    after): systemd must not SIGKILL before pidone would."""
    config = tomllib.loads((SITE / "pidone.toml").read_text())
    default = config["pidone"].get("stop_timeout", 10)
    timeout = {n: p.get("stop_timeout", default) for n, p in config["process"].items()}
    worst = max(timeout["web"], timeout["worker"], timeout["beat"]) + timeout["redis"]
    unit = (SITE / UNIT).read_text()
    assert unit_seconds("TimeoutStopSec") > worst
    assert re.search(r"^KillMode=mixed$", unit, re.M)  # SIGTERM to pidone alone


def test_unit_enabled_at_boot_is_active_only_after_every_process_is_ready(
    server: Server,
) -> None:
    assert server.sh(f"systemctl is-enabled {UNIT}").strip() == "enabled"
    shown = server.show("ActiveState", "SubState", "Type", "NotifyAccess", "User", "StatusText")
    assert (shown["ActiveState"], shown["SubState"]) == ("active", "running"), shown
    assert (shown["Type"], shown["NotifyAccess"], shown["User"]) == ("notify", "main", "site")
    lines = server.journal()
    started = [i for i, line in enumerate(lines) if line.startswith("Started pidone-site.service")]
    assert len(started) == 1, lines
    for name in PROCESSES:  # systemd heard READY=1 after each was ready
        ready = [i for i, line in enumerate(lines) if re.fullmatch(rf"{name}\s+\| ready", line)]
        assert ready and ready[0] < started[0], (name, lines)


def test_every_process_of_the_unit_runs_as_the_site_user(server: Server) -> None:
    uid, gid = server.ids("site")
    deploy = int(server.sh("getent group deploy | cut -d: -f3"))
    pids = unit_pids(server)
    main = int(server.show("MainPID")["MainPID"])
    assert "pidone run" in pids[main]["Cmd"]
    for pid, fields in pids.items():
        assert fields["Uid"].split() == [str(uid)] * 4, (pid, fields)  # real, effective, saved, fs
        assert fields["Gid"].split() == [str(gid)] * 4, (pid, fields)
        # its own group, and deploy (SupplementaryGroups=): nothing else
        assert sorted(map(int, fields["Groups"].split())) == sorted({gid, deploy}), (pid, fields)
    commands = [fields["Cmd"] for fields in pids.values()]
    assert sum(c.startswith("redis-server") for c in commands) == 1, commands
    assert sum("bin/gunicorn" in c for c in commands) == 3, commands  # the arbiter, 2 workers
    assert sum("celery -A tasks worker" in c for c in commands) == 3, commands  # main, 2 pool
    assert sum("celery -A tasks beat" in c for c in commands) == 1, commands


def test_request_task_and_beat_through_redis_and_celery(server: Server) -> None:
    uid, _ = server.ids("site")
    hello = server.fetch("/")
    assert hello["status"] == 200 and hello["body"]["uid"] == uid, hello
    queued = server.fetch("/enqueue?seconds=0.1")
    assert queued["status"] == 202, queued
    url = queued["body"]["result_url"]

    def done() -> bool:
        return bool(server.fetch(url)["body"]["state"] == "SUCCESS")

    wait_until(done, 30, "the task's result", interval=0.2)
    assert server.fetch(url)["body"]["result"]["uid"] == uid
    wait_until(
        lambda: server.fetch("/tick")["body"]["last_tick"] is not None,
        20,
        "beat's periodic task",
        interval=0.5,
    )


def ctl(server: Server, user: str, *args: str) -> subprocess.CompletedProcess[str]:
    return server.run(
        ["pidone", "ctl", *args], user=user, workdir=SITE_DIR, check=False, timeout=120
    )


def test_control_socket_is_the_deploy_groups_and_the_sites_only(server: Server) -> None:
    mode = server.sh(f"stat -c '%U:%G %a' {CONTROL}").strip()
    assert mode == "site:deploy 660"
    for user in ("deployer", "site"):  # the path from ./pidone.toml, found by `pidone ctl`
        done = ctl(server, user, "status")
        assert done.returncode == 0, (user, done.stdout, done.stderr)
        assert re.search(r"^web\s+READY\s+yes", done.stdout, re.M), done.stdout
    outsider = ctl(server, "nobody", "--socket", CONTROL, "status")
    assert outsider.returncode == 1, outsider
    assert "ermission denied" in outsider.stderr, outsider.stderr


def gunicorn_arbiter(server: Server) -> int:
    """The gunicorn that pidone started (its workers are the arbiter's children)."""
    main = server.show("MainPID")["MainPID"]
    pids = unit_pids(server)
    [pid] = [p for p, f in pids.items() if "bin/gunicorn" in f["Cmd"] and f["PPid"] == main]
    return pid


def test_deploy_restart_by_a_deploy_member_under_load_fails_no_request(server: Server) -> None:
    before = gunicorn_arbiter(server)
    server.sh("rm -f /tmp/load.stop /tmp/load.json")
    podman("exec", "--detach", NAME, "python3", "-c", LOAD, SOCKET, "/tmp/load.stop",
           "/tmp/load.json")  # fmt: skip
    try:
        time.sleep(2)  # the load runs
        started = time.monotonic()
        done = ctl(server, "deployer", "restart", "web")
        took = time.monotonic() - started
        assert done.returncode == 0, (done.stdout, done.stderr)
        time.sleep(2)  # and runs on against the new gunicorn
    finally:
        server.sh("touch /tmp/load.stop")
    wait_until(lambda: "ok" in server.sh("test -e /tmp/load.json && echo ok || true"), 90,
               "the load's results")  # fmt: skip
    load = json.loads(server.sh("cat /tmp/load.json"))
    after = gunicorn_arbiter(server)
    print(f"deploy restart in {took:.2f} s under load: {load['ok']} ok, {load['failures']} failed")
    assert after != before
    assert load["failures"] == 0, load["failed"]
    assert load["ok"] >= 100, load
    workers_after = {int(p) for p in server.sh(f"pgrep -P {after}").split()}
    assert workers_after & set(load["pids"]), (workers_after, load["pids"])  # the new ones answered
    assert set(load["pids"]) - workers_after, load["pids"]  # and the old ones before them


def unit_seconds(key: str) -> int:
    [value] = re.findall(rf"^{key}=(\d+)$", (SITE / UNIT).read_text(), re.M)
    return int(value)


def test_watchdog_keeps_hearing_from_pidone(server: Server) -> None:
    """WatchdogSec=10: systemd gave pidone WATCHDOG_USEC, and pidone's
    WATCHDOG=1 kept the unit alive past twice that (no restart, same pid)."""
    watchdog = unit_seconds("WatchdogSec")
    shown = server.show("WatchdogUSec", "MainPID", "ActiveEnterTimestampMonotonic", "NRestarts")
    assert shown["WatchdogUSec"] == f"{watchdog}s"
    entered = int(shown["ActiveEnterTimestampMonotonic"]) / 1e6

    def uptime() -> float:
        return float(server.sh("cut -d' ' -f1 /proc/uptime"))  # the host's clock, as systemd's

    wait_until(lambda: uptime() - entered > 2 * watchdog, 3 * watchdog, "two watchdog periods")
    after = server.show("MainPID", "NRestarts", "ActiveState")
    assert (after["MainPID"], after["NRestarts"], after["ActiveState"]) == (
        shown["MainPID"],
        "0",
        "active",
    )
    assert not [x for x in server.journal() if "atchdog" in x]


def test_pidone_killed_is_started_again_by_systemd(server: Server) -> None:
    """Restart=on-failure. With cgroup v1 in a container (this machine's),
    systemd hears of no empty cgroup: once pidone is gone (and, by their
    parent-death signal, its children), it waits out TimeoutStopSec
    ("Processes still around after SIGKILL. Ignoring.") before the restart."""
    main = int(server.show("MainPID")["MainPID"])
    server.sh(f"kill -KILL {main}")
    wait_until(
        lambda: (
            (s := server.show("ActiveState", "MainPID"))["ActiveState"] == "active"
            and int(s["MainPID"]) not in (0, main)
        ),
        unit_seconds("TimeoutStopSec") + unit_seconds("RestartSec") + 60,
        "systemd to start pidone again",
        interval=0.5,
    )
    assert server.fetch("/")["status"] == 200
    assert int(server.show("NRestarts")["NRestarts"]) == 1
    lines = server.journal()
    assert "pidone-site.service: Main process exited, code=killed, status=9/KILL" in lines
    assert "pidone-site.service: Scheduled restart job, restart counter is at 1." in lines
    assert len([x for x in lines if x.startswith("Started pidone-site.service")]) == 2


def test_reboot_stops_the_site_in_order_and_brings_it_back(server: Server) -> None:
    queued = server.fetch("/enqueue?seconds=0")
    url = queued["body"]["result_url"]
    wait_until(
        lambda: server.fetch(url)["body"]["state"] == "SUCCESS",
        30,
        "the task",
        interval=0.2,
    )
    before = server.started_at()
    podman("restart", "--time", "120", NAME, timeout=180)
    booted(server)
    assert server.started_at() != before  # systemd booted again
    assert server.show("ActiveState")["ActiveState"] == "active"
    uid, _ = server.ids("site")
    assert {f["Uid"].split()[0] for f in unit_pids(server).values()} == {str(uid)}
    assert server.fetch(url)["body"]["state"] == "SUCCESS"  # redis saved it on the way down
    lines = server.journal()
    booting = max(i for i, x in enumerate(lines) if x.startswith("Starting pidone-site.service"))
    previous = lines[:booting]  # up to the reboot: how pidone stopped the site
    stopped = {
        m[1]: i for i, x in enumerate(previous) if (m := re.fullmatch(r"(\w+)\s+\| stopped.*", x))
    }
    assert set(stopped) == set(PROCESSES), previous[-40:]
    # the last run's stop (the deploy restart stopped web earlier in that boot)
    redis_stopping = max(i for i, x in enumerate(previous) if x.startswith("redis  | stopping"))
    assert all(stopped[name] < redis_stopping for name in ("web", "worker", "beat")), previous
    assert "pidone | exiting with status 0" in previous, previous[-20:]
    assert any(x.startswith("pidone-site.service: Deactivated successfully") for x in previous), (
        previous[-20:]
    )
