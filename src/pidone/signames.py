"""Signal names for logs, replies and metric labels. Pure."""

from __future__ import annotations

import signal


def signal_name(signum: int) -> str:
    """'SIGTERM', 'SIGRTMIN+3', or the number for one Python cannot name.
    (signal.Signals has no member for most real-time signals: a process
    killed by one must not break the code that logs it.)"""
    if signal.SIGRTMIN < signum < signal.SIGRTMAX:
        return f"SIGRTMIN+{signum - signal.SIGRTMIN}"
    try:
        return signal.Signals(signum).name
    except ValueError:
        return str(signum)
