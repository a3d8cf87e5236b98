"""Real uwsgi and gunicorn handed a socket that pidone bound (socket
activation), under continuous requests: restarts cost no failed request,
because the listening socket stays open in pidone and connections wait in
its backlog while the server is away."""

from __future__ import annotations

import os
import re
import signal
import sys
from pathlib import Path

from tests.helpers.load import UnixLoad
from tests.helpers.running import children_of, wait_for
from tests.helpers.stack import Stack
from tests.helpers.users import APP, socket_table

BIN = Path(sys.executable).parent
APP_DIR = Path(__file__).parent.parent / "helpers"


def uwsgi_command() -> str:
    # --http-socket fd://3: the inherited socket, named so that uwsgi finds it
    # again after a SIGHUP reload; HTTP here, where nginx would use --socket
    # fd://3 (the uwsgi protocol). The hook makes SIGTERM a graceful stop.
    return (
        f"{BIN / 'uwsgi'} --master --processes 2 --http-socket fd://3 --need-app"
        f" --chdir {APP_DIR} --module wsgi_app"
        " --hook-master-start 'unix_signal:15 gracefully_kill_them_all'"
    )


def start_web(stack: Stack, sock: Path, command: str) -> None:
    """Start `command` as web, as the app user, on the pre-bound socket, and
    wait until it is ready."""
    stack.start(
        socket_table(sock)
        + f"""
[process.web]
command = "{command}"
user = "{APP}"
sockets = ["app"]
ready = "notify"
stop_timeout = 30
"""
    )
    wait_for(lambda: ready_count(stack, "web") == 1, timeout=30, what="web ready")


def ready_count(stack: Stack, name: str) -> int:
    return len(re.findall(rf"^{name}\s+\| ready$", stack.stdout_so_far(), re.M))


def report(label: str, load: UnixLoad) -> None:
    # the counts, in the test output (pytest -s, or on failure)
    print(f"{label}: {dict(load.results)}, {load.retried} retried after a reset")


def test_uwsgi_graceful_restart_under_load_fails_no_request(shared: Path) -> None:
    sock = shared / "run" / "app.sock"
    with Stack("pid1", shared) as stack:
        start_web(stack, sock, uwsgi_command())
        with UnixLoad(str(sock), retry_reset=True) as load:
            load.wait_for_ok(200)
            master = stack.host_pid_of("uwsgi")
            os.kill(master, signal.SIGTERM)  # uwsgi exits gracefully; pidone restarts it
            wait_for(lambda: ready_count(stack, "web") == 2, timeout=30, what="uwsgi back")
            load.wait_for_ok(200)
        report("uwsgi graceful restart", load)
        assert set(load.results) == {"ok"}, load.results
        assert re.search(r"^web\s+\| restarting in 0 s$", stack.stdout_so_far(), re.M)


def test_uwsgi_master_killed_costs_no_refused_connection(shared: Path) -> None:
    sock = shared / "run" / "app.sock"
    with Stack("pid1", shared) as stack:
        start_web(stack, sock, uwsgi_command())
        with UnixLoad(str(sock)) as load:
            load.wait_for_ok(200)
            os.kill(stack.host_pid_of("uwsgi"), signal.SIGKILL)
            wait_for(lambda: ready_count(stack, "web") == 2, timeout=30, what="uwsgi back")
            load.wait_for_ok(200)
        report("uwsgi kill -9", load)
        assert load.results["refused"] == 0, load.results
        assert load.results["no socket file"] == 0, load.results
        assert load.results["ok"] >= 400


def test_gunicorn_takes_the_socket_and_restarts_without_a_failed_request(shared: Path) -> None:
    sock = shared / "run" / "app.sock"
    with Stack("pid1", shared) as stack:
        stack.start(
            socket_table(sock)
            + f"""
[process.web]
command = "{BIN / "gunicorn"} --workers 2 --chdir {APP_DIR} wsgi_app:application"
user = "{APP}"
sockets = ["app"]
ready = "notify"
"""
        )
        wait_for(lambda: ready_count(stack, "web") == 1, timeout=30, what="gunicorn ready")
        with UnixLoad(str(sock)) as load:
            load.wait_for_ok(200)
            os.kill(stack.host_pid_of("gunicorn"), signal.SIGTERM)  # graceful for gunicorn
            wait_for(lambda: ready_count(stack, "web") == 2, timeout=30, what="gunicorn back")
            load.wait_for_ok(200)
        report("gunicorn graceful restart", load)
        assert set(load.results) == {"ok"}, load.results
        assert sock.exists()  # gunicorn left the socket file alone


def test_a_deploy_touch_reloads_gunicorn_through_touch_signal_without_a_failed_request(
    mode: str, shared: Path
) -> None:
    """uWSGI's touch-reload for gunicorn: the deploy touches a file, pidone
    sends touch_signal (HUP: gunicorn's graceful reload) to the master, which
    stays, while its workers are replaced; no request fails meanwhile."""
    sock = shared / "run" / "app.sock"
    deploy = shared / "deploy"
    deploy.mkdir()
    with Stack(mode, shared) as stack:
        stack.start(
            socket_table(sock)
            + f"""
[process.web]
command = "{BIN / "gunicorn"} --workers 2 --chdir {APP_DIR} wsgi_app:application"
user = "{APP}"
sockets = ["app"]
ready = "notify"
touch = ["{deploy / "restart.txt"}"]
touch_signal = "HUP"
"""
        )
        wait_for(lambda: ready_count(stack, "web") == 1, timeout=30, what="gunicorn ready")
        master = stack.host_pid_of("gunicorn")
        wait_for(lambda: len(children_of(master)) == 2, timeout=30, what="2 workers")
        workers = set(children_of(master))
        with UnixLoad(str(sock)) as load:
            load.wait_for_ok(200)
            (deploy / "restart.txt").touch()  # what a deploy script does
            wait_for(
                lambda: (
                    len(set(children_of(master)) - workers) == 2
                    and not workers & set(children_of(master))
                ),
                timeout=30,
                what="both workers replaced",
            )
            load.wait_for_ok(200)
        report("gunicorn touch reload", load)
        assert set(load.results) == {"ok"}, load.results
        assert stack.host_pid_of("gunicorn") == master  # reloaded, not restarted
        assert ready_count(stack, "web") == 1
