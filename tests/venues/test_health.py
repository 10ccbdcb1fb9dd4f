"""Feed health: the resync policy that gives up on a symbol and takes it back, and what FeedHealth reports."""

from __future__ import annotations

import pytest

from daemon.venues.health import FeedHealth, ResyncPolicy, SymbolHealth

SEC = 1_000_000_000
T0 = 1_700_000_000 * SEC


def resync_at(policy: ResyncPolicy, h: SymbolHealth, *times: int, reason: str = "gap") -> list[bool]:
    """on_resync at each time; what each call answered."""
    return [policy.on_resync(h, t, reason) for t in times]


# --- ResyncPolicy -----------------------------------------------------------------------------------


def test_up_to_max_resyncs_in_the_window_stay_tradeable() -> None:
    policy, h = ResyncPolicy(max_resyncs=3, window_ns=10 * SEC), SymbolHealth()

    answers = resync_at(policy, h, T0, T0 + SEC, T0 + 2 * SEC)

    assert answers == [False, False, False]
    assert not h.untradeable and h.untradeable_reason == ""
    assert h.resyncs == 3


def test_one_more_than_max_resyncs_in_the_window_is_untradeable_once() -> None:
    policy, h = ResyncPolicy(max_resyncs=3, window_ns=10 * SEC), SymbolHealth()

    answers = resync_at(policy, h, T0, T0 + SEC, T0 + 2 * SEC, T0 + 3 * SEC, T0 + 4 * SEC)

    assert answers == [False, False, False, True, False], "True only when it has just become untradeable"
    assert h.untradeable
    assert h.resyncs == 5


def test_the_reason_names_the_count_the_window_and_the_last_resync() -> None:
    policy, h = ResyncPolicy(max_resyncs=1, window_ns=30 * SEC), SymbolHealth()

    resync_at(policy, h, T0, reason="gap")
    resync_at(policy, h, T0 + SEC, reason="checksum")

    assert h.untradeable_reason == "2 resyncs within 30 s (last: checksum)"


def test_a_fractional_window_is_written_in_seconds() -> None:
    policy, h = ResyncPolicy(max_resyncs=1, window_ns=1_500_000_000), SymbolHealth()

    resync_at(policy, h, T0, T0 + 1, reason="crossed")

    assert h.untradeable_reason == "2 resyncs within 1.5 s (last: crossed)"


def test_the_window_slides_resyncs_spread_out_never_add_up() -> None:
    policy, h = ResyncPolicy(max_resyncs=2, window_ns=10 * SEC), SymbolHealth()

    answers = resync_at(policy, h, *(T0 + i * 6 * SEC for i in range(20)))  # at most 2 in any 10 s

    assert not any(answers) and not h.untradeable
    assert h.resyncs == 20
    assert len(h.resync_times) <= 2, "old resync times are forgotten"


def test_a_resync_exactly_one_window_old_has_left_the_window() -> None:
    policy, h = ResyncPolicy(max_resyncs=1, window_ns=10 * SEC), SymbolHealth()

    assert resync_at(policy, h, T0, T0 + 10 * SEC) == [False, False]
    assert resync_at(policy, h, T0 + 20 * SEC - 1) == [True], "two within (t - window, t]"


def test_a_burst_after_a_quiet_spell_counts_only_the_burst() -> None:
    policy, h = ResyncPolicy(max_resyncs=2, window_ns=10 * SEC), SymbolHealth()
    resync_at(policy, h, T0, T0 + SEC)

    answers = resync_at(policy, h, T0 + 60 * SEC, T0 + 61 * SEC, T0 + 62 * SEC)

    assert answers == [False, False, True]


def test_a_resync_takes_the_symbol_out_of_sync() -> None:
    policy, h = ResyncPolicy(), SymbolHealth(in_sync=True)

    policy.on_resync(h, T0, "gap")

    assert not h.in_sync


def test_in_sync_marks_the_symbol_in_sync_and_keeps_a_tradeable_one_tradeable() -> None:
    policy, h = ResyncPolicy(), SymbolHealth()

    assert policy.on_in_sync(h, T0) is False
    assert h.in_sync and not h.untradeable


def test_untradeable_until_in_sync_for_a_whole_window_after_the_last_resync() -> None:
    policy, h = ResyncPolicy(max_resyncs=1, window_ns=10 * SEC), SymbolHealth()
    resync_at(policy, h, T0, T0 + 2 * SEC)
    assert h.untradeable

    early = [policy.on_in_sync(h, T0 + 2 * SEC + dt) for dt in (0, SEC, 10 * SEC - 1)]
    still = h.untradeable
    back = policy.on_in_sync(h, T0 + 12 * SEC)

    assert early == [False, False, False] and still
    assert back is True
    assert not h.untradeable and h.untradeable_reason == "" and h.in_sync
    assert policy.on_in_sync(h, T0 + 13 * SEC) is False, "True only when it has just become tradeable"


def test_a_resync_while_untradeable_restarts_the_wait() -> None:
    policy, h = ResyncPolicy(max_resyncs=1, window_ns=10 * SEC), SymbolHealth()
    resync_at(policy, h, T0, T0 + SEC)
    policy.on_in_sync(h, T0 + 5 * SEC)

    assert resync_at(policy, h, T0 + 8 * SEC) == [False], "already untradeable: not 'just became'"
    assert policy.on_in_sync(h, T0 + 12 * SEC) is False, "a window after the first resyncs, not the last"
    assert h.untradeable
    assert policy.on_in_sync(h, T0 + 18 * SEC) is True


def test_after_recovery_one_resync_does_not_give_up_again() -> None:
    policy, h = ResyncPolicy(max_resyncs=1, window_ns=10 * SEC), SymbolHealth()
    resync_at(policy, h, T0, T0 + SEC)
    policy.on_in_sync(h, T0 + 11 * SEC)

    assert resync_at(policy, h, T0 + 11 * SEC) == [False]
    assert not h.untradeable
    assert resync_at(policy, h, T0 + 12 * SEC) == [True], "but two within the window do"
    assert h.resyncs == 4


def test_policies_keep_symbols_apart() -> None:
    policy, a, b = ResyncPolicy(max_resyncs=1, window_ns=10 * SEC), SymbolHealth(), SymbolHealth()

    resync_at(policy, a, T0, T0 + SEC)
    resync_at(policy, b, T0)

    assert a.untradeable and not b.untradeable


@pytest.mark.parametrize("max_resyncs, window_ns", [(0, SEC), (-1, SEC), (1, 0), (1, -SEC)])
def test_bad_policy_settings_are_refused(max_resyncs: int, window_ns: int) -> None:
    with pytest.raises(ValueError, match="max_resyncs must be >= 1 and window_ns > 0"):
        ResyncPolicy(max_resyncs, window_ns)


def test_default_policy_is_five_resyncs_a_minute() -> None:
    policy, h = ResyncPolicy(), SymbolHealth()

    answers = resync_at(policy, h, *(T0 + i * SEC for i in range(6)))

    assert (policy.max_resyncs, policy.window_ns) == (5, 60 * SEC)
    assert answers == [False] * 5 + [True]


# --- FeedHealth -------------------------------------------------------------------------------------


def test_symbol_creates_a_record_on_first_use_and_returns_the_same_one_after() -> None:
    feed = FeedHealth("okx")

    first = feed.symbol("BTC-USDT")
    first.gaps += 2

    assert feed.symbol("BTC-USDT") is first
    assert feed.symbols == {"BTC-USDT": first}
    assert first.gaps == 2 and first.resyncs == 0 and not first.untradeable


def test_symbol_records_do_not_share_their_resync_times() -> None:
    feed = FeedHealth("okx")

    feed.symbol("A").resync_times.append(1)

    assert list(feed.symbol("B").resync_times) == []


def test_silent_is_zero_before_any_connection_or_message() -> None:
    assert FeedHealth("x").silent_ns(T0) == 0


def test_silent_counts_from_the_connection_until_the_first_message() -> None:
    feed = FeedHealth("x", connected_since_ns=T0)

    assert feed.silent_ns(T0 + 3 * SEC) == 3 * SEC


def test_silent_counts_from_the_last_message() -> None:
    feed = FeedHealth("x", connected_since_ns=T0, last_message_ns=T0 + 5 * SEC)

    assert feed.silent_ns(T0 + 7 * SEC) == 2 * SEC


def test_silent_is_never_negative_when_asked_about_an_earlier_time() -> None:
    feed = FeedHealth("x", last_message_ns=T0)

    assert feed.silent_ns(T0 - SEC) == 0


def test_untradeable_lists_the_given_up_symbols_sorted() -> None:
    feed = FeedHealth("x")
    for sym in ("C", "A", "B"):
        feed.symbol(sym)
    feed.symbol("C").untradeable = True
    feed.symbol("A").untradeable = True

    assert feed.untradeable() == ["A", "C"]


def test_a_healthy_feed_has_no_problem() -> None:
    assert FeedHealth("x").problem(T0) is None
    assert FeedHealth("x", live=True, connected=True).problem(T0) is None


def test_a_replay_feed_is_never_disconnected() -> None:
    assert FeedHealth("x", live=False, connected=False).problem(T0) is None


def test_a_live_feed_that_is_down_is_a_problem() -> None:
    assert FeedHealth("binance", live=True, connected=False).problem(T0).startswith("binance: feed down for ")


def test_a_live_feed_starting_or_reconnecting_within_its_grace_is_not_yet_a_problem() -> None:
    h = FeedHealth("binance", live=True, connected=False, started_ns=T0, grace_ns=10 * 10**9)
    assert h.problem(T0 + 10 * 10**9) is None
    assert h.problem(T0 + 10 * 10**9 + 1) == "binance: feed down for 10.0 s"
    h.last_message_ns = T0 + 20 * 10**9  # it was up, then went down: the grace counts from the last frame
    assert h.problem(T0 + 25 * 10**9) is None


def test_an_ip_ban_is_the_first_problem_named() -> None:
    feed = FeedHealth("binance", live=True, connected=False, banned=True)
    feed.symbol("BTCUSDT").untradeable = True

    assert feed.problem(T0) == "binance: the venue banned our IP (HTTP 418)"


def test_an_untradeable_symbol_is_a_problem_with_its_reason() -> None:
    feed = FeedHealth("okx", live=True, connected=True)
    policy = ResyncPolicy(max_resyncs=1, window_ns=10 * SEC)
    resync_at(policy, feed.symbol("ETH-USDT"), T0, T0 + SEC, reason="checksum")
    feed.symbol("BTC-USDT")

    assert feed.problem(T0 + 2 * SEC) == "okx ETH-USDT untradeable: 2 resyncs within 10 s (last: checksum)"


def test_the_problem_goes_once_the_symbol_is_tradeable_again() -> None:
    feed = FeedHealth("okx")
    policy = ResyncPolicy(max_resyncs=1, window_ns=10 * SEC)
    h = feed.symbol("ETH-USDT")
    resync_at(policy, h, T0, T0 + SEC)

    policy.on_in_sync(h, T0 + 11 * SEC)

    assert feed.problem(T0 + 11 * SEC) is None
    assert feed.untradeable() == []
