"""The exceptions pidone raises, in one tree.

    PidoneError                 anything pidone reports to a user
    ├── UsageError              bad command line             -> exit 2
    ├── ConfigError             bad Procfile/.env/TOML       -> exit 2
    │                           (carries every problem found, not just the first)
    ├── SpawnError              a program could not be started (exec failed,
    │                           user switch refused, ...); .exit_code is 127
    │                           when the command was not found, 126 otherwise
    └── IllegalTransition       the supervisor fed a process state an event the
                                transition table has no entry for (a bug in
                                pidone, never the operator's fault)

Only `cli.py` turns these into exit statuses.
"""

from __future__ import annotations


class PidoneError(Exception):
    """Base class: an error with a message meant for the operator."""

    exit_code = 1


class UsageError(PidoneError):
    exit_code = 2


class ConfigError(PidoneError):
    """One or more configuration problems; `problems` lists each one."""

    exit_code = 2

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class SpawnError(PidoneError):
    def __init__(self, message: str, errno: int, exit_code: int) -> None:
        super().__init__(message)
        self.errno = errno
        self.exit_code = exit_code


class IllegalTransition(PidoneError):
    """`states.transition` got a (state, event) pair the table does not allow."""

    def __init__(self, state: object, event: object) -> None:
        super().__init__(f"illegal transition: event {event} in state {state}")
        self.state = state
        self.event = event
