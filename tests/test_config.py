"""Configuration refuses placeholder secrets outside demo mode and reads env before secrets.toml."""

from __future__ import annotations

from pathlib import Path

import pytest

from config import DEFAULT_DATABASE_URL, ConfigError, load_settings

GOOD_KEY = "k" * 48


@pytest.mark.parametrize("key", [None, "", "some_key", "change-me", "short-key"])
def test_production_refuses_missing_or_placeholder_key(key: str | None, tmp_path: Path) -> None:
    env = {} if key is None else {"CARELOOP_COOKIE_KEY": key}
    with pytest.raises(ConfigError, match="CARELOOP_COOKIE_KEY"):
        load_settings(env, tmp_path / "none.toml")


def test_demo_mode_makes_and_keeps_a_random_key(tmp_path: Path) -> None:
    env = {"CARELOOP_DEMO": "1", "CARELOOP_DATA_DIR": str(tmp_path)}
    first = load_settings(env, tmp_path / "none.toml")
    second = load_settings(env, tmp_path / "none.toml")
    assert first.demo and len(first.cookie_key) >= 32
    assert first.cookie_key == second.cookie_key != "some_key"


def test_secrets_file_and_environment(tmp_path: Path) -> None:
    secrets = tmp_path / "secrets.toml"
    secrets.write_text(f'[careloop]\ncookie_key = "{GOOD_KEY}"\nlockout_minutes = 30\n', encoding="utf-8")
    s = load_settings({}, secrets)
    assert (s.cookie_key, s.lockout_minutes, s.database_url, s.demo) == (GOOD_KEY, 30, DEFAULT_DATABASE_URL, False)
    s = load_settings({"CARELOOP_LOCKOUT_MINUTES": "5", "CARELOOP_DATABASE_URL": "sqlite:///x.db"}, secrets)
    assert (s.lockout_minutes, s.database_url) == (5, "sqlite:///x.db")


@pytest.mark.parametrize(("name", "value"), [("LOCKOUT_MINUTES", "abc"), ("SMTP_PORT", "-1"), ("SESSION_HOURS", "0")])
def test_bad_numbers_stop_start_up_with_a_clear_message(name: str, value: str, tmp_path: Path) -> None:
    env = {"CARELOOP_COOKIE_KEY": GOOD_KEY, f"CARELOOP_{name}": value}
    with pytest.raises(ConfigError, match=f"CARELOOP_{name} must be a positive"):
        load_settings(env, tmp_path / "none.toml")
