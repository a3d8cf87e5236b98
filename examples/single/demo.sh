#!/bin/sh
# A tiny workload for `make demo` in single-command mode: it orphans 200
# short-lived grandchildren (pidone, as PID 1, must reap them all), shows that
# no zombie is left, then exits 3 so you can see pidone pass the status on.
echo "demo: I am pid $$ under pidone (pid 1 of this namespace)"
i=0
while [ $i -lt 200 ]; do
    ( sleep 0.2 & ) # the subshell exits at once: the sleep is orphaned to PID 1
    i=$((i + 1))
done
echo "demo: orphaned 200 processes; waiting for them to exit and be reaped"
sleep 1
zombies=$(ps -eo stat= | grep -c '^Z' || true)
echo "demo: zombies left in the namespace: $zombies"
echo "demo: exiting with status 3"
exit 3
