"""Page tokens (opaque, bound to a list and an owner, never widened by hand) and the
login throttle windows, on the fast tier."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import timedelta

import pytest

from identity.domain.clock import SteppedClock
from identity.domain.errors import InvalidArgument, PageTokenInvalid, Reason, Throttled
from identity.services.paging import MAX_PAGE_SIZE, PageTokens, page_size
from identity.services.throttle import LoginThrottle
from tests.fakes import FAST_SECRET, FakeRedis

TOKENS = PageTokens(FAST_SECRET)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_page_size_defaults_caps_and_refuses_negative_sizes() -> None:
    assert page_size(0) == 20
    assert page_size(1) == 1
    assert page_size(MAX_PAGE_SIZE) == MAX_PAGE_SIZE == 100
    assert page_size(MAX_PAGE_SIZE + 1) == MAX_PAGE_SIZE
    assert page_size(0, default=7, maximum=9) == 7
    assert page_size(10, default=7, maximum=9) == 9
    with pytest.raises(InvalidArgument) as negative:
        page_size(-1)
    assert [v.field for v in negative.value.violations] == ["page_size"]
    assert "negative" in negative.value.message


def test_a_page_token_round_trips_its_position_exactly() -> None:
    position = {"c": "2026-01-01T00:00:00+00:00", "i": "id", "n": 3, "é": "ü"}
    token = TOKENS.encode("sessions", "owner", position)
    assert TOKENS.decode("sessions", "owner", token) == position
    assert TOKENS.decode("sessions", "owner", "") is None
    # The body is compact, sorted JSON: one position has one token.
    body = token.split(".")[0]
    assert (
        base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        == json.dumps(position, separators=(",", ":"), sort_keys=True).encode()
    )
    assert "=" not in token


def test_one_position_has_one_token_whatever_the_key_order() -> None:
    assert TOKENS.encode("k", "o", {"b": 1, "a": 2}) == TOKENS.encode("k", "o", {"a": 2, "b": 1})


def test_page_tokens_from_another_process_of_the_service_are_read() -> None:
    """During a rolling upgrade every process must read the others' tokens: the key is
    HMAC-SHA256(master key, "identity.page-token.v1") and the MAC covers kind, owner, body."""
    key = hmac.new(FAST_SECRET, b"identity.page-token.v1", hashlib.sha256).digest()
    body = _b64(b'{"i":7}')
    mac = _b64(hmac.new(key, b"sessions\x00ann\x00" + body.encode(), hashlib.sha256).digest())
    assert PageTokens(FAST_SECRET).decode("sessions", "ann", f"{body}.{mac}") == {"i": 7}


def test_a_page_token_is_refused_for_another_owner_list_or_key() -> None:
    token = TOKENS.encode("sessions", "ann", {"i": 1})
    for kind, owner in [("sessions", "bob"), ("history", "ann"), ("sessions", "ann\x00"), ("", "ann")]:
        with pytest.raises(PageTokenInvalid) as refused:
            TOKENS.decode(kind, owner, token)
        assert refused.value.reason is Reason.PAGE_TOKEN_INVALID
    with pytest.raises(PageTokenInvalid):
        PageTokens(FAST_SECRET + b"x").decode("sessions", "ann", token)
    # The kind and owner are separated: moving a character from one to the other is not the same MAC.
    split = TOKENS.encode("ab", "c", {"i": 1})
    with pytest.raises(PageTokenInvalid):
        TOKENS.decode("a", "bc", split)


def test_an_edited_or_malformed_page_token_is_refused() -> None:
    token = TOKENS.encode("sessions", "ann", {"i": 1})
    body, mac = token.split(".")
    widened = _b64(json.dumps({"i": 999}).encode())
    for bad in [
        f"{widened}.{mac}",
        body,
        f"{body}.",
        f".{mac}",
        f"{body}.{mac[:-1]}",
        f"{body}.{mac}x",
        token + "." + mac,
    ]:
        with pytest.raises(PageTokenInvalid):
            TOKENS.decode("sessions", "ann", bad)


def test_a_validly_signed_token_must_still_hold_a_json_object() -> None:
    for body in [_b64(b"[1, 2]"), _b64(b"not json"), _b64(b"\xff\xfe"), "@@@"]:
        forged = f"{body}.{TOKENS._mac('sessions', 'ann', body)}"
        with pytest.raises(PageTokenInvalid):
            TOKENS.decode("sessions", "ann", forged)


def test_a_page_token_of_up_to_1024_characters_is_read_and_a_longer_one_refused() -> None:
    by_length = {
        len(t): t for t in (TOKENS.encode("sessions", "ann", {"p": "x" * n}) for n in range(700, 780))
    }
    assert TOKENS.decode("sessions", "ann", by_length[1024]) is not None
    longer = min(n for n in by_length if n > 1024)
    with pytest.raises(PageTokenInvalid):
        TOKENS.decode("sessions", "ann", by_length[longer])


def _throttle(clock: SteppedClock, per_account: int = 3, per_ip: int = 5) -> LoginThrottle:
    return LoginThrottle(
        FakeRedis(clock),  # type: ignore[arg-type]
        per_account=per_account,
        per_ip=per_ip,
        window=timedelta(seconds=60),
    )


async def test_the_account_limit_allows_exactly_its_count_per_window() -> None:
    clock = SteppedClock()
    throttle = _throttle(clock)
    for _ in range(3):
        await throttle.count_attempt("acct:ann", None)
    with pytest.raises(Throttled) as over:
        await throttle.count_attempt("acct:ann", None)
    assert 0 < over.value.retry_after_seconds <= 60
    await throttle.count_attempt("acct:bob", None)  # another account has its own window
    clock.advance(timedelta(seconds=61))
    await throttle.count_attempt("acct:ann", None)


async def test_the_address_limit_spans_accounts_and_is_skipped_without_an_address() -> None:
    clock = SteppedClock()
    throttle = _throttle(clock, per_account=100, per_ip=2)
    await throttle.count_attempt("acct:a", "192.0.2.1")
    await throttle.count_attempt("acct:b", "192.0.2.1")
    with pytest.raises(Throttled) as over:
        await throttle.count_attempt("acct:c", "192.0.2.1")
    assert 0 < over.value.retry_after_seconds <= 60
    await throttle.count_attempt("acct:d", "192.0.2.2")
    for _ in range(5):
        await throttle.count_attempt("acct:e", None)


async def test_an_account_over_its_limit_is_refused_without_counting_the_address() -> None:
    clock = SteppedClock()
    throttle = _throttle(clock, per_account=1, per_ip=2)
    await throttle.count_attempt("acct:a", "192.0.2.1")
    with pytest.raises(Throttled):
        await throttle.count_attempt("acct:a", "192.0.2.1")
    # The refused attempt did not use up the address's second attempt.
    await throttle.count_attempt("acct:b", "192.0.2.1")
