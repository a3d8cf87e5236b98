#!/bin/sh
# up.sh FIFO NAME: say `up NAME PID` on FIFO, then become `sleep`.
# For the restart and scale tests: a shell starts in about a millisecond,
# so the bench times the init, not an interpreter's start-up.
echo "up $2 $$" > "$1"
exec /usr/bin/sleep 100000
