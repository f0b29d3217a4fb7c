"""Browser-test setup: registers xdist's group marker so `-p no:xdist` still passes --strict-markers."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "xdist_group(name): run these tests in one pytest-xdist worker")
