"""Errors a user can act on: an i18n key and its parameters, translated by the screen or the CLI."""

from __future__ import annotations

from typing import Any


class UserError(Exception):
    """Bad input or a refused action; `key` is an i18n key, `params` fill its placeholders."""

    def __init__(self, key: str, **params: Any) -> None:
        super().__init__(key)
        self.key = key
        self.params = params

    def __repr__(self) -> str:
        return f"UserError({self.key!r}, {self.params!r})"
