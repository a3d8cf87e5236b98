"""pidone's image (docker/Dockerfile), run by podman: pidone as PID 1 of a
real container, as `docker run IMAGE -- CMD` would run it."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.container.images import Images
from tests.container.podman import podman, remove_containers, wait_until

# A first run builds the images before any test (conftest), but give each test
# room for a slow podman on a busy 2-core machine.
pytestmark = [pytest.mark.root, pytest.mark.timeout(300)]


class Containers:
    """Names for the containers a test starts; all removed at its end."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def name(self, what: str) -> str:
        name = f"pidone-test-{what}-{uuid.uuid4().hex[:8]}"
        self.names.append(name)
        return name


@pytest.fixture
def containers() -> Iterator[Containers]:
    made = Containers()
    try:
        yield made
    finally:
        remove_containers(made.names)


def logs(name: str) -> str:
    done = podman("logs", name, check=False)
    return done.stdout + done.stderr


def exit_code(name: str) -> int:
    return int(podman("inspect", "--format", "{{.State.ExitCode}}", name).stdout.strip())


def run_detached(containers: Containers, what: str, image: str, *argv: str) -> str:
    name = containers.name(what)
    podman("run", "--detach", "--name", name, image, *argv)
    return name


def test_image_layout(images: Images) -> None:
    """OCI labels; ENTRYPOINT pidone, CMD run; no compiler in the runtime stage."""
    [info] = json.loads(podman("image", "inspect", images.pidone).stdout)
    config = info["Config"]
    assert config["Entrypoint"] == ["pidone"]
    assert config["Cmd"] == ["run"]
    assert config["WorkingDir"] == "/app"
    labels = config["Labels"]
    assert labels["org.opencontainers.image.title"] == "pidone"
    for key in ("version", "revision", "licenses", "description"):
        assert labels[f"org.opencontainers.image.{key}"], key
    done = podman(
        "run",
        "--rm",
        images.pidone,
        "--",
        "sh",
        "-c",
        "for c in gcc cc c99 ld as; do command -v $c; done; "
        "pidone --version; test $$ != 1 && cat /proc/1/cmdline | tr '\\0' ' '",
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("pidone "), lines  # and no compiler before it
    assert lines[1].split()[1:3] == ["/opt/pidone/bin/pidone", "--"], lines


def test_exit_status_passed_on(images: Images) -> None:
    done = podman("run", "--rm", images.pidone, "--", "sh", "-c", "exit 3", check=False)
    assert done.returncode == 3, done.stderr
    done = podman("run", "--rm", images.pidone, "--", "sh", "-c", "kill -USR1 $$", check=False)
    assert done.returncode == 128 + 10, done.stderr


ORPHANS = r"""
# 40 orphans: each `sh -c` exits at once, leaving its sleep to PID 1. The
# sleeps outlive the count by far (a loaded machine starts 40 shells slowly);
# then they are ended by pid, and PID 1 must reap every one.
for i in $(seq 40); do sh -c 'sleep 60 & echo $! >> /tmp/orphans'; done
orphaned=0
for pid in $(cat /tmp/orphans); do
    ppid=$(awk '/^PPid:/ {print $2}' /proc/$pid/status 2>/dev/null)
    [ "$ppid" = 1 ] && orphaned=$((orphaned + 1))
done
kill $(cat /tmp/orphans)
sleep 1   # pidone has reaped them by now
zombies=0; left=0
for status in /proc/[0-9]*/status; do
    grep -q '^State:.*Z' "$status" 2>/dev/null && zombies=$((zombies + 1))
done
for pid in $(cat /tmp/orphans); do [ -e /proc/$pid ] && left=$((left + 1)); done
echo "orphaned=$orphaned zombies=$zombies left=$left"
"""


def test_orphans_reaped(images: Images) -> None:
    """Orphans of the child are re-parented to pidone (PID 1), which reaps
    them: no zombie is left in the container."""
    done = podman("run", "--rm", images.pidone, "--", "sh", "-c", ORPHANS)
    assert done.stdout.strip().splitlines()[-1] == "orphaned=40 zombies=0 left=0", done


WAIT_FOR_TERM = "trap 'echo got TERM; exit 7' TERM; echo ready; sleep infinity & wait"


@pytest.mark.parametrize(
    ("argv", "status"),
    [
        (["--", "sh", "-c", WAIT_FOR_TERM], 7),  # the child's own exit code
        (["--", "sleep", "infinity"], 128 + 15),  # killed by SIGTERM: 143
    ],
    ids=["child-exits-7", "child-killed-143"],
)
def test_podman_stop_is_quick(
    images: Images, containers: Containers, argv: list[str], status: int
) -> None:
    """`podman stop -t 10` sends SIGTERM to PID 1; pidone passes it on and
    exits with the child's status at once, long before podman's SIGKILL."""
    name = run_detached(containers, "stop", images.pidone, *argv)
    if argv[-1] == WAIT_FOR_TERM:
        wait_until(lambda: "ready" in logs(name), 30, "the child's trap")
    else:
        time.sleep(0.5)
    started = time.monotonic()
    podman("stop", "--time", "10", name, timeout=30)
    took = time.monotonic() - started
    print(f"podman stop -t 10 ({argv[1:]}): {took:.2f} s, exit status {exit_code(name)}")
    assert took < 2.0
    assert exit_code(name) == status
    assert podman("wait", name).stdout.strip() == str(status)


def test_podman_stop_without_pidone_waits_for_the_kill(
    images: Images, containers: Containers
) -> None:
    """The control: `sleep` as PID 1 has no SIGTERM handler, so the kernel
    drops the signal and podman waits out the timeout, then SIGKILLs (137)."""
    name = containers.name("nopidone")
    podman("run", "--detach", "--name", name, "--entrypoint", "sleep", images.pidone, "infinity")
    time.sleep(0.5)
    started = time.monotonic()
    podman("stop", "--time", "2", name, timeout=30)
    took = time.monotonic() - started
    print(f"podman stop -t 2 of sleep as PID 1: {took:.2f} s")
    assert took >= 2.0
    assert exit_code(name) == 137


def test_podman_kill_hup_reaches_the_child(images: Images, containers: Containers) -> None:
    script = (
        "trap 'echo got HUP; touch /tmp/hup' HUP; echo ready; "
        "while [ ! -e /tmp/hup ]; do sleep 0.05; done; echo done; exit 5"
    )
    name = run_detached(containers, "hup", images.pidone, "--", "sh", "-c", script)
    wait_until(lambda: "ready" in logs(name), 30, "the child's trap")
    podman("kill", "--signal", "HUP", name)
    wait_until(lambda: "done" in logs(name), 10, "the child to get SIGHUP")
    assert logs(name).split() == ["ready", "got", "HUP", "done"]
    assert podman("wait", name, timeout=30).stdout.strip() == "5"


def test_pidone_run_as_a_user_without_privileges(
    images: Images, containers: Containers, tmp_path: Path
) -> None:
    """The image's default command, `pidone run`, with the app's Procfile in
    /app, run as an arbitrary uid (`--user`, `runAsNonRoot`): it runs the
    processes as that user, without the control socket it cannot make in
    /run/pidone, and exits with the control process's status."""
    tmp_path.chmod(0o755)
    (tmp_path / "Procfile").write_text(
        "hello: sh -c 'echo hello from $(id -u):$(id -g); sleep 0.5; exit 4'\n"
    )
    (tmp_path / "pidone.toml").write_text('[process.hello]\nrestart = "never"\ncontrol = true\n')
    for f in tmp_path.iterdir():
        f.chmod(0o644)
    done = podman(
        "run", "--rm", "--user", "4321:4321", "--volume", f"{tmp_path}:/app:ro",
        images.pidone, check=False, timeout=60,
    )  # fmt: skip
    out = done.stdout + done.stderr
    assert "hello from 4321:4321" in out, out
    assert done.returncode == 4, out
