"""Both catalogues carry the same keys, no empty text, and the same placeholders."""

from __future__ import annotations

import string

import pytest

import i18n


def _placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


def test_catalogues_have_the_same_keys() -> None:
    zh, en = i18n.catalogue("zh_CN"), i18n.catalogue("en")
    assert set(zh) - set(en) == set(), "keys only in zh_CN"
    assert set(en) - set(zh) == set(), "keys only in en"


@pytest.mark.parametrize("lang", i18n.LANGUAGES)
def test_no_empty_values(lang: str) -> None:
    empty = [k for k, v in i18n.catalogue(lang).items() if not v.strip()]
    assert empty == []


def test_placeholders_match() -> None:
    zh, en = i18n.catalogue("zh_CN"), i18n.catalogue("en")
    mismatched = [k for k in en if _placeholders(en[k]) != _placeholders(zh[k])]
    assert mismatched == []


def test_missing_key_shows_itself_and_params_fill() -> None:
    assert i18n.t("no.such.key", "en") == "no.such.key"
    assert i18n.t("auth.locked", "en", minutes=15).endswith("15 minutes or ask an administrator to unlock it.")
    assert "15 分钟" in i18n.t("auth.locked", "zh_CN", minutes=15)
