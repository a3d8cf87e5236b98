"""Start/stop waves, cycles and transitive dependents, by graph shape."""

from __future__ import annotations

import graphlib

import pytest

from pidone.config import graph

CHAIN: dict[str, list[str]] = {"web": ["cache"], "cache": ["db"], "db": []}
DIAMOND: dict[str, list[str]] = {
    "top": [],
    "left": ["top"],
    "right": ["top"],
    "bottom": ["left", "right"],
}
INDEPENDENT: dict[str, list[str]] = {"zeta": [], "alpha": [], "mid": []}
# redis <- web, worker; worker <- beat; "metrics" depends on nothing and nothing on it.
FAN_OUT: dict[str, list[str]] = {
    "redis": [],
    "web": ["redis"],
    "worker": ["redis"],
    "beat": ["worker"],
    "metrics": [],
}


@pytest.mark.parametrize(
    ("deps", "start", "stop"),
    [
        (CHAIN, [["db"], ["cache"], ["web"]], [["web"], ["cache"], ["db"]]),
        (
            DIAMOND,
            [["top"], ["left", "right"], ["bottom"]],
            [["bottom"], ["left", "right"], ["top"]],
        ),
        (INDEPENDENT, [["alpha", "mid", "zeta"]], [["alpha", "mid", "zeta"]]),
        (
            FAN_OUT,
            [["metrics", "redis"], ["web", "worker"], ["beat"]],
            # web need not wait for beat; metrics stops at once.
            [["beat", "metrics", "web"], ["worker"], ["redis"]],
        ),
        ({}, [], []),
    ],
    ids=["chain", "diamond", "independent", "fan-out", "empty"],
)
def test_waves(deps: dict[str, list[str]], start: list[list[str]], stop: list[list[str]]) -> None:
    assert graph.start_waves(deps) == start
    assert graph.stop_waves(deps) == stop


def test_a_name_only_named_as_a_dependency_is_a_node() -> None:
    assert graph.start_waves({"web": ["db"]}) == [["db"], ["web"]]
    assert graph.stop_waves({"web": ["db"]}) == [["web"], ["db"]]


def test_iterables_are_read_once() -> None:
    deps = {"web": iter(["db"]), "db": iter([])}
    assert graph.stop_waves(deps) == [["web"], ["db"]]


def test_waves_raise_on_cycles() -> None:
    with pytest.raises(graphlib.CycleError):
        graph.start_waves({"a": ["b"], "b": ["a"]})
    with pytest.raises(graphlib.CycleError):
        graph.stop_waves({"a": ["b"], "b": ["a"]})


@pytest.mark.parametrize(
    ("deps", "cycle"),
    [
        (CHAIN, None),
        (DIAMOND, None),
        ({}, None),
        ({"a": ["a"]}, ["a", "a"]),
        ({"a": ["b"], "b": ["a"]}, ["a", "b", "a"]),
        # Written in any order, the path starts at the smallest name and
        # follows "starts after": c after b after a after c.
        ({"c": ["b"], "b": ["a"], "a": ["c"]}, ["a", "c", "b", "a"]),
        ({"x": ["c"], "c": ["b"], "b": ["a"], "a": ["c"], "free": []}, ["a", "c", "b", "a"]),
    ],
)
def test_find_cycle(deps: dict[str, list[str]], cycle: list[str] | None) -> None:
    assert graph.find_cycle(deps) == cycle


@pytest.mark.parametrize(
    ("deps", "name", "expected"),
    [
        (CHAIN, "db", {"cache", "web"}),
        (CHAIN, "cache", {"web"}),
        (CHAIN, "web", set()),
        (DIAMOND, "top", {"left", "right", "bottom"}),
        (DIAMOND, "left", {"bottom"}),
        (FAN_OUT, "redis", {"web", "worker", "beat"}),
        (FAN_OUT, "metrics", set()),
        (FAN_OUT, "unknown", set()),
        ({"a": ["b"], "b": ["a"]}, "a", {"a", "b"}),  # a cycle reaches itself
    ],
)
def test_dependents(deps: dict[str, list[str]], name: str, expected: set[str]) -> None:
    assert graph.dependents(deps, name) == expected
