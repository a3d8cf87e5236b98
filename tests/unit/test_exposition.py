"""pidone's Prometheus exposition, read back with prometheus-client's own
parsers for both formats (the reference implementation is the oracle)."""

from __future__ import annotations

import math
import random

import pytest
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families as text_families

from pidone.exposition import (
    OPENMETRICS_TYPE,
    TEXT_TYPE,
    Family,
    format_value,
    render,
    render_openmetrics,
    render_text,
)


def families() -> list[Family]:
    reaped = Family("pidone_zombies_reaped", "counter", "Children reaped.")
    reaped.add((), 17)
    state = Family(
        "pidone_process_state",
        "gauge",
        'The "state"\\ (one-hot)\nper process.',
        ("process", "state"),
    )
    state.add(("web", "ready"), 1)
    state.add(('we"ir\\d\nname', "ready"), 0)
    took = Family("pidone_scrape_duration_seconds", "gauge", "Seconds.")
    took.add((), 0.0123)
    empty = Family("pidone_process_exits", "counter", "Exits.", ("process", "status"))
    return [reaped, state, took, empty]


def samples(parsed: object) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in parsed:  # type: ignore[attr-defined]
        for s in family.samples:
            out[s.name, tuple(sorted(s.labels.items()))] = s.value
    return out


def test_text_format_round_trips_through_the_reference_parser() -> None:
    text = render_text(families()).decode()
    parsed = list(text_families(text))
    kinds = {f.name: f.type for f in parsed}
    assert kinds["pidone_zombies_reaped"] == "counter"
    assert kinds["pidone_process_state"] == "gauge"
    assert "# TYPE pidone_zombies_reaped_total counter\n" in text
    docs = {f.name: f.documentation for f in parsed}
    assert docs["pidone_process_state"] == 'The "state"\\ (one-hot)\nper process.'
    assert samples(parsed) == {
        ("pidone_zombies_reaped_total", ()): 17.0,
        ("pidone_process_state", (("process", "web"), ("state", "ready"))): 1.0,
        ("pidone_process_state", (("process", 'we"ir\\d\nname'), ("state", "ready"))): 0.0,
        ("pidone_scrape_duration_seconds", ()): 0.0123,
    }


def test_openmetrics_round_trips_through_the_reference_parser() -> None:
    text = render_openmetrics(families()).decode()
    assert text.endswith("# EOF\n")
    # strict: raises on any format error (and has no type hints)
    parsed = list(openmetrics_families(text))  # type: ignore[no-untyped-call]
    kinds = {f.name: f.type for f in parsed}
    assert kinds == {
        "pidone_zombies_reaped": "counter",
        "pidone_process_state": "gauge",
        "pidone_scrape_duration_seconds": "gauge",
        "pidone_process_exits": "counter",
    }
    assert samples(parsed)["pidone_zombies_reaped_total", ()] == 17.0
    docs = {f.name: f.documentation for f in parsed}
    assert docs["pidone_process_state"] == 'The "state"\\ (one-hot)\nper process.'


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        ("", TEXT_TYPE),
        ("text/plain", TEXT_TYPE),
        (
            "application/openmetrics-text; version=1.0.0,text/plain;version=0.0.4;q=0.5",
            OPENMETRICS_TYPE,
        ),
        ("text/plain;q=0.9, application/openmetrics-text;version=0.0.1", OPENMETRICS_TYPE),
        ("application/json", TEXT_TYPE),
    ],
)
def test_the_accept_header_chooses_the_format(accept: str, expected: str) -> None:
    body, content_type = render(families(), accept)
    assert content_type == expected
    assert body.endswith(b"# EOF\n") == (expected == OPENMETRICS_TYPE)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (3, "3.0"),
        (True, "1.0"),
        (0, "0.0"),
        (-2, "-2.0"),
        (0.25, "0.25"),
        (123456.0, "123456.0"),
        (1234567.0, "1.234567e+06"),
        (1700000000.25, "1.70000000025e+09"),
        (1e20, "1e+20"),
        (1e-7, "1e-07"),
        (math.inf, "+Inf"),
        (-math.inf, "-Inf"),
        (math.nan, "NaN"),
    ],
)
def test_values(value: float, text: str) -> None:
    assert format_value(value) == text


def test_a_wrong_number_of_label_values_or_kind_is_refused() -> None:
    f = Family("x", "gauge", "X.", ("a",))
    with pytest.raises(ValueError, match="1 label values needed"):
        f.add(("1", "2"), 1)
    with pytest.raises(ValueError, match="kind"):
        Family("x", "histogram", "X.")


def test_values_are_written_as_prometheus_client_wrote_them() -> None:
    # pidone used to expose through prometheus-client: scripts and dashboards
    # may match its text exactly, so its writer is the oracle here.
    from prometheus_client.utils import floatToGoString

    rng = random.Random(8)
    values = [rng.random() * 10 ** rng.randint(-8, 16) for _ in range(20000)]
    values += [float(n) for n in range(-3, 3)] + [10.0**k for k in range(-8, 17)]
    expected = [floatToGoString(v) for v in values]  # type: ignore[no-untyped-call]
    assert [format_value(v) for v in values] == expected
