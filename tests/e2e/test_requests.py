"""A request through the whole stack, and who can reach what: nginx (as
www-data, in a root of its own) reaches uwsgi only through the socket in
the shared directory, which www-data may use and nobody may not."""

from __future__ import annotations

import grp
import os
import pwd
import re
import stat
import time
from pathlib import Path

from tests.e2e.webapp import WEBAPP_DIR, Webapp, ns_pid
from tests.helpers.running import children_of
from tests.helpers.users import as_user


def test_a_request_through_nginx_reaches_uwsgi_and_a_task_comes_back(webapp: Webapp) -> None:
    # nginx -> the socket -> a uwsgi worker (the pid it names is one of them)
    status, body = webapp.get("/")
    assert status == 200, body
    match = re.fullmatch(
        r"Hello from pidone-webapp! \(uwsgi worker (\d+), app loaded [\d.]+\)\n", body
    )
    assert match, body
    uwsgi_workers = {ns_pid(pid) for pid in children_of(webapp.main_pid("web"))}
    assert int(match[1]) in uwsgi_workers

    # uwsgi -> redis -> the celery worker -> redis -> uwsgi
    started = time.monotonic()
    task = webapp.enqueue(1)
    seen = webapp.wait_state(task, "STARTED")  # task_track_started: the worker has it
    assert seen["state"] == "STARTED"
    done = webapp.wait_state(task, "SUCCESS", "FAILURE")
    elapsed = time.monotonic() - started
    assert done["state"] == "SUCCESS", done
    result = done["result"]
    assert result["slept"] == 1.0
    assert result["finished_at"] - result["started_at"] >= 1.0
    assert elapsed >= 1.0
    pool = {ns_pid(pid) for pid in children_of(webapp.main_pid("worker"))}
    assert result["worker_pid"] in pool  # a pool process of the worker ran it

    # each hop left its trace: uwsgi's request log, the worker's, redis's key
    assert webapp.find("web", r"GET /enqueue\?seconds=1 => generated .* \(HTTP/1.\d 202\)")
    assert webapp.find("worker", rf"Task tasks.sleep_then_return\[{task}\] received")
    assert webapp.find("worker", rf"Task tasks.sleep_then_return\[{task}\] succeeded in 1\.")
    stored = webapp.redis("GET", f"celery-task-meta-{task}")
    assert '"status": "SUCCESS"' in stored and '"slept": 1.0' in stored, stored

    # and a bad request is the app's answer, not a proxy error
    status, body = webapp.get("/enqueue?seconds=nope")
    assert status == 400 and "seconds must be a number" in body


def test_the_socket_is_reachable_by_www_data_and_refused_to_nobody(webapp: Webapp) -> None:
    directory = webapp.state / "volume"  # the volume, seen from the host
    sock = directory / "uwsgi.sock"
    app, www = pwd.getpwnam("app").pw_uid, grp.getgrnam("www-data").gr_gid
    st = os.stat(directory)
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (app, www, 0o2750)
    st = os.stat(sock)
    assert stat.S_ISSOCK(st.st_mode)
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (app, www, 0o660)

    client = ["/usr/bin/python3", str(webapp.state / "client.py"), "uwsgi", str(sock), "/"]
    answer = as_user("www-data", client)
    assert answer.returncode == 0, answer.stderr
    assert '"status_line": "HTTP/1.1 200 OK"' in answer.stdout, answer.stdout
    assert "Hello from pidone-webapp!" in answer.stdout

    refused = as_user("nobody", client)
    assert refused.returncode == 0, refused.stderr
    assert '"error": "PermissionError"' in refused.stdout, refused.stdout
    assert '"errno": 13' in refused.stdout  # EACCES: the 2750 directory keeps it out


def test_nginx_runs_as_www_data_and_sees_only_the_socket_directory(webapp: Webapp) -> None:
    nginx = webapp.nginx
    assert ns_pid(nginx) == 1  # PID 1 of its own PID namespace
    assert os.readlink(f"/proc/{nginx}/ns/pid") != os.readlink(f"/proc/{webapp.pidone}/ns/pid")
    assert os.readlink(f"/proc/{nginx}/ns/mnt") != os.readlink(f"/proc/{webapp.pidone}/ns/mnt")
    assert os.readlink(f"/proc/{nginx}/ns/net") == os.readlink(f"/proc/{webapp.pidone}/ns/net")
    www = pwd.getpwnam("www-data")
    for pid in [nginx, *children_of(nginx)]:  # the master and its workers
        status = Path(f"/proc/{pid}/status").read_text()
        assert re.search(rf"^Uid:\s+{www.pw_uid}\s+{www.pw_uid}\s+{www.pw_uid}\s", status, re.M)
        assert re.search(r"^CapEff:\s+0+$", status, re.M)
        assert re.search(r"^CapBnd:\s+0+$", status, re.M)
        assert re.search(r"^NoNewPrivs:\s+1$", status, re.M)
    assert len(children_of(nginx)) == 2

    # Its whole world, through its root: the host's /usr and /etc, its own
    # scratch space, and of the app only the shared directory.
    root = Path(f"/proc/{nginx}/root")
    assert sorted(p.name for p in root.iterdir()) == [
        "bin", "config", "dev", "etc", "lib", "lib64", "proc", "run", "sbin", "tmp", "usr",
    ]  # fmt: skip
    assert sorted(p.name for p in (root / "run").iterdir()) == ["pidone-webapp"]
    assert sorted(p.name for p in (root / "run/pidone-webapp").iterdir()) == ["uwsgi.sock"]
    assert not (root / WEBAPP_DIR.relative_to("/")).exists()  # not the app's code
    assert not (root / "opt").exists()  # nor its venv
    assert not (root / str(webapp.state / "redis").lstrip("/")).exists()  # nor redis's data
    procs = sorted(int(p.name) for p in (root / "proc").iterdir() if p.name.isdigit())
    assert procs == sorted(ns_pid(pid) for pid in [nginx, *children_of(nginx)])
    # the app's side has its own /run: pidone's, with the volume in it
    app_run = Path(f"/proc/{webapp.pidone}/root/run")
    assert "pidone-webapp" in {p.name for p in app_run.iterdir()}
