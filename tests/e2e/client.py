"""The e2e tests' client, run as its own process where the requests must
come from: inside the stack's network namespace (`nsenter --net=...`), or
as another user (www-data, nobody). Standard library only.

    client.py get URL...           a GET each; one JSON line each: status, body
    client.py load URL [--threads N] [--seconds S] [--max-requests M]
                                   steady load, a new connection per request;
                                   a JSON progress line every 0.2 s, then a
                                   final one. Bounded: it stops after S
                                   seconds or M requests, or when its stdin
                                   says "stop" or closes.
    client.py uwsgi SOCKET PATH    one GET in the uwsgi protocol straight to
                                   uwsgi's socket (what nginx does)
"""

from __future__ import annotations

import argparse
import http.client
import json
import socket
import sys
import threading
import time
from collections import Counter
from urllib.parse import urlsplit


def emit(obj: object) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def get(url: str, timeout: float = 10.0) -> tuple[int, str]:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(
        parts.hostname or "127.0.0.1", parts.port or 80, timeout=timeout
    )
    try:
        conn.request("GET", parts.path + (f"?{parts.query}" if parts.query else ""))
        response = conn.getresponse()
        return response.status, response.read().decode(errors="replace")
    finally:
        conn.close()


def one_request(host: str, port: int, path: str, timeout: float) -> str:
    """One request on a new connection: "ok", or what went wrong."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(f"GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
    except ConnectionRefusedError:
        return "refused"
    except ConnectionResetError:
        return "reset"
    except TimeoutError:
        return "timeout"
    except OSError as exc:
        return f"error: {exc.strerror or exc}"
    status_line = data.split(b"\r\n", 1)[0]
    if status_line.startswith(b"HTTP/1.") and b" 200 " in status_line + b" ":
        if b"Hello from pidone-webapp" in data:
            return "ok"
        return "200 without the app's greeting"
    return f"bad response: {status_line[:60].decode(errors='replace')}"


class Load:
    def __init__(self, url: str, threads: int, max_requests: int, timeout: float) -> None:
        parts = urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.path = parts.path or "/"
        self.timeout = timeout
        self.max_requests = max_requests
        self.results: Counter[str] = Counter()
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self.run, daemon=True) for _ in range(threads)]

    def run(self) -> None:
        while not self.stop.is_set():
            outcome = one_request(self.host, self.port, self.path, self.timeout)
            with self.lock:
                self.results[outcome] += 1
                if self.results.total() >= self.max_requests:
                    self.stop.set()

    def snapshot(self) -> dict[str, object]:
        with self.lock:
            failed = {k: v for k, v in self.results.items() if k != "ok"}
            return {"ok": self.results["ok"], "failed": failed, "total": self.results.total()}


def load(args: argparse.Namespace) -> None:
    run = Load(args.url, args.threads, args.max_requests, args.timeout)
    started = time.monotonic()

    def watch_stdin() -> None:
        for line in sys.stdin:
            if line.strip() == "stop":
                break
        run.stop.set()

    threading.Thread(target=watch_stdin, daemon=True).start()
    for thread in run.threads:
        thread.start()
    while not run.stop.wait(0.2):
        if time.monotonic() - started >= args.seconds:
            run.stop.set()
        emit({**run.snapshot(), "seconds": round(time.monotonic() - started, 3)})
    for thread in run.threads:
        thread.join(args.timeout + 5)
    seconds = time.monotonic() - started
    with run.lock:
        total = run.results.total()
    rate = round(total / seconds, 1)
    emit({**run.snapshot(), "final": True, "seconds": round(seconds, 3), "rate": rate})


def uwsgi_get(path: str, url_path: str) -> None:
    """A GET in the uwsgi protocol: a 4-byte header (modifier1 0, the size
    of the variables, modifier2 0), then each variable as a length-prefixed
    key and value (little-endian 16-bit lengths)."""

    def var(key: str, value: str) -> bytes:
        k, v = key.encode(), value.encode()
        return len(k).to_bytes(2, "little") + k + len(v).to_bytes(2, "little") + v

    body = b"".join(
        var(k, v)
        for k, v in {
            "REQUEST_METHOD": "GET",
            "PATH_INFO": url_path,
            "QUERY_STRING": "",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "SERVER_NAME": "e2e",
            "SERVER_PORT": "80",
            "REMOTE_ADDR": "127.0.0.1",
            "HTTP_HOST": "e2e",
        }.items()
    )
    try:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(10)
            sock.connect(path)
            sock.sendall(b"\0" + len(body).to_bytes(2, "little") + b"\0" + body)
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
    except OSError as exc:
        emit({"error": type(exc).__name__, "errno": exc.errno, "message": str(exc)})
        return
    head, _, text = data.partition(b"\r\n\r\n")
    emit({"status_line": head.split(b"\r\n", 1)[0].decode(), "body": text.decode(errors="replace")})


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    p_get = sub.add_parser("get")
    p_get.add_argument("urls", nargs="+")
    p_load = sub.add_parser("load")
    p_load.add_argument("url")
    p_load.add_argument("--threads", type=int, default=8)
    p_load.add_argument("--seconds", type=float, default=60.0)
    p_load.add_argument("--max-requests", type=int, default=100_000)
    p_load.add_argument("--timeout", type=float, default=10.0)
    p_uwsgi = sub.add_parser("uwsgi")
    p_uwsgi.add_argument("socket")
    p_uwsgi.add_argument("path")
    args = parser.parse_args()
    if args.command == "get":
        for url in args.urls:
            try:
                status, body = get(url)
                emit({"status": status, "body": body})
            except OSError as exc:
                emit({"status": None, "error": f"{type(exc).__name__}: {exc}"})
    elif args.command == "load":
        load(args)
    else:
        uwsgi_get(args.socket, args.path)


if __name__ == "__main__":
    main()
