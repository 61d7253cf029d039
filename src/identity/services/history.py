"""A user's own login history, newest first, with keyset paging.

The page token carries the last entry shown (login_at, id) and the time range it
was made for, under the PageTokens MAC bound to the caller's user id: it cannot
be edited, replayed by another user, or reused with a different range."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from identity.domain.errors import InvalidArgument, PageTokenInvalid
from identity.domain.models import LoginEvent, Principal
from identity.domain.paging import HistoryCursor, TimeRange
from identity.services.paging import PageTokens, page_size
from identity.store.database import Database

PAGE_KIND = "login_history"


@dataclass(frozen=True)
class HistoryPage:
    entries: list[LoginEvent]
    next_page_token: str


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat()


def check_range(start: datetime | None, end: datetime | None) -> TimeRange:
    if start is not None and end is not None and start >= end:
        raise InvalidArgument("end_time", "end_time must be after start_time")
    return TimeRange(start, end)


class HistoryService:
    def __init__(self, db: Database, page_tokens: PageTokens) -> None:
        self._db = db
        self._page_tokens = page_tokens

    def _cursor(self, principal: Principal, token: str, span: TimeRange) -> HistoryCursor | None:
        position = self._page_tokens.decode(PAGE_KIND, str(principal.user_id), token)
        if position is None:
            return None
        invalid = PageTokenInvalid()
        if position.get("s") != _iso(span.start) or position.get("e") != _iso(span.end):
            raise PageTokenInvalid("page_token was made for another time range")
        try:
            at, entry_id = datetime.fromisoformat(position["t"]), position["i"]
        except (KeyError, TypeError, ValueError):
            raise invalid from None
        if not isinstance(entry_id, int) or at.tzinfo is None:
            raise invalid
        return HistoryCursor(at, entry_id)

    def _next_token(self, principal: Principal, last: LoginEvent, span: TimeRange) -> str:
        position: dict[str, Any] = {
            "t": last.login_at.isoformat(),
            "i": last.id,
            "s": _iso(span.start),
            "e": _iso(span.end),
        }
        return self._page_tokens.encode(PAGE_KIND, str(principal.user_id), position)

    async def list_own(
        self,
        principal: Principal,
        requested_size: int,
        page_token: str,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> HistoryPage:
        """The caller's entries with start <= login_at < end (either side optional)."""
        size = page_size(requested_size)
        span = check_range(start, end)
        after = self._cursor(principal, page_token, span)
        async with self._db.reader() as uow:
            rows = await uow.login_history.page_for_user(
                principal.user_id, span=span, after=after, limit=size + 1
            )
        page = rows[:size]
        next_token = self._next_token(principal, page[-1], span) if len(rows) > size else ""
        return HistoryPage(page, next_token)
