"""core/legion.py, the lease machine: times in, decisions out, no I/O."""

from __future__ import annotations

import pytest

from pidone.core.legion import STANDBY_POLL, Change, Kind, Lease, Reply, Send, answered, due

TTL = 9.0  # renew every 3 s, margin 0.5 s
STOP = 2.0  # the legion process's stop_timeout


def step(lease: Lease, now: float, **kw: bool) -> tuple[Lease, Send | None, list[Change]]:
    return due(lease, now, **kw)


def lord_at(now: float) -> Lease:
    lease, send, _ = step(Lease("beat", TTL), now)
    assert send is not None and send.kind is Kind.ACQUIRE
    lease, changes = answered(lease, Reply(send.id, held=True, holder="me"), now + 0.01)
    assert changes == [Change.ACQUIRED] and lease.lord
    return lease


def test_a_fresh_lease_asks_to_acquire_at_once() -> None:
    lease, send, changes = step(Lease("beat", TTL), 100.0)
    assert send == Send(1, Kind.ACQUIRE, 100.0, 103.0)
    assert changes == [] and not lease.allows(100.0, STOP)
    assert step(lease, 100.5)[1] is None  # one request at a time


def test_acquired_the_lease_lasts_from_when_the_request_was_sent() -> None:
    lease = lord_at(100.0)
    assert lease.expires == 109.0  # sent + ttl, not the reply's time
    assert lease.must_stop_by() == 108.5
    assert lease.allows(106.4, STOP) and not lease.allows(106.5, STOP)
    assert step(lease, 102.9)[1] is None
    _, send, _ = step(lease, 103.0)
    assert send is not None and send.kind is Kind.RENEW


def test_renewed_in_time_the_lord_stays_lord() -> None:
    lease = lord_at(100.0)
    lease, send, _ = step(lease, 103.0)
    assert send is not None
    lease, changes = answered(lease, Reply(send.id, held=True, holder="me"), 103.2)
    assert changes == [] and lease.expires == 112.0 and lease.allows(109.4, STOP)


def test_renew_failures_stop_the_legion_before_the_lease_can_expire() -> None:
    lease = lord_at(100.0)
    now = 103.0
    while True:
        lease, send, changes = step(lease, now)
        if changes:
            break
        if send is not None:
            lease, _ = answered(lease, Reply(send.id, error="connection refused"), now + 0.001)
        now = round(now + 0.1, 3)
    assert changes == [Change.LOST] and now == 108.5  # expires - margin, never later
    assert lease.problem == "connection refused" and not lease.lord
    assert lease.must_stop_by() == 108.5  # still: what runs must be down by then
    assert lease.standing() == "no lord: redis unreachable (connection refused)"


def test_redis_unreachable_nobody_becomes_lord() -> None:
    lease = Lease("beat", TTL)
    for tenth in range(0, 300):
        now = 100 + tenth / 10
        lease, send, changes = step(lease, now)
        assert changes == [] and not lease.allows(now, STOP)
        if send is not None:
            lease, _ = answered(lease, Reply(send.id, error="timed out"), now)
    assert not lease.lord and lease.problem == "timed out"


def test_a_slow_reply_after_its_deadline_is_a_failure() -> None:
    lease, send, _ = step(Lease("beat", TTL), 100.0)
    assert send is not None
    lease, changes = answered(lease, Reply(send.id, held=True, holder="me"), send.deadline)
    assert changes == [] and not lease.lord
    assert lease.problem == "no reply within 3 s"


def test_a_late_reply_asks_nothing_itself_and_due_sends_the_next() -> None:
    lease = lord_at(100.0)
    lease, send, _ = step(lease, 103.0)
    assert send is not None
    lease, changes = answered(lease, Reply(send.id, held=True), 109.0)  # late, and past the end
    assert changes == [] and lease.pending is None  # no request made that nobody sends
    lease, again, changes = step(lease, 109.0)
    assert changes == [Change.LOST] and again is not None and again.kind is Kind.ACQUIRE


def test_a_reply_after_the_deadline_passed_in_due_is_dropped() -> None:
    lease, first, _ = step(Lease("beat", TTL), 100.0)
    lease, second, _ = step(lease, 103.0)  # the first is late: a new request goes out
    assert first is not None and second is not None and second.id == first.id + 1
    lease, changes = answered(lease, Reply(first.id, held=True), 103.1)
    assert changes == [] and not lease.lord and lease.pending == second


def test_a_late_renewal_reply_cannot_extend_the_lease() -> None:
    lease = lord_at(100.0)
    lease, send, _ = step(lease, 103.0)
    assert send is not None
    lease, changes = answered(lease, Reply(send.id, held=True), 106.0)  # its deadline
    assert changes == [] and lease.expires == 109.0


def test_a_clock_jump_forward_loses_the_lease_at_once() -> None:
    lease = lord_at(100.0)
    lease, send, changes = step(lease, 1000.0)  # the loop stalled (or was frozen)
    assert changes == [Change.LOST] and not lease.allows(1000.0, STOP)
    assert send is not None and send.kind is Kind.ACQUIRE  # asks again, as a candidate


def test_the_lease_never_trusts_a_reply_to_extend_past_its_own_measure() -> None:
    # However long redis says the key lives, the end is sent + ttl.
    lease = lord_at(100.0)
    assert lease.expires == 100.0 + TTL


def test_held_by_another_is_a_standby_that_asks_again_soon() -> None:
    lease, send, _ = step(Lease("beat", TTL), 100.0)
    assert send is not None
    lease, changes = answered(lease, Reply(send.id, holder="replica-2"), 100.01)
    assert changes == [] and lease.standing() == "standby: legion beat is held by replica-2"
    assert lease.next_at == pytest.approx(100.01 + STANDBY_POLL)


def test_a_lord_told_another_holds_it_loses_it() -> None:
    lease = lord_at(100.0)
    lease, send, _ = step(lease, 103.0)
    assert send is not None
    lease, changes = answered(lease, Reply(send.id, holder="replica-2"), 103.1)
    assert changes == [Change.LOST] and lease.holder == "replica-2"
    assert lease.must_stop_by() == 108.5


def test_shutdown_releases_once_and_then_asks_nothing() -> None:
    lease = lord_at(100.0)
    lease, send, _ = step(lease, 101.0, release=True)
    assert send is not None and send.kind is Kind.RELEASE
    lease, changes = answered(lease, Reply(send.id, held=True), 101.1)
    assert changes == [Change.RELEASED] and lease.done and not lease.lord
    assert step(lease, 200.0)[1] is None and lease.deadlines((STOP,)) == []


def test_a_release_that_gets_no_answer_is_given_up() -> None:
    lease = lord_at(100.0)
    lease, send, _ = step(lease, 101.0, release=True)
    assert send is not None
    lease, _, _ = step(lease, send.deadline)
    assert lease.done and step(lease, 200.0)[1] is None


def test_the_deadlines_include_the_stop_and_the_end() -> None:
    lease = lord_at(100.0)
    assert sorted(lease.deadlines((STOP,))) == [103.0, 106.5, 108.5]
