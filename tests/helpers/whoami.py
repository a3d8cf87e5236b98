"""Prints `WHOAMI <json>` describing the process it runs as, then sleeps
(exits 0 with WHOAMI_EXIT=1 in its environment): /proc/self/status identity
and capability lines, rlimits, cwd, umask, environment, its pid and argv,
and whether it could bind a privileged port on loopback."""

from __future__ import annotations

import json
import os
import resource
import socket
import sys
import time

FIELDS = ("Uid", "Gid", "Groups", "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb",
          "NoNewPrivs", "Umask")  # fmt: skip


def main() -> None:
    status = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in FIELDS:
                status[key] = value.split()
    try:
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", 81))
        privileged_bind = "ok"
    except OSError as exc:
        privileged_bind = exc.strerror or str(exc)
    report = {
        "status": status,
        "nofile": list(resource.getrlimit(resource.RLIMIT_NOFILE)),
        "cwd": os.getcwd(),
        "env": dict(os.environ),
        "privileged_bind": privileged_bind,
        "argv": sys.argv[1:],
        "pid": os.getpid(),
    }
    print("WHOAMI " + json.dumps(report), flush=True)
    if os.environ.get("WHOAMI_EXIT") == "1":
        return
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
