"""Runs ARGV with its stdout a datagram socket connected to PATH:
`dgram_stdout.py PATH ARGV...`. pidone cannot write to one without
blocking (no MSG_DONTWAIT on a datagram's shared description, no reopen
through /proc), so its relay writes through a writer thread (ThreadOutput).
The send buffer is made room for a whole relayed chunk (up to 256 KiB of
lines and their prefixes) in one datagram."""

from __future__ import annotations

import os
import socket
import sys

SO_SNDBUFFORCE = getattr(socket, "SO_SNDBUFFORCE", 32)


def main() -> None:
    path, argv = sys.argv[1], sys.argv[2:]
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_SNDBUFFORCE, 4 << 20)  # root: past wmem_max
    except OSError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    sock.connect(path)
    os.dup2(sock.fileno(), 1)
    sock.close()
    os.execvp(argv[0], argv)


if __name__ == "__main__":
    main()
