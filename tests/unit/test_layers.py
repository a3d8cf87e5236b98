"""The layers of src/pidone, held from the code itself (ast, no import):

- core/ imports only config's specs (and graph), errors, signames and itself;
- only system/ calls fork, exec, kill, waitpid, chown, setuid, prctl or
  binds a socket;
- system/ is the bottom: it imports nothing of pidone but errors;
- config/ is pure: no runtime, control, observe, single or core; its diff
  (ctl reread, update) reads only the specs, for the core to use it;
- observe/ reads snapshots: no supervisor, runtime, control or config;
- single/ imports nothing of the supervisor: no core.supervisor, runtime,
  control or config.
- convert/ (`pidone import`) is pure: text in, text out; of pidone it imports
  only itself, config's specs, values, procfile (the name rule) and command
  (does a command need the shell?), signames and errors.

Imports under `if TYPE_CHECKING:` never run and are left out. What must stay
outside its room for now is in ALLOWED, each with the reason and where it
goes; an entry that no longer matches fails too, so the list only shrinks.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "pidone"

# The calls that change processes, identities or sockets: os.<name>(...).
OS_CALLS = frozenset(
    ("fork", "forkpty", "execv", "execve", "execvp", "execvpe", "execl", "execle", "execlp",
     "execlpe", "posix_spawn", "posix_spawnp", "kill", "killpg", "waitpid", "waitid", "wait",
     "wait3", "wait4", "chown", "fchown", "lchown", "setuid", "setgid", "setresuid", "setresgid",
     "seteuid", "setegid", "setreuid", "setregid", "setgroups", "initgroups")
)  # fmt: skip
PRCTL = frozenset({"prctl", "_prctl"})  # any call into python-prctl
SUBPROCESS = frozenset({"Popen", "run", "call", "check_call", "check_output"})

# (module, what) pairs allowed outside their room for now. `what` is an
# imported module for the import rules, "os.NAME"/"bind" for the call rule.
ALLOWED: dict[tuple[str, str], str] = {
    # pidone check asks the kernel what setrlimit would refuse (nr_open,
    # CAP_SYS_RESOURCE): read-only, at check time, in a function.
    ("pidone.config.identity", "pidone.system.privileges"): "has_effective_capability",
    ("pidone.config.identity", "pidone.system.proc"): "nr_open",
}


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, ast.Module]:
    return {module_name(p): ast.parse(p.read_text(), str(p)) for p in sorted(SRC.rglob("*.py"))}


def _runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node that runs: all but the bodies of `if TYPE_CHECKING:`."""
    found: list[ast.AST] = []
    todo = [tree]
    while todo:
        node = todo.pop()
        found.append(node)
        for child in ast.iter_child_nodes(node):
            if (
                isinstance(child, ast.If)
                and isinstance(child.test, ast.Name)
                and child.test.id == "TYPE_CHECKING"
            ):
                todo.extend(child.orelse)
                continue
            todo.append(child)
    return found


def imports_of(tree: ast.AST, known: set[str]) -> set[str]:
    """The pidone modules `tree` imports when it runs (`from pidone.x import y`
    counts as pidone.x.y when that is a module)."""
    found: set[str] = set()
    for node in _runtime_nodes(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("pidone"))
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("pidone"):
            base = node.module or ""
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in known else base)
    return {m for m in found if m != "pidone"}  # the package itself: __version__


def os_calls_of(tree: ast.AST) -> set[str]:
    """The calls of OS_CALLS, prctl, subprocess and socket bind that `tree` makes."""
    found: set[str] = set()
    imported: dict[str, str] = {}  # from os import kill -> kill: os.kill
    for node in _runtime_nodes(tree):
        if isinstance(node, ast.ImportFrom) and node.module in ("os", "subprocess"):
            for alias in node.names:
                imported[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    for node in _runtime_nodes(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Attribute):
            owner = func.value.id if isinstance(func.value, ast.Name) else None
            if owner == "os" and func.attr in OS_CALLS:
                found.add(f"os.{func.attr}")
            elif owner in PRCTL or (owner == "subprocess" and func.attr in SUBPROCESS):
                found.add(f"{owner}.{func.attr}")
            elif func.attr == "bind":
                found.add("bind")
        elif isinstance(func, ast.Name) and func.id in imported:
            name = imported[func.id]
            if name.partition(".")[2] in OS_CALLS | SUBPROCESS:
                found.add(name)
    return found


def in_room(module: str, room: str) -> bool:
    return module == room or module.startswith(room + ".")


# room -> (may import, must not import); an empty `may` means no whitelist.
IMPORT_RULES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    # graph: the pure dependency order over names (waves, dependents).
    "pidone.core": (
        ("pidone.core", "pidone.config.specs", "pidone.config.graph", "pidone.errors",
         "pidone.signames", "pidone.config.diff"),
        (),
    ),
    "pidone.system": (("pidone.system", "pidone.errors"), ()),
    "pidone.config": (
        (),
        ("pidone.core", "pidone.system", "pidone.runtime", "pidone.control", "pidone.observe",
         "pidone.single"),
    ),
    "pidone.config.diff": (("pidone.config.specs",), ()),
    "pidone.observe": (
        (),
        ("pidone.core.supervisor", "pidone.runtime", "pidone.control", "pidone.config"),
    ),
    "pidone.single": (
        (),
        ("pidone.core.supervisor", "pidone.runtime", "pidone.control", "pidone.config"),
    ),
    "pidone.convert": (
        ("pidone.convert", "pidone.config.specs", "pidone.config.values",
         "pidone.config.procfile", "pidone.config.command", "pidone.signames", "pidone.errors"),
        (),
    ),
}  # fmt: skip


def import_breaches(trees: dict[str, ast.Module]) -> set[tuple[str, str]]:
    known = set(trees)
    breaches = set()
    for module, tree in trees.items():
        for room, (may, must_not) in IMPORT_RULES.items():
            if not in_room(module, room):
                continue
            for imported in imports_of(tree, known):
                allowed = not may or any(in_room(imported, m) for m in may)
                if not allowed or any(in_room(imported, m) for m in must_not):
                    breaches.add((module, imported))
    return breaches


def call_breaches(trees: dict[str, ast.Module]) -> set[tuple[str, str]]:
    return {
        (module, call)
        for module, tree in trees.items()
        if not in_room(module, "pidone.system")
        for call in os_calls_of(tree)
    }


def test_each_room_imports_only_what_its_layer_allows() -> None:
    breaches = import_breaches(modules()) - set(ALLOWED)
    assert not breaches, sorted(breaches)


def test_only_system_forks_execs_signals_reaps_chowns_setuids_or_binds() -> None:
    breaches = call_breaches(modules()) - set(ALLOWED)
    assert not breaches, sorted(breaches)


def test_every_allowed_exception_is_still_needed() -> None:
    trees = modules()
    stale = set(ALLOWED) - import_breaches(trees) - call_breaches(trees)
    assert not stale, f"no longer needed, remove from ALLOWED: {sorted(stale)}"


# The scanner itself, on code written to break each rule: a rule that finds
# nothing here would pass anything.
@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("import os\nos.kill(1, 9)", {"os.kill"}),
        ("from os import killpg as k\nk(5, 9)", {"os.killpg"}),
        ("def f(s):\n    s.bind(('127.0.0.1', 0))", {"bind"}),
        ("import _prctl\n_prctl.prctl(1, 2)", {"_prctl.prctl"}),
        ("import os\ndef child():\n    os.setresuid(1, 1, 1)\n    os.execve('x', [], {})",
         {"os.setresuid", "os.execve"}),
        ("TYPE_CHECKING = False\nif TYPE_CHECKING:\n    import os\nx = 1", set()),
    ],
)  # fmt: skip
def test_the_call_scanner_finds_each_forbidden_call(source: str, expected: set[str]) -> None:
    assert os_calls_of(ast.parse(source)) == expected


def test_the_import_rules_catch_a_core_that_imports_the_loop() -> None:
    trees = {
        "pidone.core.supervisor": ast.parse("from pidone.runtime import loop"),
        "pidone.single.init": ast.parse("def f():\n    from pidone.core import supervisor"),
        "pidone.observe.metrics": ast.parse(
            "TYPE_CHECKING = False\nif TYPE_CHECKING:\n    from pidone.control import server"
        ),
        "pidone.runtime.loop": ast.parse(""),
        "pidone.config.load": ast.parse(""),
        "pidone.convert.write": ast.parse("from pidone.config.load import load"),
    }
    assert import_breaches(trees) == {
        ("pidone.core.supervisor", "pidone.runtime.loop"),
        ("pidone.single.init", "pidone.core.supervisor"),
        ("pidone.convert.write", "pidone.config.load"),
    }
