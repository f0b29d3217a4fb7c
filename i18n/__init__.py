"""zh-CN and en message catalogues: one TOML file per area and language, merged at import."""

from __future__ import annotations

import tomllib
from functools import cache
from pathlib import Path
from typing import Any

LANGUAGES = ("zh_CN", "en")
DEFAULT_LANGUAGE = "zh_CN"
_DIR = Path(__file__).resolve().parent


def _flatten(prefix: str, data: dict[str, Any], out: dict[str, str], origin: Path) -> None:
    for key, value in data.items():
        full = f"{prefix}.{key}" if prefix else key
        if isinstance(value, dict):
            _flatten(full, value, out, origin)
        else:
            if full in out:
                raise ValueError(f"duplicate i18n key {full!r} in {origin}")
            out[full] = str(value)


@cache
def catalogue(lang: str) -> dict[str, str]:
    if lang not in LANGUAGES:
        raise ValueError(f"unknown language {lang!r}")
    out: dict[str, str] = {}
    for path in sorted((_DIR / lang).glob("*.toml")):
        with path.open("rb") as fh:
            _flatten("", tomllib.load(fh), out, path)
    return out


def t(key: str, lang: str = DEFAULT_LANGUAGE, **params: Any) -> str:
    """Translate key; a missing key shows itself (and the catalogue test catches it before release)."""
    text = catalogue(lang).get(key)
    if text is None:
        return key
    return text.format(**params) if params else text


def language_label(lang: str) -> str:
    return {"zh_CN": "中文", "en": "English"}[lang]
