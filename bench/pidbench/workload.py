"""What runs under an init: one or more named services, the same for every init.

A supervisor gets each service as a program of its own (a pidone.toml
process, a supervisord program, an s6 service directory...); a
single-command init (tini, dumb-init, pidone without `run`) gets one
command, so several services go through a launcher shell that starts all
of them and becomes the last one:

    /bin/sh -c 'A & B & exec C'

C is then the init's only child and A and B are C's siblings' orphans to
be: what a user of tini gets when a container runs more than one program.
"""

from __future__ import annotations

import shlex
import socket
from collections.abc import Sequence
from dataclasses import dataclass

SHELL = "/bin/sh"
LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class Service:
    name: str
    argv: tuple[str, ...]
    after: tuple[str, ...] = ()  # services that must be ready before this one starts
    ready_port: int | None = None  # ready once 127.0.0.1:PORT accepts connections
    stop_timeout: float = 5.0  # seconds from the stop signal to SIGKILL
    # Ready (pidone) or RUNNING (supervisord's startsecs) once up this long;
    # None: each init's own default as configs.py sets it.
    settle: float | None = None

    @property
    def command_line(self) -> str:
        return shlex.join(self.argv)


@dataclass(frozen=True)
class Workload:
    services: tuple[Service, ...]
    metrics_port: int | None = None  # pidone only: serve /metrics on 127.0.0.1:PORT

    @classmethod
    def single(cls, argv: Sequence[str], name: str = "main") -> Workload:
        return cls((Service(name, tuple(argv)),))

    def service(self, name: str) -> Service:
        for service in self.services:
            if service.name == name:
                return service
        raise KeyError(name)

    def depth(self, service: Service) -> int:
        """0 for a service after nothing, 1 + the deepest of its `after` otherwise."""
        if not service.after:
            return 0
        return 1 + max(self.depth(self.service(dep)) for dep in service.after)

    def launcher(self) -> list[str]:
        """The one command a single-command init runs."""
        if len(self.services) == 1:
            return list(self.services[0].argv)
        *first, last = self.services
        background = "".join(f"{s.command_line} & " for s in first)
        return [SHELL, "-c", f"{background}exec {last.command_line}"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port
