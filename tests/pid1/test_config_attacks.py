"""Configuration an operator got wrong, or that was built to hurt: `pidone
check` and `pidone run` (as PID 1 of a fresh namespace) both refuse it with
exit 2 and the file:line, and nothing is started; what they accept runs with
exactly what was asked. And a control client's absurd timeout cannot crash
the loop."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.helpers.running import PIDONE, PYTHON, Init, helper, wait_for
from tests.helpers.stack import Stack
from tests.helpers.users import APP, EXTRA, as_user

WHOAMI = " ".join(helper("whoami.py"))
MARKER = "started"
WEB = '[process.web]\ncommand = "CMD"\n'


def _write(directory: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (directory / name).write_text(text)


def refused_by_check_and_run(directory: Path, expected: str) -> float:
    """Both refuse with exit 2 and `expected` in stderr, start nothing; the
    seconds check took."""
    began = time.monotonic()
    check = subprocess.run(
        [PIDONE, "check"], cwd=directory, capture_output=True, text=True, timeout=60
    )
    took = time.monotonic() - began
    assert (check.returncode, "Traceback" in check.stderr) == (2, False), check.stderr
    assert expected in check.stderr, check.stderr
    with Init("pid1", ["run"], cwd=str(directory)) as init:
        assert init.wait(timeout=60) == 2
        stderr = init.stderr()
    assert expected in stderr, stderr
    assert "Traceback" not in stderr
    assert not (directory / MARKER).exists(), "a process was started"
    return took


def marker_command(directory: Path) -> str:
    return f"touch {directory / MARKER}"


@pytest.mark.parametrize(
    ("body", "line"),
    [
        ("user = 4294967295", 3),  # (uid_t)-1: setresuid(-1) would keep root
        ('user = "4294967295"', 3),
        ("user = 99999999999", 3),
        ('group = "99999999999"', 3),
        ("groups = [1, 4294967295]", 3),
    ],
)
def test_uid_minus_one_and_ids_past_32_bits_are_refused_and_nothing_starts(
    shared: Path, body: str, line: int
) -> None:
    cmd = marker_command(shared)
    _write(shared, {"pidone.toml": f'[process.web]\ncommand = "{cmd}"\n{body}\n'})
    key = body.partition(" ")[0]
    refused_by_check_and_run(
        shared, f"pidone.toml:{line}: [process.web] {key} = {body.partition(' = ')[2]}"
    )


def test_socket_owner_uid_minus_one_is_refused_and_nothing_starts(shared: Path) -> None:
    cmd = marker_command(shared)
    _write(
        shared,
        {
            "pidone.toml": f'[socket.s]\npath = "{shared}/s/s.sock"\nowner = 4294967295\n'
            f'[process.web]\ncommand = "{cmd}"\nsockets = ["s"]\n'
        },
    )
    refused_by_check_and_run(
        shared, "pidone.toml:3: [socket.s] owner = 4294967295: is not a valid id"
    )


def test_the_highest_valid_uid_runs_the_child_as_exactly_that_uid(mode: str, shared: Path) -> None:
    with Stack(mode, shared) as stack:
        stack.start(f'[process.edge]\ncommand = "{WHOAMI}"\nuser = 4294967294\n')
        pattern = "edge"
        wait_for(lambda: "WHOAMI" in stack.stdout_so_far(), what=f"{pattern} to report")
        line = next(ln for ln in stack.stdout_so_far().splitlines() if "WHOAMI" in ln)
        report = json.loads(line.partition("WHOAMI ")[2])
    assert report["status"]["Uid"] == ["4294967294"] * 4
    assert report["status"]["Gid"] == ["4294967294"] * 4
    assert report["status"]["Groups"] == []


# Each: the files, what stderr must say (with file:line). Every one of them
# gave a traceback, a hang or a start that check had let through.
ATTACKS: dict[str, tuple[dict[str, str], str]] = {
    "toml_nested_5000_deep": (
        {"pidone.toml": "x = " + "[" * 5000 + "]" * 5000 + "\n"},
        "pidone.toml:1: arrays or tables nested more than 32 deep",
    ),
    "toml_dotted_key_of_100000_parts": (
        {"pidone.toml": "a" + ".a" * 100_000 + " = 1\n"},
        "pidone.toml:1: a key of more than 32 dotted parts",
    ),
    "env_default_nested_3000_deep": (
        {".env": "A=" + "${A:-" * 3000 + "x" + "}" * 3000 + "\n"},
        ".env:1: A: ${...} nested more than 16 deep",
    ),
    "env_doubling_a_value_40_times": (
        {".env": "A=0123456789ab\n" + "A=${A}${A}\n" * 40},
        ".env:15: A: expands to more than 128 KiB",
    ),
    "env_pattern_removal_scanning_4_mib_to_expand_nothing": (
        {".env": "B=" + "x" * 100_000 + "\n" + "".join(f"V{n}=${{B%%*}}\n" for n in range(60))},
        ".env:42: V40: the expanded values add up to more than 4 MiB",
    ),
    "env_question_mark_form_unset": (
        {".env": "URL=${DATABASE_URL:?set DATABASE_URL in .env}\n"},
        ".env:1: URL: DATABASE_URL is not set: set DATABASE_URL in .env",
    ),
    "ready_target_question_mark_form_unset": (
        {"pidone.toml": WEB + 'ready = "tcp:127.0.0.1:${REDIS_PORT:?no port}"\n'},
        "pidone.toml:3: [process.web] ready = ",
    ),
    "port_key_and_environment_port_both": (
        {"pidone.toml": WEB + 'port = 80\nenvironment = { PORT = "81" }\n'},
        "pidone.toml:3: [process.web] port = 80: and environment.PORT both set PORT",
    ),
    "base_port_not_a_port": (
        {".env": "PORT=http\n"},
        '.env: PORT = "http": not a port number from 1 to 65535',
    ),
    "procfile_continuation_line": (
        {"Procfile": "web: CMD \\\n  --workers 4\n"},
        "Procfile:1: the line ends with a backslash, but a Procfile has no continuation lines",
    ),
    "env_520_kb_with_one_unclosed_quote": (
        {".env": 'A="' + ("x" * 50 + "\n") * 10_400},
        '.env:1: A: the opening " is never closed',
    ),
    "superscript_digits_as_a_signal": (
        {"pidone.toml": '[process.web]\ncommand = "CMD"\nstop_signal = "\u00b9\u2075"\n'},
        'pidone.toml:3: [process.web] stop_signal = "\u00b9\u2075": not a signal name',
    ),
    "superscript_digits_as_a_port": (
        {"pidone.toml": '[process.web]\ncommand = "CMD"\nready = "tcp:localhost:\u00b9\u2075"\n'},
        "pidone.toml:3: [process.web] ready = ",
    ),
    "nul_in_a_toml_command": (
        {"pidone.toml": '[process.web]\ncommand = "CMD\\u0000x"\n'},
        "pidone.toml:2: [process.web] command = ",
    ),
    "nul_in_an_environment_value": (
        {"pidone.toml": '[process.web]\ncommand = "CMD"\nenvironment = { A = "a\\u0000b" }\n'},
        "pidone.toml:3: [process.web] environment = { A = ",
    ),
    "nul_in_a_dotenv_value": (
        {".env": "A=a\0b\n"},
        ".env:1: A: holds a NUL character",
    ),
    "nul_in_a_procfile_command": (
        {"Procfile": "other: CMD\0x\n"},
        "Procfile:1: holds a NUL character",
    ),
    "environment_over_arg_max": (
        {".env": "B=" + "x" * 100_000 + "\n" + "".join(f"V{n}=${{B}}\n" for n in range(30))},
        "Procfile:1: [process.web]: its command line and environment take",
    ),
    "seventy_thousand_groups": (
        {
            "pidone.toml": '[process.web]\ncommand = "CMD"\ngroups = ['
            + ", ".join(str(n) for n in range(70_000))
            + "]\n"
        },
        "pidone.toml:3: [process.web] groups: 70000 groups, more than the",
    ),
    "nofile_above_the_kernels_nr_open": (
        {"pidone.toml": '[process.web]\ncommand = "CMD"\nrlimits = { nofile = 99999999 }\n'},
        "pidone.toml:3: [process.web] rlimits: nofile 99999999 is above the kernel's maximum",
    ),
    "unknown_control_group": (
        {"pidone.toml": '[pidone]\ncontrol_group = "no-such-group-x"\n' + WEB},
        "pidone.toml:2: [pidone] control_group: no group 'no-such-group-x'",
    ),
    "process_named_pidone": (
        {"Procfile": "pidone: CMD\n"},
        'Procfile:1: "pidone" is reserved',
    ),
    "mode_as_a_decimal_integer": (
        {"pidone.toml": '[socket.s]\npath = "/run/h1/s.sock"\nmode = 660\n' + WEB},
        "pidone.toml:3: [socket.s] mode = 660: is read as a decimal number; "
        'write it as "0660" or 0o660',
    ),
    "umask_as_a_decimal_integer": (
        {"pidone.toml": '[process.web]\ncommand = "CMD"\numask = 27\n'},
        "pidone.toml:3: [process.web] umask = 27: is read as a decimal number",
    ),
    "stop_timeout_beyond_epolls_range": (
        {"pidone.toml": '[process.web]\ncommand = "CMD"\nstop_timeout = 3000000\n'},
        "pidone.toml:3: [process.web] stop_timeout = 3000000: must be a number of seconds from 0",
    ),
    "settle_beyond_epolls_range": (
        {"pidone.toml": '[process.web]\ncommand = "CMD"\nready = "settle:9e99"\n'},
        'pidone.toml:3: [process.web] ready = "settle:9e99": must be "settle:SECONDS"',
    ),
}


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_config_attack_exits_2_with_its_line_from_check_and_run(shared: Path, attack: str) -> None:
    files, expected = ATTACKS[attack]
    cmd = marker_command(shared)
    files = {name: text.replace("CMD", cmd) for name, text in files.items()}
    if "Procfile" not in files and "pidone.toml" not in files:
        files["Procfile"] = f"web: {cmd}\n"
    elif "pidone.toml" not in files or "[process." not in files["pidone.toml"]:
        files.setdefault("Procfile", f"web: {cmd}\n")
    _write(shared, files)
    took = refused_by_check_and_run(shared, expected)
    assert took < 10, f"check took {took:.1f} s"  # "it reacted at all": 105 s before


def test_rlimit_above_pidones_own_hard_limit_is_refused_when_it_cannot_raise_it(
    shared: Path,
) -> None:
    _write(
        shared,
        {"pidone.toml": '[process.web]\ncommand = "true"\nrlimits = { nofile = [1024, 8192] }\n'},
    )
    config = str(shared / "pidone.toml")
    lowered = ["prlimit", "--nofile=1024:4096"]
    # As root, check says what setrlimit says (root without CAP_SYS_RESOURCE,
    # as in many containers, may not raise a hard limit either).
    raise_it = "import resource; resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 8192))"
    allowed = subprocess.run([*lowered, PYTHON, "-c", raise_it], capture_output=True, timeout=60)
    as_root = subprocess.run(
        [*lowered, PIDONE, "check", "-c", config], capture_output=True, text=True, timeout=60
    )
    assert as_root.returncode == (0 if allowed.returncode == 0 else 2), as_root.stderr
    # Not root: setrlimit in the child would refuse it, so check and run refuse it.
    for command in ("check", "run"):
        result = as_user(APP, [*lowered, PIDONE, command, "-c", config])
        assert result.returncode == 2, result.stderr
        assert (
            "pidone.toml:3: [process.web] rlimits: nofile 8192 is above pidone's own hard "
            "limit 4096, which only CAP_SYS_RESOURCE may raise; use at most 4096"
        ) in result.stderr


CLIENT = """
import json, socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(20)
s.connect(sys.argv[1])
s.sendall(sys.argv[2].encode() + b"\\n")
data = b""
while chunk := s.recv(65536):
    data += chunk
print(data.decode())
"""


def test_ctl_timeout_of_1e300_from_a_control_group_member_is_refused_and_pid1_lives(
    shared: Path,
) -> None:
    with Stack("pid1", shared) as stack:
        stack.start(f"""
[pidone]
control_group = "{EXTRA}"
[process.slow]
command = "{stack.svc("slow")}"
ready = "file:{shared}/never"
""")
        wait_for(stack.control_socket.exists, what="the control socket")
        stack.wait_for("slow up")
        for timeout in ("1e300", "Infinity", "2592000", "-1"):
            request = f'{{"command": "wait-ready", "args": {{"timeout": {timeout}}}}}'
            result = as_user(APP, [PYTHON, "-c", CLIENT, str(stack.control_socket), request])
            reply = json.loads(result.stdout)
            assert reply["ok"] is False, (timeout, reply)
            assert '"timeout" must be' in reply["error"]
        assert stack.init.proc.poll() is None  # the loop lives
        status = subprocess.run(
            [PIDONE, "ctl", "--socket", str(stack.control_socket), "status"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert status.returncode == 0, status.stderr
        stack.init.signal(signal.SIGTERM)
        assert stack.init.wait() == 0
