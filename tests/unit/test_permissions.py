"""Permission names, role names, and how a decision is reached from a user's grants."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from identity.domain.errors import InvalidArgument
from identity.domain.permissions import (
    MAX_PERMISSIONS_PER_ROLE,
    DecisionReason,
    GrantRow,
    UserGrants,
    is_valid_permission,
    role_name,
    validate_permission,
    validate_permission_set,
)

NOW = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    "name",
    ["catalog.films.publish", "billing", "a.b", "x1.y_2.z-3", "identity.roles.read", "a" * 128],
)
def test_valid_permission_names(name: str) -> None:
    assert is_valid_permission(name)
    assert validate_permission(name) == name


@pytest.mark.parametrize(
    "name",
    [
        "",
        "Catalog.films",
        "catalog..films",
        ".catalog",
        "catalog.",
        "catalog films",
        " catalog.films",
        "catalog.films ",
        "catalog.1films",
        "catalog/films",
        "*",
        "catalog.*",
        "каталог.films",
        "a" * 129,
        "catalog.films\n",
    ],
)
def test_malformed_permission_names_are_refused(name: str) -> None:
    assert not is_valid_permission(name)
    with pytest.raises(InvalidArgument) as err:
        validate_permission(name, field="role.permissions[0]")
    assert err.value.reason == "PERMISSION_NAME_INVALID"
    assert err.value.violations[0].field == "role.permissions[0]"


def test_a_role_carries_a_bounded_number_of_permissions() -> None:
    names = [f"p.n{i}" for i in range(MAX_PERMISSIONS_PER_ROLE)]
    assert len(validate_permission_set(names)) == MAX_PERMISSIONS_PER_ROLE
    with pytest.raises(InvalidArgument) as err:
        validate_permission_set([*names, "p.extra"])
    assert err.value.reason == "TOO_MANY_ITEMS"


def test_role_names_are_canonicalised_so_look_alikes_collide() -> None:
    assert role_name("  Film   Editors ").display == "Film Editors"
    assert role_name("Film Editors").canonical == role_name("FILM EDITORS").canonical == "film editors"
    # Full-width letters are NFKC-equal to ASCII ones.
    assert role_name("Ｅｄｉｔｏｒｓ").canonical == "editors"
    assert role_name("SuperUser").canonical == "superuser"


@pytest.mark.parametrize("raw", ["", "   ", "a" * 65, "edit\x00ors", "ed/itors", "раypal"])
def test_bad_role_names_are_refused(raw: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        role_name(raw)
    assert err.value.reason == "ROLE_NAME_INVALID"


def _grants(rows: list[GrantRow], *, exists: bool = True, disabled: bool = False) -> UserGrants:
    return UserGrants.build(uuid.uuid4(), exists=exists, disabled=disabled, rows=rows, now=NOW)


CATALOGUE = frozenset({"catalog.films.read", "catalog.films.publish", "billing.refund"})


def test_granted_names_every_role_that_grants() -> None:
    grants = _grants(
        [
            GrantRow("editors", None, "catalog.films.publish"),
            GrantRow("publishers", NOW + timedelta(hours=1), "catalog.films.publish"),
            GrantRow("editors", None, "catalog.films.read"),
        ]
    )
    decision = grants.decide("catalog.films.publish", CATALOGUE)
    assert decision.allowed and decision.reason is DecisionReason.GRANTED
    assert decision.granted_by == ("editors", "publishers")
    assert grants.next_expiry == NOW + timedelta(hours=1)


def test_expired_assignment_grants_nothing_and_says_so() -> None:
    grants = _grants(
        [
            GrantRow("publishers", NOW, "catalog.films.publish"),
            GrantRow("readers", None, "catalog.films.read"),
        ]
    )
    publish = grants.decide("catalog.films.publish", CATALOGUE)
    assert not publish.allowed and publish.reason is DecisionReason.ASSIGNMENT_EXPIRED
    assert grants.decide("billing.refund", CATALOGUE).reason is DecisionReason.NOT_GRANTED
    assert grants.next_expiry is None  # the expired one no longer matters


def test_unknown_permission_and_unknown_user() -> None:
    grants = _grants([GrantRow("readers", None, "catalog.films.read")])
    assert grants.decide("catalog.films.delete", CATALOGUE).reason is DecisionReason.NO_SUCH_PERMISSION
    nobody = _grants([], exists=False)
    assert nobody.decide("catalog.films.read", CATALOGUE).reason is DecisionReason.USER_UNKNOWN


def test_wildcard_grants_every_known_permission_but_not_unknown_ones() -> None:
    grants = _grants([GrantRow("superuser", None, "*")])
    assert grants.superuser and grants.holds("identity.roles.write")
    decision = grants.decide("billing.refund", CATALOGUE)
    assert decision.allowed and decision.granted_by == ("superuser",)
    assert grants.decide("billing.typo", CATALOGUE).reason is DecisionReason.NO_SUCH_PERMISSION


def test_a_disabled_user_holds_nothing() -> None:
    grants = _grants([GrantRow("superuser", None, "*")], disabled=True)
    assert not grants.holds("billing.refund")
    assert grants.decide("billing.refund", CATALOGUE).reason is DecisionReason.NOT_GRANTED
    assert grants.effective() == []


def test_effective_permissions_are_sorted_with_their_roles() -> None:
    grants = _grants(
        [
            GrantRow("b-role", None, "catalog.films.read"),
            GrantRow("a-role", None, "catalog.films.read"),
            GrantRow("a-role", None, "billing.refund"),
            GrantRow("empty", None, None),
        ]
    )
    assert [(e.permission, e.granted_by) for e in grants.effective()] == [
        ("billing.refund", ("a-role",)),
        ("catalog.films.read", ("a-role", "b-role")),
    ]
