"""Prometheus exposition: metric families rendered as the text format 0.0.4
or as OpenMetrics 1.0, whichever the scraper's Accept header prefers.

Written here rather than taken from prometheus-client: importing that
package pulls in http.server, urllib.request, ssl and hashlib (its exporter
helpers), about 8 MiB of resident memory that PID 1 would carry for a
formatter this small. The tests read every byte of it back with
prometheus-client's own parsers.

    f = Family("pidone_zombies_reaped", "counter", "Children reaped.")
    f.add((), 3)                       # -> pidone_zombies_reaped_total 3
    body, content_type = render([f], accept="application/openmetrics-text")
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence

TEXT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS_TYPE = "application/openmetrics-text; version=1.0.0; charset=utf-8"

KINDS = ("counter", "gauge")


class Family:
    """One metric family: a name, a kind, a help text, label names and its
    samples. A counter's name is given without `_total` (as OpenMetrics
    names the family); its samples are exposed as NAME_total."""

    __slots__ = ("help", "kind", "labels", "name", "samples")

    def __init__(self, name: str, kind: str, help: str, labels: Sequence[str] = ()) -> None:
        if kind not in KINDS:
            raise ValueError(f"metric kind must be one of {KINDS}: {kind!r}")
        self.name = name
        self.kind = kind
        self.help = help
        self.labels = tuple(labels)
        self.samples: list[tuple[tuple[str, ...], float]] = []

    def add(self, values: Sequence[str], value: float) -> None:
        if len(values) != len(self.labels):
            raise ValueError(f"{self.name}: {len(self.labels)} label values needed, got {values!r}")
        self.samples.append((tuple(values), value))

    @property
    def sample_name(self) -> str:
        return self.name + "_total" if self.kind == "counter" else self.name


def render(families: Iterable[Family], accept: str = "") -> tuple[bytes, str]:
    """(body, content type) for a scraper that sent `accept`."""
    writer, content_type = choose(accept)
    return writer(families), content_type


def choose(accept: str) -> tuple[Callable[[Iterable[Family]], bytes], str]:
    """OpenMetrics when the Accept header names it, the text format otherwise."""
    for part in accept.split(","):
        if part.split(";", 1)[0].strip() == "application/openmetrics-text":
            return render_openmetrics, OPENMETRICS_TYPE
    return render_text, TEXT_TYPE


def render_text(families: Iterable[Family]) -> bytes:
    out: list[str] = []
    for f in families:
        name = f.sample_name  # the text format names a counter family NAME_total too
        out.append(f"# HELP {name} {_escape_help(f.help)}\n# TYPE {name} {f.kind}\n")
        out.extend(_sample_lines(f))
    return "".join(out).encode()


def render_openmetrics(families: Iterable[Family]) -> bytes:
    out: list[str] = []
    for f in families:
        out.append(f"# TYPE {f.name} {f.kind}\n# HELP {f.name} {_escape_value(f.help)}\n")
        out.extend(_sample_lines(f))
    out.append("# EOF\n")
    return "".join(out).encode()


def _sample_lines(f: Family) -> Iterable[str]:
    name = f.sample_name
    for values, value in f.samples:
        if values:
            pairs = ",".join(
                f'{label}="{_escape_value(v)}"' for label, v in zip(f.labels, values, strict=True)
            )
            yield f"{name}{{{pairs}}} {format_value(value)}\n"
        else:
            yield f"{name} {format_value(value)}\n"


def format_value(value: float) -> str:
    """As Prometheus' own Go code writes a float, and as pidone wrote them
    when prometheus-client did (scripts grep for `... 1.0`): always with a
    decimal point or an exponent, the exponent from 1e+06 up."""
    value = float(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    text = repr(value)
    dot = text.find(".")
    if value > 0 and dot > 6:  # 1234567.0 -> 1.234567e+06
        mantissa = (text[0] + "." + text[1:dot] + text[dot + 1 :]).rstrip("0").rstrip(".")
        return f"{mantissa}e+{dot - 1:02d}"
    return text


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _escape_value(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
