"""The images the container tests run, built offline and cached by their inputs.

No image registry is reachable from CI, and no network at all from inside a
container (docker/podman/containers.conf). So:

1. The bases are Debian bookworm root filesystems made by debootstrap from
   the Debian mirror apt uses, `podman import`ed: `bookworm` (python3, and
   the Debian packages the example needs: redis-server, nginx) stands in for
   the official slim Python image, and `bookworm-build` (python3 with gcc,
   libcap-dev, python3-dev, ...) for the same image once the Dockerfiles'
   builder stages have installed their compilers; `bookworm-systemd`
   (Debian's systemd as /sbin/init) is the server examples/site is installed
   on. Either Dockerfile installs a
   Debian package only when the base lacks it, so with these bases no build
   step needs a mirror.
2. The Python packages are downloaded here, on the host (whose Python is the
   bases' /usr/bin/python3, 3.11), into a wheelhouse: wheels, and source
   distributions for python-prctl and uwsgi, which the builder stages compile
   as they would for anyone. The builds see it at /wheels with a pip.conf that
   says `no-index`, both mounted for the build only (`podman build -v`): the
   Dockerfiles are the ones users build, untouched.
3. `podman build --network none` of docker/Dockerfile with BASE and BUILDER
   set to those bases, then of examples/webapp/Dockerfile on top, and of
   tests/container/site-server.Dockerfile (the systemd base, pidone's venv
   from pidone's image, the site by its install.sh; the site's wheels in a
   wheelhouse of their own).

Each image is tagged with a hash of everything it is made from, and rebuilt
only when that changes (podman's layer cache then reuses what it can: the
uwsgi wheel, say, is not compiled again when only pidone's source changed).
Older tags of the same image are removed once a new one is built.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import tomllib

from tests.container.podman import REPO, PodmanError, image_exists, podman

# Bump to rebuild everything (a change of how the images are made).
RECIPE = "3"
SUITE = "bookworm"
# libpython3.11: uwsgi is linked with it (official Python images have one).
RUNTIME_PACKAGES = ("python3", "libpython3.11", "redis-server", "nginx")
BUILD_PACKAGES = (
    "python3",
    "python3-venv",
    "python3-dev",
    "gcc",
    "libc6-dev",
    "libcap-dev",
    "libpcre2-dev",
)
# A server's root filesystem for examples/site: Debian's systemd as its init
# (/sbin/init from systemd-sysv), python3 with venv for the site's venv,
# redis-server (its own unit stays enabled: the server's redis on port 6379;
# the site runs its own under pidone, on a unix socket), and procps (kill, for
# the unit's ExecReload, as on any server).
SYSTEMD_PACKAGES = (
    "python3",
    "python3-venv",
    "systemd",
    "systemd-sysv",
    "redis-server",
    "procps",
)
WEBAPP = REPO / "examples" / "webapp"
SITE = REPO / "examples" / "site"
SITE_DOCKERFILE = REPO / "tests" / "container" / "site-server.Dockerfile"
CACHE = Path(os.environ.get("PIDONE_CONTAINER_CACHE", "/var/cache/pidone-container-tests"))
PREFIX = "localhost/pidone-test"
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class Images:
    base: str  # bookworm + python3 (+ redis-server, nginx): BASE, and nginx's image
    builder: str  # bookworm + python3 + compilers: BUILDER
    pidone: str  # docker/Dockerfile
    webapp: str  # examples/webapp/Dockerfile, on top of pidone
    site: str  # tests/container/site-server.Dockerfile: systemd, pidone, examples/site
    timings: dict[str, float]  # seconds each step took in this run (0: cached)


def log(message: str) -> None:
    print(f"container-images: {message}", file=sys.stderr, flush=True)


def digest(*parts: str | bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        h.update(len(data).to_bytes(8, "big"))
        h.update(data)
    return h.hexdigest()[:16]


def files_digest(paths: Iterable[Path]) -> str:
    """A hash of the files' paths (relative to the repo) and contents; a
    directory stands for every file under it, bytecode and caches excepted."""
    parts: list[str | bytes] = []
    for path in paths:
        found = sorted(path.rglob("*")) if path.is_dir() else [path]
        for f in found:
            if not f.is_file() or "__pycache__" in f.parts or f.suffix == ".pyc":
                continue
            if any(p.endswith(".egg-info") for p in f.parts):
                continue
            parts += [str(f.relative_to(REPO)), f.read_bytes()]
    return digest(*parts)


def debian_mirror() -> str:
    """The Debian mirror apt uses on this machine (its sources), so that
    debootstrap fetches from where apt-get does."""
    sources = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for source in sources:
        try:
            text = source.read_text()
        except OSError:
            continue
        for line in text.splitlines():
            words = line.split()
            if source.suffix == ".sources" and line.startswith("URIs:"):
                candidates = words[1:]
            elif words[:1] == ["deb"]:
                candidates = [w for w in words[1:] if "://" in w][:1]
            else:
                continue
            for uri in candidates:
                if uri.rstrip("/").endswith("/debian"):
                    return uri
    return "http://deb.debian.org/debian"


# ------------------------------------------------------------- the bases ---


def processes_rooted_in(root: Path) -> list[int]:
    """pids of processes whose root directory is `root` (a package's daemon
    that its postinst started inside our chroot, say)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.readlink(entry / "root") == str(root):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def debootstrap(target: Path, packages: tuple[str, ...], mirror: str) -> None:
    debs = CACHE / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    argv = [
        "debootstrap",
        "--variant=minbase",
        f"--include={','.join(packages)}",
        f"--cache-dir={debs}",
        SUITE,
        str(target),
        mirror,
    ]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=1200)
    # No daemon may outlive its install: end whatever runs in this root (ours).
    for pid in processes_rooted_in(target):
        log(f"stopping pid {pid}, started inside {target} by a package")
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, 9)
    if done.returncode != 0:
        log_file = target / "debootstrap" / "debootstrap.log"
        tail = log_file.read_text()[-4000:] if log_file.exists() else ""
        raise PodmanError(
            f"{' '.join(argv)} exited with status {done.returncode}\n"
            f"{done.stdout[-4000:]}{done.stderr[-4000:]}\n{tail}"
        )


def tidy_rootfs(root: Path) -> None:
    """What debootstrap copies from this machine, or leaves behind, goes."""
    for name in ("etc/resolv.conf", "etc/hostname"):
        (root / name).unlink(missing_ok=True)
    (root / "etc/hostname").write_text("localhost\n")
    for cache in ("var/cache/apt/archives", "var/lib/apt/lists"):
        for f in (root / cache).glob("*"):
            if f.is_file():
                f.unlink()
    shutil.rmtree(root / "debootstrap", ignore_errors=True)


def import_rootfs(root: Path, tag: str) -> None:
    tar = subprocess.Popen(
        ["tar", "--numeric-owner", "-C", str(root), "-cf", "-", "."], stdout=subprocess.PIPE
    )
    assert tar.stdout is not None
    try:
        done = subprocess.run(
            [
                "podman",
                "import",
                "--change",
                f"ENV PATH={PATH}",
                "--change",
                'CMD ["/bin/bash"]',
                "-",
                tag,
            ],
            stdin=tar.stdout,
            capture_output=True,
            text=True,
            timeout=600,
            env={**os.environ, "CONTAINERS_CONF": str(REPO / "docker/podman/containers.conf")},
        )
    finally:
        tar.stdout.close()
        tar.wait()
    if done.returncode != 0 or tar.returncode != 0:
        raise PodmanError(f"podman import {tag} failed:\n{done.stdout}{done.stderr}")


def ensure_base(name: str, packages: tuple[str, ...], mirror: str) -> tuple[str, float]:
    key = digest(RECIPE, SUITE, mirror, *packages)
    tag = f"{PREFIX}/{name}:{key}"
    if image_exists(tag):
        return tag, 0.0
    started = time.monotonic()
    log(f"building {tag}: debootstrap {SUITE} from {mirror} with {', '.join(packages)}")
    work = Path(tempfile.mkdtemp(prefix=f"pidone-{name}-", dir="/var/tmp"))
    try:
        root = work / "rootfs"
        debootstrap(root, packages, mirror)
        tidy_rootfs(root)
        import_rootfs(root, tag)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    drop_old_tags(f"{PREFIX}/{name}", keep=tag)
    return tag, time.monotonic() - started


def drop_old_tags(repository: str, keep: str) -> None:
    listed = podman("images", "--format", "{{.Repository}}:{{.Tag}}", repository, check=False)
    for line in listed.stdout.split():
        if line != keep and line.startswith(repository + ":"):
            podman("rmi", line, check=False, timeout=120)


# ---------------------------------------------------- the Python packages ---


def wheelhouse() -> Path:
    """pidone's dependencies and the example's requirements, downloaded with
    this machine's pip for its Debian Python (the bases' own): source
    distributions for the two that compile against Debian libraries."""
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    requirements = (WEBAPP / "requirements.txt").read_text()
    wanted = [
        *pyproject["build-system"]["requires"],
        "wheel",
        *pyproject["project"]["dependencies"],
    ]
    key = digest(RECIPE, sys.version, *wanted, requirements)
    house = CACHE / f"wheels-{key}"
    if (house / ".complete").exists():
        return house
    log(f"downloading pidone's and the example's packages into {house}")
    download(house, [[*wanted], ["-r", str(WEBAPP / "requirements.txt")]])
    (house / ".complete").write_text("")
    for old in CACHE.glob("wheels-*"):
        if old != house:
            shutil.rmtree(old, ignore_errors=True)
    return house


def download(house: Path, requirement_sets: list[list[str]]) -> None:
    """pip download each set into `house`: source distributions for the two
    that compile against Debian libraries, wheels for the rest."""
    house.mkdir(parents=True, exist_ok=True)
    for args in requirement_sets:
        argv = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--disable-pip-version-check",
            "--quiet",
            "--no-binary",
            "python-prctl,uwsgi",
            "--dest",
            str(house),
            *args,
        ]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            raise PodmanError(f"{' '.join(argv)} failed:\n{done.stdout}{done.stderr}")


def site_wheelhouse() -> Path:
    """examples/site's requirements (gunicorn, celery[redis]: pure Python),
    in a wheelhouse of their own, so that the other images keep their keys."""
    requirements = (SITE / "requirements.txt").read_text()
    house = CACHE / f"site-wheels-{digest(RECIPE, sys.version, requirements)}"
    if (house / ".complete").exists():
        return house
    log(f"downloading the site's packages into {house}")
    download(house, [["-r", str(SITE / "requirements.txt")]])
    (house / ".complete").write_text("")
    for old in CACHE.glob("site-wheels-*"):
        if old != house:
            shutil.rmtree(old, ignore_errors=True)
    return house


def pip_conf() -> Path:
    path = CACHE / "pip.conf"
    text = "# for builds only: the wheelhouse, never an index\n[global]\nno-index = true\n"
    text += "find-links = /wheels\ndisable-pip-version-check = true\n"
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
    return path


# ------------------------------------------------------------ the images ---


def ensure(name: str, key: str, dockerfile: Path, house: Path, **args: str) -> tuple[str, float]:
    """PREFIX/NAME:KEY, built unless it exists (older tags of NAME dropped);
    and the seconds its build took (0: it was there)."""
    tag = f"{PREFIX}/{name}:{key}"
    if image_exists(tag):
        return tag, 0.0
    took = build(tag, dockerfile, house, args)
    drop_old_tags(f"{PREFIX}/{name}", keep=tag)
    return tag, took


def build(tag: str, dockerfile: Path, house: Path, args: dict[str, str]) -> float:
    started = time.monotonic()
    argv = [
        "build",
        "--network",
        "none",
        "--layers",
        "--file",
        str(dockerfile),
        "--tag",
        tag,
        "--volume",
        f"{house}:/wheels:ro",
        "--volume",
        f"{pip_conf()}:/etc/pip.conf:ro",
    ]
    for name, value in args.items():
        argv += ["--build-arg", f"{name}={value}"]
    log(f"podman build {dockerfile.relative_to(REPO)} -> {tag}")
    podman(*argv, str(REPO), timeout=1800)
    return time.monotonic() - started


def ensure_images() -> Images:
    CACHE.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    mirror = debian_mirror()
    base, timings["base"] = ensure_base("bookworm", RUNTIME_PACKAGES, mirror)
    builder, timings["builder"] = ensure_base("bookworm-build", BUILD_PACKAGES, mirror)
    house = wheelhouse()

    dockerfile = REPO / "docker" / "Dockerfile"
    key = digest(
        RECIPE,
        base,
        builder,
        house.name,
        files_digest(
            [
                dockerfile,
                REPO / ".dockerignore",
                REPO / "pyproject.toml",
                REPO / "README.md",
                REPO / "src",
            ]
        ),
    )
    pidone, timings["pidone"] = ensure("pidone", key, dockerfile, house, BASE=base, BUILDER=builder)

    webapp_dockerfile = WEBAPP / "Dockerfile"
    key = digest(
        RECIPE,
        pidone,
        builder,
        files_digest(
            [webapp_dockerfile]
            + [WEBAPP / n for n in ("Procfile", "pidone.toml", "uwsgi.ini", "redis.conf")]
            + [WEBAPP / n for n in ("app.py", "tasks.py", "requirements.txt")]
        ),
    )
    webapp, timings["webapp"] = ensure(
        "webapp", key, webapp_dockerfile, house, PIDONE_IMAGE=pidone, BUILDER=builder
    )

    systemd_base, timings["systemd"] = ensure_base("bookworm-systemd", SYSTEMD_PACKAGES, mirror)
    site_house = site_wheelhouse()
    key = digest(
        RECIPE, pidone, systemd_base, site_house.name, files_digest([SITE_DOCKERFILE, SITE])
    )
    site, timings["site"] = ensure(
        "site", key, SITE_DOCKERFILE, site_house, PIDONE_IMAGE=pidone, SYSTEMD_BASE=systemd_base
    )
    return Images(
        base=base, builder=builder, pidone=pidone, webapp=webapp, site=site, timings=timings
    )


if __name__ == "__main__":  # `python -m tests.container.images`: build, print
    from tests.container.podman import install_podman

    started = time.monotonic()
    install_podman()
    built = ensure_images()
    for name in ("base", "builder", "pidone", "webapp", "site"):
        print(f"{name:8} {getattr(built, name)}  ({built.timings.get(name, 0.0):.1f} s)")
    print(f"total {time.monotonic() - started:.1f} s")
