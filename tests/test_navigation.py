"""The page list is a pure function of the role."""

from __future__ import annotations

import pytest

from components.navigation import PAGES, allowed, pages_for_role


@pytest.mark.parametrize(
    ("role", "expected"),
    [
        ("manager", ["overview"]),
        ("quality", ["overview", "audit"]),
        ("admin", ["overview", "users", "audit"]),
        ("nurse", ["worklist"]),
        ("intruder", []),
    ],
)
def test_pages_for_role(role: str, expected: list[str]) -> None:
    assert [p.key for p in pages_for_role(role)] == expected
    for page in PAGES:
        assert allowed(role, page.key) == (page.key in expected)
