"""podman, as the container tests use it: with pidone's own containers.conf
(docker/podman/containers.conf, through CONTAINERS_CONF) and always with a
time limit, so that a stuck podman fails a test instead of hanging CI."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CONTAINERS_CONF = REPO / "docker" / "podman" / "containers.conf"
# Debian's packages that give a working podman on this machine kind: runc
# (podman's default, crun, is not needed), catatonit for a pod's infra
# container, debootstrap for the base image.
APT_PACKAGES = ("podman", "runc", "conmon", "catatonit", "debootstrap")


def environment() -> dict[str, str]:
    env = dict(os.environ)
    env["CONTAINERS_CONF"] = str(CONTAINERS_CONF)
    return env


class PodmanError(Exception):
    """podman failed; the message holds its command line, status and output."""


def podman(
    *args: str,
    timeout: float = 60,
    check: bool = True,
    input: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run `podman ARGS...`, capture its output, fail with both on error."""
    argv = ["podman", *args]
    try:
        done = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=environment(),
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as exc:
        raise PodmanError(f"{' '.join(argv)}: no answer in {timeout} s") from exc
    if check and done.returncode != 0:
        raise PodmanError(
            f"{' '.join(argv)} exited with status {done.returncode}\n"
            f"--- stdout\n{done.stdout}--- stderr\n{done.stderr}"
        )
    return done


def image_exists(name: str) -> bool:
    return podman("image", "exists", name, check=False).returncode == 0


def install_podman() -> None:
    """apt-get install what is missing of APT_PACKAGES (as root)."""
    missing = [p for p in APT_PACKAGES if not _dpkg_installed(p)]
    if not missing:
        return
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for argv in (
        ["apt-get", "update", "-qq"],
        # With podman's recommends (netavark, slirp4netns, uidmap, ...): the
        # set these tests were proven with, though they use no network.
        ["apt-get", "install", "-y", "-qq", *missing],
    ):
        done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=900)
        if done.returncode != 0:
            raise PodmanError(
                f"{' '.join(argv)} exited with status {done.returncode}\n{done.stdout}{done.stderr}"
            )


def _dpkg_installed(package: str) -> bool:
    done = subprocess.run(
        ["dpkg-query", "-W", "-f=${Status}", package], capture_output=True, text=True
    )
    return done.returncode == 0 and "install ok installed" in done.stdout


def have_podman() -> bool:
    return shutil.which("podman") is not None


def remove_containers(names: Sequence[str]) -> None:
    """Remove the named containers (ours), running or not, and their anonymous
    volumes; absent is fine."""
    if names:
        podman(
            "rm", "--force", "--volumes", "--ignore", "--time", "0", *names, check=False, timeout=60
        )


def wait_until(predicate: object, timeout: float, what: str, interval: float = 0.1) -> None:
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)
