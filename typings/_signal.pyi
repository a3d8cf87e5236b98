# The C half of the `signal` module, which pidone imports directly because
# `signal` pulls in enum (about 1 MiB of resident memory in PID 1).
from collections.abc import Callable, Iterable
from types import FrameType

_Handler = Callable[[int, FrameType | None], object] | int | None

NSIG: int
SIGRTMIN: int
SIGRTMAX: int
SIG_DFL: int
SIG_IGN: int
SIG_BLOCK: int
SIG_UNBLOCK: int
SIG_SETMASK: int
SIGCHLD: int
SIGKILL: int
SIGSTOP: int
SIGTERM: int
SIGINT: int
SIGHUP: int
SIGQUIT: int
SIGTTIN: int
SIGTTOU: int
SIGTSTP: int
SIGCONT: int
SIGUSR1: int
SIGUSR2: int
SIGPIPE: int
SIGALRM: int
SIGWINCH: int

def signal(signalnum: int, handler: _Handler, /) -> _Handler: ...
def getsignal(signalnum: int, /) -> _Handler: ...
def set_wakeup_fd(fd: int, /, *, warn_on_full_buffer: bool = ...) -> int: ...
def pthread_sigmask(how: int, mask: Iterable[int], /) -> set[int]: ...
def valid_signals() -> set[int]: ...
def sigpending() -> set[int]: ...
def strsignal(signalnum: int, /) -> str | None: ...
def pthread_kill(thread_id: int, signalnum: int, /) -> None: ...

class struct_siginfo:
    si_signo: int
    si_code: int
    si_errno: int
    si_pid: int
    si_uid: int
    si_status: int
    si_band: int

def sigwaitinfo(sigset: Iterable[int], /) -> struct_siginfo: ...
