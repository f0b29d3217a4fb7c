"""Typed configuration in one place: environment first, then .streamlit/secrets.toml, then defaults."""

from __future__ import annotations

import os
import secrets as _secrets
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent
DEFAULT_DATABASE_URL = f"sqlite:///{ROOT / 'data' / 'careloop.db'}"
# Keys that ship in examples or library docs; anyone can forge a session cookie signed with them.
PLACEHOLDER_KEYS = frozenset({"", "some_key", "change-me", "changeme", "secret", "CHANGE_ME"})
MIN_KEY_LENGTH = 32


class ConfigError(RuntimeError):
    """Configuration that must stop start-up; the message says what to set."""


@dataclass(frozen=True)
class Settings:
    database_url: str
    demo: bool
    cookie_key: str
    cookie_name: str = "careloop_session"
    session_hours: float = 12.0
    max_failed_logins: int = 5
    lockout_minutes: int = 15
    timezone: str = "Asia/Shanghai"
    card_prefix: str = "CL"
    institution_name: str = "Careloop"
    # Optional logo (PNG/JPEG) on the cover of the patient health report: CARELOOP_LOGO_PATH.
    logo_path: str | None = None
    # Call recordings: files under recordings_dir (with their sha256), or in the database when recordings_in_db.
    recordings_dir: str = str(ROOT / "data" / "recordings")
    recording_max_mb: float = 50.0
    recordings_in_db: bool = False
    # Failed contact attempts (no answer, wrong number) after which a follow-up task closes as unreachable.
    followup_max_failed_attempts: int = 3
    # Messaging gateways (secrets: CARELOOP_SMTP_*, CARELOOP_SMS_*, CARELOOP_WECHAT_*); a channel without a gateway
    # writes its messages to outbox_dir for a site to pick up.
    smtp_host: str = ""
    smtp_port: int = 25
    smtp_user: str = ""
    smtp_password: str = ""
    smtp_from: str = "careloop@localhost"
    smtp_starttls: bool = False
    sms_url: str = ""
    sms_token: str = ""
    wechat_url: str = ""
    wechat_token: str = ""
    gateway_timeout_s: float = 10.0
    outbox_dir: str = str(ROOT / "data" / "outbox")


def _read_secrets(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    with path.open("rb") as fh:
        return tomllib.load(fh)


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


def _demo_cookie_key(data_dir: Path) -> str:
    """Demo mode keeps a random key on disk so a restart does not log everyone out."""
    key_file = data_dir / ".cookie_key"
    if key_file.is_file():
        return key_file.read_text(encoding="utf-8").strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    key = _secrets.token_urlsafe(48)
    key_file.write_text(key, encoding="utf-8")
    key_file.chmod(0o600)
    return key


def database_url(env: dict[str, str] | None = None) -> str:
    """The database URL alone, for tools (migrations, manage.py) that need no cookie key."""
    env = dict(os.environ) if env is None else env
    return env.get("CARELOOP_DATABASE_URL") or DEFAULT_DATABASE_URL


def load_settings(
    env: dict[str, str] | None = None, secrets_path: Path | None = None
) -> Settings:
    env = dict(os.environ) if env is None else env
    file = _read_secrets(secrets_path or ROOT / ".streamlit" / "secrets.toml")
    careloop = file.get("careloop", {}) if isinstance(file.get("careloop"), dict) else {}

    def pick(name: str, default: str | None = None) -> str | None:
        value = env.get(f"CARELOOP_{name.upper()}")
        if value is None:
            raw = careloop.get(name)
            value = None if raw is None else str(raw)
        return default if value is None else value

    def number(name: str, default: float, kind: type[int] | type[float]) -> Any:
        raw = pick(name)
        if raw is None or raw.strip() == "":
            return kind(default)
        try:
            value = kind(raw)
        except ValueError:
            value = None
        if value is None or value <= 0:
            raise ConfigError(f"CARELOOP_{name.upper()} must be a positive {kind.__name__}, not {raw!r}.")
        return value

    demo = _truthy(pick("demo", "0"))
    cookie_key = pick("cookie_key", "") or ""
    if cookie_key in PLACEHOLDER_KEYS or len(cookie_key) < MIN_KEY_LENGTH:
        if not demo:
            raise ConfigError(
                "CARELOOP_COOKIE_KEY is missing, a placeholder or shorter than "
                f"{MIN_KEY_LENGTH} characters. Set it in the environment or in "
                ".streamlit/secrets.toml under [careloop] cookie_key (for example the output of "
                "`python -c \"import secrets; print(secrets.token_urlsafe(48))\"`), "
                "or set CARELOOP_DEMO=1 for a demo."
            )
        cookie_key = _demo_cookie_key(Path(pick("data_dir", str(ROOT / "data")) or "data"))
    return Settings(
        database_url=pick("database_url", DEFAULT_DATABASE_URL) or DEFAULT_DATABASE_URL,
        demo=demo,
        cookie_key=cookie_key,
        session_hours=number("session_hours", 12, float),
        max_failed_logins=number("max_failed_logins", 5, int),
        lockout_minutes=number("lockout_minutes", 15, int),
        timezone=pick("timezone", "Asia/Shanghai") or "Asia/Shanghai",
        card_prefix=pick("card_prefix", "CL") or "CL",
        institution_name=pick("institution_name", "Careloop") or "Careloop",
        logo_path=pick("logo_path") or None,
        recordings_dir=pick("recordings_dir", str(ROOT / "data" / "recordings")) or str(ROOT / "data" / "recordings"),
        recording_max_mb=number("recording_max_mb", 50, float),
        recordings_in_db=_truthy(pick("recordings_in_db", "0")),
        followup_max_failed_attempts=number("followup_max_failed_attempts", 3, int),
        smtp_host=pick("smtp_host", "") or "",
        smtp_port=number("smtp_port", 25, int),
        smtp_user=pick("smtp_user", "") or "",
        smtp_password=pick("smtp_password", "") or "",
        smtp_from=pick("smtp_from", "careloop@localhost") or "careloop@localhost",
        smtp_starttls=_truthy(pick("smtp_starttls", "0")),
        sms_url=pick("sms_url", "") or "",
        sms_token=pick("sms_token", "") or "",
        wechat_url=pick("wechat_url", "") or "",
        wechat_token=pick("wechat_token", "") or "",
        gateway_timeout_s=number("gateway_timeout_s", 10, float),
        outbox_dir=pick("outbox_dir", str(ROOT / "data" / "outbox")) or str(ROOT / "data" / "outbox"),
    )
