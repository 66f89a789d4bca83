"""The token throttle's state as the RateLimit fields report it: failures left, and when the
counted failures stop counting (the window's end, or the lock's)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from app.domain.clients import LOCK, MAX_FAILURES, WINDOW, after_failure

T0 = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


class TestThrottleState:
    def test_a_failure_spends_one_and_opens_the_window(self) -> None:
        state = after_failure(None, "c_x", T0)
        assert state.remaining == MAX_FAILURES - 1
        assert state.resets_in(T0) == int(WINDOW.total_seconds())
        assert state.resets_in(T0 + timedelta(seconds=30.5)) == int(WINDOW.total_seconds()) - 30

    def test_the_lock_ends_the_count_at_its_own_end(self) -> None:
        state = None
        for i in range(MAX_FAILURES):
            state = after_failure(state, "c_x", T0 + timedelta(minutes=i))
        assert state is not None
        assert state.remaining == 0
        locked_at = T0 + timedelta(minutes=MAX_FAILURES - 1)
        assert state.resets_in(locked_at) == int(LOCK.total_seconds())
        assert state.resets_in(locked_at + LOCK + timedelta(seconds=5)) == 0

    def test_a_window_run_out_starts_a_new_count(self) -> None:
        first = after_failure(None, "c_x", T0)
        later = after_failure(first, "c_x", T0 + WINDOW + timedelta(seconds=1))
        assert later.remaining == MAX_FAILURES - 1
