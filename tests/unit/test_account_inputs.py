"""Pure input handling of the account, session and history use cases."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from google.protobuf import timestamp_pb2

from identity.api import convert
from identity.domain.errors import InvalidArgument, SessionExpired, SessionRevoked
from identity.domain.models import LoginEvent, LoginOutcome, Session
from identity.domain.paging import HistoryCursor, TimeRange
from identity.services.history import check_range
from identity.services.sessions import parse_session_id
from identity.services.tokens import TokenPolicy, check_session_live
from identity.store.login_history import page_query
from identity.v1 import auth_pb2

POLICY = TokenPolicy(
    issuer="identity",
    audiences=("cinema",),
    access_ttl=timedelta(minutes=15),
    clock_skew=timedelta(seconds=30),
    session_absolute_ttl=timedelta(days=30),
    session_idle_ttl=timedelta(days=7),
)


def _session(**changes: object) -> Session:
    now = datetime.now(UTC)
    values: dict[str, object] = {
        "id": uuid.uuid4(),
        "user_id": uuid.uuid4(),
        "created_at": now - timedelta(days=1),
        "last_used_at": now - timedelta(hours=1),
        "expires_at": now + timedelta(days=29),
        "ip": "127.0.0.1",
        "user_agent": "test",
    }
    values.update(changes)
    return Session(**values)  # type: ignore[arg-type]


def test_session_ids_are_uuids_or_invalid_argument() -> None:
    wanted = uuid.uuid4()
    assert parse_session_id(f" {wanted} ") == wanted
    for bad in ["", "   ", "nope", "1" * 33, "x" * 10_000]:
        with pytest.raises(InvalidArgument) as err:
            parse_session_id(bad)
        assert err.value.violations[0].field == "session_id"


def test_time_range_must_be_ordered() -> None:
    now = datetime.now(UTC)
    assert check_range(None, None) == TimeRange()
    assert check_range(now, None) == TimeRange(now, None)
    with pytest.raises(InvalidArgument) as err:
        check_range(now, now)
    assert err.value.violations[0].field == "end_time"


def test_page_query_writes_only_the_bounds_that_are_set() -> None:
    user = uuid.uuid4()
    sql, params = page_query(user, TimeRange(), None, 21)
    assert "%(start)s" not in sql and "%(end)s" not in sql and "after" not in sql
    assert params == {"user_id": user, "limit": 21}
    now = datetime.now(UTC)
    sql, params = page_query(user, TimeRange(now, None), HistoryCursor(now, 7), 21)
    assert "login_at >= %(start)s" in sql and "%(end)s" not in sql
    # The plain login_at bound beside the row comparison is what prunes partitions.
    assert "login_at <= %(after_at)s" in sql
    assert params["after_id"] == 7


def test_session_expiry_says_which_lifetime_ran_out() -> None:
    now = datetime.now(UTC)
    with pytest.raises(SessionExpired, match="maximum lifetime"):
        check_session_live(_session(expires_at=now - timedelta(seconds=1)), None, POLICY, now)
    with pytest.raises(SessionExpired, match="idle"):
        check_session_live(_session(last_used_at=now - timedelta(days=8)), None, POLICY, now)
    with pytest.raises(SessionRevoked):
        check_session_live(_session(revoked_at=now), None, POLICY, now)
    session = _session()
    assert check_session_live(session, None, POLICY, now) is session
    # The same session, seen from a clock a week and a day later, has idled out.
    with pytest.raises(SessionExpired, match="idle"):
        check_session_live(session, None, POLICY, now + timedelta(days=8))


def test_request_timestamps_out_of_range_are_invalid_argument() -> None:
    request = auth_pb2.ListLoginHistoryRequest()
    assert convert.optional_time(request, "start_time") is None
    request.start_time.CopyFrom(timestamp_pb2.Timestamp(seconds=1_800_000_000, nanos=5000))
    assert convert.optional_time(request, "start_time") == datetime.fromtimestamp(1_800_000_000, UTC).replace(
        microsecond=5
    )
    for bad in (timestamp_pb2.Timestamp(seconds=-(10**12)), timestamp_pb2.Timestamp(nanos=2_000_000_000)):
        request.end_time.CopyFrom(bad)
        with pytest.raises(InvalidArgument) as err:
            convert.optional_time(request, "end_time")
        assert err.value.violations[0].field == "end_time"


def test_every_login_outcome_has_a_proto_value() -> None:
    for outcome in LoginOutcome:
        assert auth_pb2.LoginOutcome.Name(convert.login_outcome(outcome)) == f"LOGIN_OUTCOME_{outcome.value}"
    entry = convert.history_entry(
        LoginEvent(datetime.now(UTC), LoginOutcome.REFRESH_REUSE, None, "ua", None, id=3)
    )
    assert entry.outcome == auth_pb2.LOGIN_OUTCOME_REFRESH_REUSE and entry.ip == "" and entry.session_id == ""
