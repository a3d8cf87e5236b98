"""Each init's own configuration for a Workload, written into the launch's rundir.

Every renderer takes the workload and the per-launch directory, writes what
that init reads (pidone.toml, supervisord.conf, circus.ini, a Procfile, an
s6 scan directory, a runit service directory) and returns the argv that
starts the init on it. Each says what the init can and cannot express:

- order (`after`): pidone waits for readiness; supervisord and circus only
  start in priority order; s6 and runit wait in the run script, their own
  idiom (`s6-svwait -U` on a notification fd, `sv start` with a ./check
  script); honcho cannot, it starts everything at once;
- stop: each service's stop timeout where the init has one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from pidbench.workload import LOOPBACK, Service, Workload, free_port

BENCH = Path(__file__).resolve().parents[1]
REPO = BENCH.parent
VENV_BIN = REPO / ".venv" / "bin"
PEERS_BIN = BENCH / ".venv-peers" / "bin"

PIDONE_BIN = str(VENV_BIN / "pidone")
SUPERVISORD_BIN = str(PEERS_BIN / "supervisord")
SUPERVISORCTL_BIN = str(PEERS_BIN / "supervisorctl")
SUPERVISOR_SOCKET = "supervisor.sock"  # in the rundir, with supervisord(control=True)
CIRCUSD_BIN = str(PEERS_BIN / "circusd")
HONCHO_BIN = str(PEERS_BIN / "honcho")
S6_SVSCAN_BIN = "/usr/bin/s6-svscan"
S6_SVWAIT_BIN = "/usr/bin/s6-svwait"
RUNSVDIR_BIN = "/usr/bin/runsvdir"
SV_BIN = "/usr/bin/sv"
BASH = "/bin/bash"
# What a service that tells s6 it is ready writes its newline to (children/service.py).
NOTIFY_FD_ENV = "BENCH_NOTIFY_FD"
S6_NOTIFY_FD = 3
DEPENDENCY_WAIT = 30  # seconds a run script waits for what it is after


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    os.chmod(path, mode)


def _toml(text: str) -> str:
    """A TOML basic string (JSON's escapes are TOML's for what we write)."""
    return json.dumps(text)


def pidone_run(
    workload: Workload, rundir: Path, *, log_format: str = "text", metrics: bool = False
) -> list[str]:
    lines = ["[pidone]", f"control_socket = {_toml(str(rundir / 'control.sock'))}"]
    port = workload.metrics_port or (free_port() if metrics else None)
    if port is not None:
        lines.append(f'metrics = "{LOOPBACK}:{port}"')
    if log_format != "text":
        lines.append(f"log_format = {_toml(log_format)}")
    for s in workload.services:
        lines += ["", f"[process.{s.name}]", f"command = {_toml(s.command_line)}"]
        if s.after:
            lines.append(f"after = [{', '.join(_toml(a) for a in s.after)}]")
        if s.ready_port is not None:
            lines.append(f'ready = "tcp:{LOOPBACK}:{s.ready_port}"')
        elif s.settle is not None:
            lines.append(f'ready = "settle:{s.settle:g}"')
        lines.append(f"stop_timeout = {s.stop_timeout:g}")
    config = rundir / "pidone.toml"
    _write(config, "\n".join(lines) + "\n")
    return [PIDONE_BIN, "run", "-c", str(config)]


def supervisord(workload: Workload, rundir: Path, *, control: bool = False) -> list[str]:
    lines = [
        "[supervisord]",
        "nodaemon=true",
        "user=root",
        f"logfile={rundir / 'supervisord.log'}",
        f"pidfile={rundir / 'supervisord.pid'}",
        f"childlogdir={rundir}",
    ]
    if control:
        # What supervisorctl needs, as its documentation's sample configuration has it.
        socket = rundir / SUPERVISOR_SOCKET
        lines += [
            "",
            "[unix_http_server]",
            f"file={socket}",
            "chmod=0700",
            "",
            "[rpcinterface:supervisor]",
            "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
            "",
            "[supervisorctl]",
            f"serverurl=unix://{socket}",
        ]
    for s in workload.services:
        lines += [
            "",
            f"[program:{s.name}]",
            f"command={s.command_line.replace('%', '%%')}",
            # Lower starts first and stops last: the closest it has to `after`.
            f"priority={100 + 10 * workload.depth(s)}",
            "autorestart=true",
            # No minimum uptime unless the service asks: a quick exit is restarted, not backed off.
            f"startsecs={0 if s.settle is None else round(s.settle)}",
            "stopsignal=TERM",
            f"stopwaitsecs={max(1, round(s.stop_timeout))}",
            # Output to supervisord's own stdout, as in a container.
            "stdout_logfile=/dev/stdout",
            "stdout_logfile_maxbytes=0",
            "redirect_stderr=true",
        ]
    config = rundir / "supervisord.conf"
    _write(config, "\n".join(lines) + "\n")
    return [SUPERVISORD_BIN, "-c", str(config)]


def circusd(workload: Workload, rundir: Path) -> list[str]:
    # ipc endpoints in the rundir: the default tcp ports would collide
    # between circus instances that run at the same time.
    lines = [
        "[circus]",
        f"endpoint = ipc://{rundir / 'circus-ctl.sock'}",
        f"pubsub_endpoint = ipc://{rundir / 'circus-pub.sock'}",
        "statsd = false",  # (a stats_endpoint would turn circusd-stats on)
    ]
    for s in workload.services:
        lines += [
            "",
            f"[watcher:{s.name}]",
            f"cmd = {s.command_line}",
            "numprocesses = 1",
            # Higher starts first: the closest it has to `after`.
            f"priority = {100 - 10 * workload.depth(s)}",
            "copy_env = true",
            f"graceful_timeout = {s.stop_timeout:g}",
            "stdout_stream.class = StdoutStream",
            "stderr_stream.class = StdoutStream",
        ]
    config = rundir / "circus.ini"
    _write(config, "\n".join(lines) + "\n")
    return [CIRCUSD_BIN, str(config)]


def honcho(workload: Workload, rundir: Path) -> list[str]:
    procfile = rundir / "Procfile"
    _write(procfile, "".join(f"{s.name}: {s.command_line}\n" for s in workload.services))
    return [HONCHO_BIN, "-f", str(procfile), "-d", str(rundir), "start"]


def _run_script(waits: list[str], service: Service, env: dict[str, str]) -> str:
    exports = "".join(f"export {key}={value}\n" for key, value in env.items())
    return "#!/bin/sh\n" + "".join(waits) + exports + f"exec {service.command_line}\n"


def s6_svscan(workload: Workload, rundir: Path) -> list[str]:
    scan = rundir / "scan"
    for s in workload.services:
        servicedir = scan / s.name
        waits = [
            f"{S6_SVWAIT_BIN} -U -t {DEPENDENCY_WAIT * 1000} ../{dep} || exit 1\n"
            for dep in s.after
        ]
        env = {}
        if s.ready_port is not None:
            # s6's readiness protocol: the service writes a newline to this fd.
            _write(servicedir / "notification-fd", f"{S6_NOTIFY_FD}\n")
            env[NOTIFY_FD_ENV] = str(S6_NOTIFY_FD)
        _write(servicedir / "timeout-kill", f"{round(s.stop_timeout * 1000)}\n")
        _write(servicedir / "run", _run_script(waits, s, env), 0o755)
    scan.mkdir(parents=True, exist_ok=True)
    return [S6_SVSCAN_BIN, str(scan)]


def runsvdir(workload: Workload, rundir: Path) -> list[str]:
    services = rundir / "service"
    for s in workload.services:
        servicedir = services / s.name
        waits = [
            f"{SV_BIN} -w {DEPENDENCY_WAIT} start ../{dep} >/dev/null || exit 1\n"
            for dep in s.after
        ]
        if s.ready_port is not None:
            # `sv start` counts a service as up once its ./check exits 0.
            check = f"#!{BASH}\n(exec 3<>/dev/tcp/{LOOPBACK}/{s.ready_port}) 2>/dev/null\n"
            _write(servicedir / "check", check, 0o755)
        _write(servicedir / "run", _run_script(waits, s, {}), 0o755)
    services.mkdir(parents=True, exist_ok=True)
    return [RUNSVDIR_BIN, "-P", str(services)]
