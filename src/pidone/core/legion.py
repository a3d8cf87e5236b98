"""One legion's lease, pure: times in (the monotonic clock), decisions out.

    lease = Lease(spec.name, spec.ttl)
    lease, send, changes = due(lease, now)           # at every event: what to ask redis
    lease, changes = answered(lease, reply, now)     # redis's answer to `send` (by its id)
    lease.allows(now, stop_timeout)                  # may the legion processes run?
    lease.must_stop_by()                             # down by then (None: not lord)

One request at a time, each with a deadline: ACQUIRE (not lord: announce
ourselves as a candidate and take it if we are the best live one; also
says who holds it), LOOK (the same, but a lease redis lost with its data,
a redis restarted empty, is not taken: within a ttl of seeing it held, its
lord may still run by its own clock; one that expired or was released is),
RENEW (lord: compare-and-set PEXPIRE), RELEASE (at pidone's shutdown, once
the legion processes are down: compare-and-delete).
The redis side (the scripts, the connection) is system/redis.py's.

Safety before liveness: the lease is ours until `sent + ttl`, where `sent`
is when the request that set it went out, measured here; nothing redis says
about its remaining time is believed. The legion processes must be down
`margin` before that (config.specs.legion_margin), so their stop begins
their stop_timeout earlier still. A reply after its deadline is a failure:
its answer is dropped, as is any answer whose id is not the request's.
Unreachable, slow or garbled: no lordship won, and a lord keeps its lease
only as long as its last renewal measured.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace

from pidone.config.specs import legion_margin

STANDBY_POLL = 0.5  # seconds between a standby's asks: takeover within this of a release
RETRY = 0.5  # seconds after a failed request before the next (never later than ttl/3)


class Kind(enum.Enum):
    ACQUIRE = "acquire"  # and take it if free and we are the best live candidate
    LOOK = "look"  # the same, but not a lease redis lost (a holder was seen within a ttl)
    RENEW = "renew"
    RELEASE = "release"


class Change(enum.Enum):
    """The lease changes counted (pidone_legion_lease_changes_total{change})."""

    ACQUIRED = "acquired"
    LOST = "lost"  # not renewed in time, or redis says another holds it
    RELEASED = "released"


@dataclass(frozen=True)
class Send:
    """A request for the loop to carry out, answered by a Reply with its id."""

    id: int
    kind: Kind
    sent: float  # monotonic: when it was handed out
    deadline: float  # an answer after this is a failure


@dataclass(frozen=True)
class Reply:
    """Redis's answer: `error` set when there was none (unreachable, a
    garbled or oversized reply, a timeout); else `held`: the lease is ours
    (ACQUIRE, RENEW) or was deleted (RELEASE), and `holder`: who holds it,
    for display ("" nobody)."""

    id: int
    held: bool = False
    holder: str = ""
    error: str = ""


@dataclass(frozen=True)
class Lease:
    name: str
    ttl: float
    lord: bool = False
    expires: float = 0.0  # lord: the lease's end as measured (sent + ttl)
    holder: str = ""  # who holds it, as last seen; "" nobody (or not known)
    problem: str = ""  # redis unreachable: why; "" it answered last time
    pending: Send | None = None
    next_at: float = 0.0  # the next request
    ids: int = 0
    # When another was last seen holding it: a lease lost with redis's data
    # since (restarted empty) is not taken before this + ttl, while that
    # lord may still run by its own clock (one that expired or was released
    # may be taken at once: system/redis.py's epoch key tells them apart).
    held_seen: float | None = None
    releasing: bool = False  # pidone's shutdown: release, then nothing more
    done: bool = False  # released (or nothing to release): no more requests

    @property
    def period(self) -> float:
        """The lord's renewals: every ttl/3, each waiting at most that long."""
        return self.ttl / 3

    @property
    def margin(self) -> float:
        return legion_margin(self.ttl)

    def must_stop_by(self) -> float | None:
        """When the legion processes must be down (SIGKILL at the latest);
        after a loss still the end of the lease last measured."""
        return self.expires - self.margin if self.expires else None

    def allows(self, now: float, stop_timeout: float) -> bool:
        """May a legion process with this stop_timeout run (or keep running)?"""
        if not self.lord or self.releasing:
            return False
        return now < self.expires - self.margin - stop_timeout

    def deadlines(self, stop_timeouts: tuple[float, ...]) -> list[float]:
        """When due() has something to do, or allows() changes."""
        times = [self.pending.deadline if self.pending is not None else self.next_at]
        if self.lord:
            end = self.expires - self.margin
            times += [end] + [end - t for t in stop_timeouts]
        return [] if self.done else times

    def standing(self) -> str:
        """What a legion process not running for it says: standby, or why."""
        if self.problem:
            return f"no lord: redis unreachable ({self.problem})"
        if self.holder:
            return f"standby: legion {self.name} is held by {self.holder}"
        return f"standby: legion {self.name} has no lord yet"


def _lose(lease: Lease, changes: list[Change]) -> Lease:
    """No longer lord; `expires` stays: what still runs must be down by then."""
    changes.append(Change.LOST)
    return replace(lease, lord=False)


def due(
    lease: Lease, now: float, *, release: bool = False
) -> tuple[Lease, Send | None, list[Change]]:
    """The lease at `now`: expired locally, a request late, the next one due.
    `release`: pidone is stopping and the legion processes are down."""
    changes: list[Change] = []
    if lease.done:
        return lease, None, changes
    if lease.lord and now >= lease.expires - lease.margin:
        lease = _lose(lease, changes)  # not renewed in time: not ours any more
    pending = lease.pending
    if pending is not None and now >= pending.deadline:
        late = f"no reply within {pending.deadline - pending.sent:.3g} s"
        lease = replace(lease, pending=None, next_at=now, problem=late)
        if pending.kind is Kind.RELEASE:
            return replace(lease, done=True), None, changes  # it expires on its own
    if release and not lease.releasing:
        lease = replace(lease, releasing=True, next_at=now)
    if lease.pending is not None or now < lease.next_at:
        return lease, None, changes
    # Releasing also when not lord: a late ACQUIRE may have won it.
    kind = Kind.RELEASE if lease.releasing else Kind.RENEW if lease.lord else Kind.ACQUIRE
    if kind is Kind.ACQUIRE and lease.held_seen is not None and now < lease.held_seen + lease.ttl:
        kind = Kind.LOOK
    send = Send(lease.ids + 1, kind, now, now + lease.period)
    return replace(lease, ids=send.id, pending=send), send, changes


def answered(lease: Lease, reply: Reply, now: float) -> tuple[Lease, list[Change]]:
    """Redis's answer to the pending request (any other is dropped: late,
    or not asked for). Call due() after it for the next request."""
    changes: list[Change] = []
    sent = lease.pending
    if sent is None or reply.id != sent.id or lease.done:
        return lease, changes
    if now >= sent.deadline:  # past its deadline: a failure, as due() says it
        late = f"no reply within {sent.deadline - sent.sent:.3g} s"
        if sent.kind is Kind.RELEASE:
            return replace(lease, pending=None, problem=late, done=True), changes
        return replace(lease, pending=None, next_at=now, problem=late), changes
    lease = replace(lease, pending=None)
    if sent.kind is Kind.RELEASE:
        if lease.lord or reply.held:
            changes.append(Change.RELEASED)
        return replace(lease, lord=False, done=True, problem=reply.error), changes
    if reply.error:
        retry = min(RETRY, lease.period)
        return replace(lease, problem=reply.error, next_at=now + retry), changes
    lease = replace(lease, problem="", holder=reply.holder)
    if reply.holder and not reply.held:
        lease = replace(lease, held_seen=now)
    if reply.held:
        if not lease.lord:
            changes.append(Change.ACQUIRED)
        lease = replace(lease, lord=True, expires=max(lease.expires, sent.sent + lease.ttl))
        return replace(lease, next_at=sent.sent + lease.period), changes
    if lease.lord:
        lease = _lose(lease, changes)
    return replace(lease, next_at=now + min(STANDBY_POLL, lease.period)), changes
