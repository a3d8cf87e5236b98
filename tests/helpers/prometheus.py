"""A real Prometheus server (Debian's package) scraping one target on
loopback, queried through its HTTP API."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.helpers.stack import free_port


class Prometheus:
    """`prefix` runs the server through a wrapper (nsenter into a network
    namespace); `fetch(url) -> body` then reads its API from there too."""

    def __init__(
        self,
        workdir: Path,
        *,
        target: str,
        prefix: list[str] | None = None,
        fetch: Callable[[str], str] | None = None,
    ) -> None:
        binary = shutil.which("prometheus")
        if binary is None:
            raise AssertionError("prometheus is not installed: `make install` installs it")
        self.binary = binary
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        (self.dir / "prometheus.yml").write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            "scrape_configs:\n  - job_name: pidone\n    static_configs:\n"
            f"      - targets: ['{target}']\n"
        )
        self.proc: subprocess.Popen[bytes] | None = None
        self.prefix = prefix or []
        self.fetch = fetch or _fetch

    def __enter__(self) -> Prometheus:
        log = (self.dir / "prometheus.log").open("wb")
        self.proc = subprocess.Popen(
            [
                *self.prefix,
                self.binary,
                f"--config.file={self.dir / 'prometheus.yml'}",
                f"--storage.tsdb.path={self.dir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        return self

    def query(self, promql: str) -> list[dict[str, Any]]:
        url = f"http://127.0.0.1:{self.port}/api/v1/query?" + urllib.parse.urlencode(
            {"query": promql}
        )
        reply = json.loads(self.fetch(url))
        assert reply["status"] == "success", reply
        result: list[dict[str, Any]] = reply["data"]["result"]
        return result

    def wait_for_query(
        self, promql: str, *, count: int, timeout: float = 60.0
    ) -> list[dict[str, Any]]:
        """Poll until the query returns `count` series (scrapes take a while)."""
        deadline = time.monotonic() + timeout
        last: object = None
        while time.monotonic() < deadline:
            assert self.proc is not None and self.proc.poll() is None, self.log()
            try:
                result = self.query(promql)
            except (OSError, ValueError, AssertionError) as exc:  # not listening yet
                last = exc
            else:
                if len(result) >= count:
                    return result
                last = result
            time.sleep(0.5)
        raise AssertionError(f"{promql!r}: never {count} series; last: {last}\n{self.log()}")

    def log(self) -> str:
        return (self.dir / "prometheus.log").read_text(errors="replace")[-3000:]

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def _fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as r:
        body: bytes = r.read()
    return body.decode()
