"""The app container's capabilities (k8s/pidone-webapp.yaml) are what pidone
needs, and no more: with the manifest's set the example comes up with the
socket as configured and stops quickly; without any one of them it does not.

Each case is the example's image run alone, the way the manifest runs it:
every capability dropped but the ones given, no_new_privs, a read-only root
with /tmp and /run/pidone writable, and fresh volumes for the socket and
redis's data."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator

import pytest
import yaml

from tests.container.images import WEBAPP, Images
from tests.container.podman import podman, remove_containers

pytestmark = [pytest.mark.root, pytest.mark.timeout(300)]

SOCKET_DIR = "/run/pidone-webapp"
READYZ = (
    "import urllib.request as u; print(u.urlopen('http://127.0.0.1:9100/readyz', timeout=2).status)"
)


def manifest_caps() -> list[str]:
    docs = [d for d in yaml.safe_load_all((WEBAPP / "k8s" / "pidone-webapp.yaml").read_text()) if d]
    [dep] = [d for d in docs if d["kind"] == "Deployment"]
    [app] = [c for c in dep["spec"]["template"]["spec"]["containers"] if c["name"] == "app"]
    caps = app["securityContext"]["capabilities"]
    assert caps["drop"] == ["ALL"]
    added = caps["add"]
    assert isinstance(added, list)
    return [str(c) for c in added]


@pytest.fixture
def name() -> Iterator[str]:
    made = f"pidone-test-caps-{uuid.uuid4().hex[:8]}"
    try:
        yield made
    finally:
        remove_containers([made])


def start(images: Images, name: str, caps: list[str]) -> None:
    argv = ["run", "--detach", "--name", name, "--cap-drop", "ALL"]
    for cap in caps:
        argv += ["--cap-add", cap]
    argv += [
        "--security-opt", "no-new-privileges",
        "--read-only", "--tmpfs", "/tmp", "--tmpfs", "/run/pidone",
        "--volume", SOCKET_DIR, "--volume", "/var/lib/redis",
        images.webapp,
    ]  # fmt: skip
    podman(*argv)


def outcome(name: str, timeout: float = 40) -> str:
    """Wait for /readyz to say 200 ("ready"), or say why not: the container
    exited, a process went FATAL, or time ran out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = json.loads(podman("inspect", "--format", "{{json .State}}", name).stdout)
        if state["Status"] != "running":
            return f"exited with status {state['ExitCode']}"
        logs = podman("logs", name, check=False)
        if "FATAL" in logs.stdout + logs.stderr:
            return "a process went FATAL"
        done = podman("exec", name, "python3", "-c", READYZ, check=False)
        if done.stdout.strip() == "200":
            return "ready"
        time.sleep(0.3)
    return "not ready in time"


def socket_modes(name: str) -> str:
    # As nginx's user: root in this container has no DAC_OVERRIDE to look in.
    return podman(
        "exec", "--user", "www-data", name,
        "stat", "-c", "%U:%G %a", SOCKET_DIR, f"{SOCKET_DIR}/uwsgi.sock",
    ).stdout  # fmt: skip


def stop(name: str) -> tuple[float, int]:
    started = time.monotonic()
    podman("stop", "--time", "8", name, timeout=60)
    took = time.monotonic() - started
    return took, int(podman("inspect", "--format", "{{.State.ExitCode}}", name).stdout)


def test_the_manifests_capabilities_are_enough(images: Images, name: str) -> None:
    start(images, name, manifest_caps())
    assert outcome(name) == "ready", podman("logs", name, check=False).stderr[-3000:]
    assert socket_modes(name) == "app:www-data 2750\napp:www-data 660\n"
    took, status = stop(name)
    print(f"the example with {manifest_caps()}: podman stop took {took:.2f} s")
    assert status == 0 and took < 5


@pytest.mark.parametrize("missing", manifest_caps())
def test_each_capability_is_needed(images: Images, name: str, missing: str) -> None:
    start(images, name, [c for c in manifest_caps() if c != missing])
    got = outcome(name)
    if got != "ready":
        print(f"without {missing}: {got}")
        return
    modes = socket_modes(name)
    if modes != "app:www-data 2750\napp:www-data 660\n":
        print(f"without {missing}: the socket is {modes!r}")
        return
    # Up as configured: then stopping it must go wrong (a signal that cannot
    # reach the processes, which are not root's).
    took, status = stop(name)
    print(f"without {missing}: podman stop took {took:.2f} s, status {status}")
    assert took >= 8 or status != 0, f"the example needs no {missing}"
