"""Start and stop order of processes from their `after` lists, pure.

`deps` maps each process to the processes it starts after. A name that only
appears as a dependency is a process too (config rejects unknown names first).
Waves are for planning and for `pidone check`; the supervisor still starts a
process only when everything in its `after` is ready.
"""

from __future__ import annotations

import graphlib
from collections.abc import Iterable, Mapping


def start_waves(deps: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """Group processes into waves: each wave needs only earlier ones, so its
    members can start together. Each wave is sorted. Raises graphlib.CycleError."""
    return _waves(_sorter({name: set(after) for name, after in deps.items()}))


def stop_waves(deps: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """The reverse dependency order: a process stops once everything that
    depends on it has stopped. Computed on the reversed graph, not by
    reversing start_waves, so an independent process stops in the first wave
    instead of waiting for unrelated chains. Raises graphlib.CycleError."""
    return _waves(_sorter(_reverse(deps)))


def find_cycle(deps: Mapping[str, Iterable[str]]) -> list[str] | None:
    """One dependency cycle as a path in the "starts after" direction, from
    its smallest name back to itself (["a", "b", "a"]: a after b after a);
    None when there is none."""
    try:
        _sorter({name: set(after) for name, after in deps.items()})
    except graphlib.CycleError as exc:
        # graphlib lists each node before the node that depends on it.
        loop: list[str] = list(reversed(exc.args[1]))[:-1]
        first = loop.index(min(loop))
        path = loop[first:] + loop[:first]
        return [*path, path[0]]
    return None


def dependents(deps: Mapping[str, Iterable[str]], name: str) -> set[str]:
    """Every process that depends on `name`, directly or through others: what
    has to be stopped before `name` restarts and started again after it."""
    reverse = _reverse(deps)
    found: set[str] = set()
    todo = [name]
    while todo:
        for user in reverse.get(todo.pop(), ()):
            if user not in found:
                found.add(user)
                todo.append(user)
    return found


def needed(deps: Mapping[str, Iterable[str]], names: Iterable[str]) -> set[str]:
    """`names` and everything they are `after`, directly or through others:
    what `pidone run NAME...` starts."""
    found = set(names)
    todo = list(found)
    while todo:
        for dep in deps.get(todo.pop(), ()):
            if dep not in found:
                found.add(dep)
                todo.append(dep)
    return found


def _sorter(graph: Mapping[str, Iterable[str]]) -> graphlib.TopologicalSorter[str]:
    sorter: graphlib.TopologicalSorter[str] = graphlib.TopologicalSorter()
    for name in sorted(graph):
        sorter.add(name, *sorted(graph[name]))
    sorter.prepare()
    return sorter


def _waves(sorter: graphlib.TopologicalSorter[str]) -> list[list[str]]:
    waves: list[list[str]] = []
    while sorter.is_active():
        wave = sorted(sorter.get_ready())
        sorter.done(*wave)
        waves.append(wave)
    return waves


def _reverse(deps: Mapping[str, Iterable[str]]) -> dict[str, set[str]]:
    """name -> the processes that start after it (every name gets an entry)."""
    reverse: dict[str, set[str]] = {name: set() for name in deps}
    for name, after in deps.items():
        for dep in after:
            reverse.setdefault(dep, set()).add(name)
    return reverse
