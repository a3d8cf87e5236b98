"""The example's Kubernetes manifest (examples/webapp/k8s/), run by `podman
kube play`: the app container (pidone running redis, uwsgi and celery) and
the nginx sidecar, sharing an emptyDir for uwsgi's socket; the pod has only
its own loopback, so every request is made from inside it (`podman exec`).

What the test changes in the manifest before playing it, and why:
- the images: the ones tests/container/images.py built (the app's), and the
  debootstrap base with Debian's nginx standing in for the official nginx
  image (no registry here);
- the name (pidone-test-webapp), so it never touches a pod of someone else's;
- `ports` are dropped: podman 4.3 turns a containerPort into a port mapping,
  which it refuses without a network (the probes use port numbers);
- redis's data volume becomes a persistentVolumeClaim (a podman volume), so
  the snapshot redis writes on its way out outlives `podman kube down`.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.container.images import WEBAPP, Images
from tests.container.podman import environment, podman, wait_until

pytestmark = [pytest.mark.root, pytest.mark.timeout(300)]

MANIFEST = WEBAPP / "k8s" / "pidone-webapp.yaml"
NAME = "pidone-test-webapp"
POD = f"{NAME}-pod-0"  # podman's name for a Deployment's one pod
APP = f"{POD}-app"
NGINX = f"{POD}-nginx"

FETCH = """
import json, sys, urllib.error, urllib.request
try:
    r = urllib.request.urlopen(sys.argv[1], timeout=10)
    status, headers, body = r.status, dict(r.headers), r.read()
except urllib.error.HTTPError as e:
    status, headers, body = e.code, dict(e.headers), e.read()
print(json.dumps({"status": status, "headers": headers, "body": body.decode()}))
"""


def load_manifest() -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(MANIFEST.read_text()) if doc]


def deployment(docs: list[dict[str, Any]]) -> dict[str, Any]:
    [found] = [d for d in docs if d["kind"] == "Deployment"]
    return found


def containers_of(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    spec = deployment(docs)["spec"]["template"]["spec"]
    return {c["name"]: c for c in spec["containers"]}


def for_podman(images: Images, prefix: str) -> str:
    """The manifest as this test plays it (see the module's docstring).
    podman 4.3 makes a named volume for each emptyDir and configMap, named
    as in the manifest: every volume and the ConfigMap get `prefix`, so the
    test neither takes nor removes a volume of anyone else's."""
    docs = load_manifest()
    for doc in docs:
        if doc["kind"] == "ConfigMap":
            doc["metadata"]["name"] = prefix + doc["metadata"]["name"]
    dep = deployment(docs)
    dep["metadata"]["name"] = NAME
    pod = dep["spec"]["template"]["spec"]
    for container in pod["containers"]:
        container.pop("ports", None)
        container["image"] = {"app": images.webapp, "nginx": images.base}[container["name"]]
        for mount in container["volumeMounts"]:
            mount["name"] = prefix + mount["name"]
    for vol in pod["volumes"]:
        vol["name"] = prefix + vol["name"]
        if "configMap" in vol:
            vol["configMap"]["name"] = prefix + vol["configMap"]["name"]
        if vol["name"] == prefix + "redis-data":
            vol.pop("emptyDir")
            vol["persistentVolumeClaim"] = {"claimName": prefix + "redis-data"}
    return yaml.safe_dump_all(docs)


@dataclass
class Pod:
    manifest: Path
    volume: str
    images: Images

    def fetch(self, url: str, container: str = APP) -> dict[str, Any]:
        """GET url from inside the pod (its loopback is shared by both)."""
        done = podman("exec", container, "python3", "-c", FETCH, url, timeout=30)
        got = json.loads(done.stdout)
        assert isinstance(got, dict)
        return got

    def sh(self, container: str, script: str, *, user: str | None = None) -> str:
        who = ["--user", user] if user else []
        return podman("exec", *who, container, "sh", "-c", script, timeout=30).stdout

    def logs(self, container: str = APP) -> str:
        done = podman("logs", container, check=False)
        return done.stdout + done.stderr


def ready(pod: Pod) -> bool:
    try:
        readyz = pod.fetch("http://127.0.0.1:9100/readyz")["status"]
        home = pod.fetch("http://127.0.0.1:8080/")["status"]
        return bool(readyz == 200 and home == 200)
    except Exception:
        return False


def kube_down(manifest: Path) -> float:
    started = time.monotonic()
    podman("kube", "down", str(manifest), check=False, timeout=180)
    return time.monotonic() - started


@pytest.fixture(scope="module")
def pod(images: Images, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pod]:
    prefix = f"pidone-test-{uuid.uuid4().hex[:8]}-"
    manifest = tmp_path_factory.mktemp("kube") / "pidone-webapp.yaml"
    manifest.write_text(for_podman(images, prefix))
    podman("pod", "rm", "--force", "--ignore", POD, check=False, timeout=120)  # a stale one of ours
    made = Pod(manifest, prefix + "redis-data", images)
    try:
        podman("kube", "play", "--network", "none", str(manifest), timeout=120)
        wait_until(lambda: ready(made), 90, "the pod to be ready", interval=0.5)
        yield made
    finally:
        kube_down(manifest)
        podman("pod", "rm", "--force", "--ignore", POD, check=False, timeout=120)
        listed = podman("volume", "ls", "--quiet", check=False).stdout.split()
        ours = [v for v in listed if v.startswith(prefix)]
        if ours:
            podman("volume", "rm", "--force", *ours, check=False)


def test_request_through_nginx_to_uwsgi(pod: Pod) -> None:
    got = pod.fetch("http://127.0.0.1:8080/")
    assert got["status"] == 200
    assert got["headers"]["Server"].startswith("nginx/")
    assert re.match(r"Hello from pidone-webapp! \(uwsgi worker \d+", got["body"]), got
    # and the same from the nginx container's side of the pod
    assert pod.fetch("http://127.0.0.1:8080/", container=NGINX)["status"] == 200


def test_task_through_redis_and_celery(pod: Pod) -> None:
    queued = pod.fetch("http://127.0.0.1:8080/enqueue?seconds=0.1")
    assert queued["status"] == 202, queued
    url = "http://127.0.0.1:8080" + json.loads(queued["body"])["result_url"]

    def done() -> bool:
        return bool(json.loads(pod.fetch(url)["body"])["state"] == "SUCCESS")

    wait_until(done, 30, "the task's result", interval=0.2)


def test_socket_in_the_shared_volume(pod: Pod) -> None:
    """pidone made the emptyDir app:www-data 2750 and the socket 0660
    (pidone.toml); nginx, user 101 in group www-data, sees the same numbers."""
    # as the app (root there has no DAC_OVERRIDE to look into app's directory)
    socket = "stat -c '%U:%G %a' /run/pidone-webapp /run/pidone-webapp/uwsgi.sock"
    assert pod.sh(APP, socket, user="app") == "app:www-data 2750\napp:www-data 660\n"
    app_uid = pod.sh(APP, "id -u app").strip()
    seen = pod.sh(NGINX, "stat -c '%u:%g %a %F' /run/pidone-webapp /run/pidone-webapp/uwsgi.sock")
    assert seen == f"{app_uid}:33 2750 directory\n{app_uid}:33 660 socket\n"


def status_of(pod: Pod, container: str, pid: str) -> dict[str, str]:
    text = pod.sh(container, f"cat /proc/{pid}/status")
    return dict(line.split(":\t", 1) for line in text.splitlines() if ":\t" in line)


CAPS = {"CHOWN": 0, "DAC_OVERRIDE": 1, "FOWNER": 3, "FSETID": 4, "KILL": 5, "SETGID": 6}
CAPS |= {"SETUID": 7, "SETPCAP": 8}


def test_security_context_applied(pod: Pod) -> None:
    """The app container has exactly the manifest's capabilities and
    no_new_privs; pidone runs each process as its own user with none;
    nginx runs as 101:33 with no capability at all."""
    added = containers_of(load_manifest())["app"]["securityContext"]["capabilities"]["add"]
    mask = sum(1 << CAPS[name] for name in added)
    pidone = status_of(pod, APP, "1")
    assert int(pidone["CapBnd"], 16) == mask
    assert int(pidone["CapEff"], 16) == mask
    assert pidone["NoNewPrivs"].strip() == "1"
    users = pod.sh(
        APP,
        "for s in /proc/[0-9]*/status; do "
        "awk '/^Name:/ {n=$2} /^Uid:/ {u=$2} /^CapEff:/ {c=$2} END {print n, u, c}' $s; "
        "done",
    )
    ids = {n: pod.sh(APP, f"id -u {n}").strip() for n in ("app", "celery", "redis")}
    seen = {tuple(line.split()) for line in users.splitlines()}
    assert ("redis-server", ids["redis"], "0000000000000000") in seen, seen
    assert ("uwsgi", ids["app"], "0000000000000000") in seen, seen
    assert any(n.startswith("celery") and u == ids["celery"] for n, u, _ in seen), seen
    nginx = status_of(pod, NGINX, "1")
    assert nginx["Uid"].split()[0] == "101" and nginx["Gid"].split()[0] == "33"
    assert int(nginx["CapEff"], 16) == 0 and int(nginx["CapBnd"], 16) == 0


def test_metrics_and_probes(pod: Pod) -> None:
    assert pod.fetch("http://127.0.0.1:9100/healthz")["status"] == 200
    assert pod.fetch("http://127.0.0.1:9100/readyz")["status"] == 200
    metrics = pod.fetch("http://127.0.0.1:9100/metrics")
    assert metrics["status"] == 200
    for process in ("redis", "web", "worker"):
        assert f'pidone_process_up{{process="{process}"}} 1.0' in metrics["body"]
        assert f'pidone_process_ready{{process="{process}"}} 1.0' in metrics["body"]
    assert "pidone_scrape_errors_total 0.0" in metrics["body"]


def test_pod_stop_and_kube_down_let_the_running_task_finish(pod: Pod) -> None:
    """The pod stopped as the kubelet would: SIGTERM to pidone, which stops the
    worker warmly (the 5-second task finishes and its result is stored),
    then redis, which saves; pidone exits 0, well within the grace period.
    Then `podman kube down` removes what is left. Runs last.

    `podman pod stop --time 120` first (terminationGracePeriodSeconds), because
    `podman kube down` alone SIGKILLs at once before podman 5.1 (podman's
    issue 22397; Debian 12 has 4.3): no init could stop gracefully there."""
    queued = pod.fetch("http://127.0.0.1:8080/enqueue?seconds=5")
    task = json.loads(queued["body"])["id"]
    url = f"http://127.0.0.1:8080/result/{task}"
    wait_until(
        lambda: json.loads(pod.fetch(url)["body"])["state"] == "STARTED", 30, "the task to start"
    )
    follow = subprocess.Popen(
        ["podman", "logs", "--follow", APP],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=environment(),
    )
    try:
        time.sleep(0.5)  # podman logs is following
        started = time.monotonic()
        podman("pod", "stop", "--time", str(grace_period()), POD, timeout=180)
        took = time.monotonic() - started
        out, _ = follow.communicate(timeout=60)
        assert podman("inspect", "--format", "{{.State.ExitCode}}", APP).stdout.strip() == "0"
        kube_down(pod.manifest)
        assert podman("pod", "exists", POD, check=False).returncode == 1
    finally:
        if follow.poll() is None:
            follow.kill()
            follow.wait()
    print(f"podman pod stop with a 5 s task running: {took:.2f} s")
    lines = out.splitlines()

    def at(pattern: str) -> int:
        for i, line in enumerate(lines):
            if re.search(pattern, line):
                return i
        raise AssertionError(f"no line like {pattern!r} in the app's log:\n{out[-6000:]}")

    got_term = at(r"^pidone \| received SIGTERM: stopping$")
    finished = at(rf"^worker \| .*Task tasks.sleep_then_return\[{task}\] succeeded in 5\.\d+s")
    worker_stopped = at(r"^worker \| stopped \(status 0\)$")
    saved = at(r"^redis  \| .*DB saved on disk")
    exited = at(r"^pidone \| exiting with status 0$")
    assert got_term < finished < worker_stopped < saved < exited
    assert not re.search(r"stop timeout|SIGKILL|FATAL", out)
    assert 3 < took < 20  # the task's remaining seconds, then the stops; far from the grace

    stored = stored_result(pod.images, pod.volume, task)
    assert stored["status"] == "SUCCESS", stored
    result = stored["result"]
    assert isinstance(result, dict) and result["slept"] == 5.0


def grace_period() -> int:
    spec = deployment(load_manifest())["spec"]["template"]["spec"]
    return int(spec["terminationGracePeriodSeconds"])


def stored_result(images: Images, volume: str, task: str) -> dict[str, Any]:
    """The task's result from the snapshot redis saved into its volume, read
    by a throwaway redis-server in a throwaway container."""
    script = (
        "redis-server --port 0 --unixsocket /tmp/r.sock --dir /data --dbfilename dump.rdb "
        "--save '' --appendonly no --daemonize yes --logfile /tmp/r.log && "
        "for i in $(seq 100); do [ -S /tmp/r.sock ] && break; sleep 0.05; done && "
        f"redis-cli -s /tmp/r.sock --raw GET celery-task-meta-{task}"
    )
    done = podman(
        "run", "--rm", "--volume", f"{volume}:/data", "--entrypoint", "sh",
        images.webapp, "-c", script, timeout=60,
    )  # fmt: skip
    assert done.stdout.strip(), f"no result for {task} in the saved snapshot"
    stored = json.loads(done.stdout)
    assert isinstance(stored, dict)
    return stored
