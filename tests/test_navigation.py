"""The page list is a pure function of the role; each role lands on its home page and never sees others' pages."""

from __future__ import annotations

import pytest

from components.navigation import PAGES, allowed, pages_for_role
from db.models import ROLES

LANDING = {"admin": "overview", "manager": "overview", "quality": "overview", "nurse": "worklist"}
# Pages a role must have, and pages it must never get (table-driven; the registry may grow).
MUST = {
    "admin": {"overview", "users", "audit"},
    "manager": {"overview"},
    "quality": {"overview", "audit"},
    "nurse": {"worklist"},
}
NEVER = {
    "admin": {"worklist"},
    "manager": {"users", "audit", "worklist"},
    "quality": {"users", "worklist"},
    "nurse": {"overview", "users", "audit"},
}


@pytest.mark.parametrize("role", ROLES)
def test_pages_for_role(role: str) -> None:
    keys = [p.key for p in pages_for_role(role)]
    assert keys[0] == LANDING[role]
    assert MUST[role] <= set(keys)
    assert not NEVER[role] & set(keys)
    for page in PAGES:
        assert allowed(role, page.key) == (page.key in keys)


def test_unknown_role_gets_nothing() -> None:
    assert pages_for_role("intruder") == []


def test_registry_is_consistent() -> None:
    keys = [p.key for p in PAGES]
    assert len(keys) == len(set(keys)), "page keys are unique"
    assert len({p.path for p in PAGES}) == len(PAGES)
    for page in PAGES:
        assert page.roles and page.roles <= set(ROLES), page.key
        assert page.path.startswith("app_pages/")
