"""Runs ARGV with its stdout a datagram socket connected to PATH:
`dgram_stdout.py PATH ARGV...`. pidone cannot write to one without
blocking (no MSG_DONTWAIT on a datagram's shared description, no reopen
through /proc), so its relay writes through a writer thread (ThreadOutput).
The send buffer is left at its default (212 KiB), smaller than what one
read of a pipe may relay."""

from __future__ import annotations

import os
import socket
import sys


def main() -> None:
    path, argv = sys.argv[1], sys.argv[2:]
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.connect(path)
    os.dup2(sock.fileno(), 1)
    sock.close()
    os.execvp(argv[0], argv)


if __name__ == "__main__":
    main()
