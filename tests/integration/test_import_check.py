"""What `pidone import` writes passes the real `pidone check`, for every
fixture in tests/fixtures/import/ (the seeds' configs and ours), and for
tests/fixtures/import-include/ (its programs in the files [include] names).

The seeds name directories this machine lacks (/srv/www/djangosite/...):
check runs where they exist, in a mount namespace of its own
(tests/helpers/made_dirs.py), so that check's verdict is about the files.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import tomllib

from tests.helpers.running import HELPERS, PIDONE, PYTHON, require_root

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "import"
ENV = {**os.environ, "REDIS_PORT": "6399", "WEB_PORT": "8999", "HOME": "/root"}


def imported(source: Path, out: Path) -> dict[str, str]:
    result = subprocess.run(
        [PIDONE, "import", str(source), "-o", str(out)],
        capture_output=True, text=True, timeout=30, env=ENV,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return {name: (out / name).read_text() for name in ("Procfile", "pidone.toml")}


@pytest.mark.parametrize("name", sorted(p.name for p in FIXTURES.iterdir()))
def test_every_imported_fixture_passes_pidone_check(name: str, tmp_path: Path) -> None:
    check_imported(FIXTURES / name, tmp_path)


def test_an_imported_config_whose_programs_are_in_its_include_passes_pidone_check(
    tmp_path: Path,
) -> None:
    # supervisord.conf + conf.d/*.conf: the programs come from the included files
    stdout = check_imported(FIXTURES.parent / "import-include" / "supervisord.conf", tmp_path)
    assert "1. redis\n  2. web\n" in stdout


def check_imported(source: Path, tmp_path: Path) -> str:
    """`pidone import source`, then `pidone check` on what it wrote; check's stdout."""
    require_root()  # the mount namespace
    files = imported(source, tmp_path / "out")
    processes = tomllib.loads(files["pidone.toml"]).get("process", {})
    dirs = sorted({str(p["directory"]) for p in processes.values() if "directory" in p})
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"dirs": dirs, "files": files, "argv": [PIDONE, "check"]}))
    result = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", PYTHON, str(HELPERS / "made_dirs.py"),
         str(spec)],
        capture_output=True, text=True, timeout=60, env=ENV,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("start order")
    return result.stdout
