"""Unit normalisation: a value in any accepted unit -> the indicator's canonical unit, original kept by the caller.

Factors are per analyte (molar masses differ): glucose 18.016, cholesterols 38.67, triglycerides 88.57,
creatinine 88.4, uric acid 59.48 (mg/dL <-> mmol/L or µmol/L); body measures lb -> kg and in -> cm.
"""

from __future__ import annotations

import re

# Spellings of one unit seen in real files (UCUM codes, lab system text, Chinese reports) -> one key.
_ALIASES: dict[str, str] = {
    "mmol/l": "mmol/L", "mmol/litre": "mmol/L", "mmol/liter": "mmol/L",
    "mg/dl": "mg/dL", "mg/100ml": "mg/dL", "mg%": "mg/dL",
    "umol/l": "umol/L", "µmol/l": "umol/L", "μmol/l": "umol/L", "micromol/l": "umol/L",
    "mg/l": "mg/L", "g/l": "g/L", "g/dl": "g/dL",
    "kg": "kg", "[lb_av]": "lb", "lb": "lb", "lbs": "lb", "pound": "lb", "pounds": "lb", "g": "g",
    "cm": "cm", "[in_i]": "in", "in": "in", "inch": "in", "inches": "in", "m": "m", "mm": "mm",
    "mm[hg]": "mmHg", "mmhg": "mmHg", "mm hg": "mmHg",
    "%": "%", "percent": "%", "mmol/mol": "mmol/mol",
    "kg/m2": "kg/m2", "kg/m^2": "kg/m2", "kg/(m2)": "kg/m2", "kg/m²": "kg/m2",
    "/min": "/min", "bpm": "/min", "beats/min": "/min", "{beats}/min": "/min", "次/分": "/min", "1/min": "/min",
    "u/l": "U/L", "iu/l": "U/L", "[iu]/l": "U/L",
}

# indicator code -> the analyte family whose factors apply (catalogue codes; see db/catalogue.py)
_MOLAR: dict[str, tuple[str, float]] = {
    # family: (SI unit of the family, mg/dL per SI unit)
    "glucose": ("mmol/L", 18.016),
    "cholesterol": ("mmol/L", 38.67),
    "triglyceride": ("mmol/L", 88.57),
    "creatinine": ("umol/L", 1 / 88.4),
    "uric_acid": ("umol/L", 1 / 59.48),
}
FAMILY_BY_CODE: dict[str, str] = {
    "GLU": "glucose", "FPG": "glucose", "GLU_FAST": "glucose", "GLUCOSE": "glucose",
    "TC": "cholesterol", "LDL": "cholesterol", "LDL_C": "cholesterol", "HDL": "cholesterol", "HDL_C": "cholesterol",
    "TG": "triglyceride",
    "CREA": "creatinine", "CR": "creatinine", "SCR": "creatinine", "CREAT": "creatinine",
    "UA": "uric_acid", "URIC": "uric_acid", "SUA": "uric_acid",
}


class UnitError(ValueError):
    """A unit that cannot be turned into the indicator's canonical unit."""


def normalise_unit(unit: str | None) -> str:
    """Canonical spelling of a unit string; unknown spellings come back trimmed, as they are."""
    if unit is None:
        return ""
    raw = unit.strip()
    key = re.sub(r"\s+", " ", raw).lower()
    return _ALIASES.get(key, raw)


def family(indicator_code: str) -> str | None:
    code = indicator_code.upper()
    if code in FAMILY_BY_CODE:
        return FAMILY_BY_CODE[code]
    # catalogue codes may carry a suffix ("GLU_FPG", "LDL-C"); match on the stem
    stem = re.split(r"[_\-]", code)[0]
    return FAMILY_BY_CODE.get(stem)


def convert(value: float, unit: str | None, *, canonical: str, indicator_code: str) -> float:
    """value in `unit` -> value in `canonical`; raises UnitError when no rule connects them."""
    src = normalise_unit(unit)
    dst = normalise_unit(canonical)
    if src == dst or (src == "" and dst in {"", "1"}):
        return value
    if src == "":
        # No unit given: taken as already canonical (generic CSVs often leave it out).
        return value
    fam = family(indicator_code)
    if fam is not None:
        si, mg_dl_per_si = _MOLAR[fam]
        to_si = {si: 1.0, "mg/dL": 1 / mg_dl_per_si, "mg/L": 0.1 / mg_dl_per_si,
                 "mmol/L": 1000.0 if si == "umol/L" else 1.0, "umol/L": 0.001 if si == "mmol/L" else 1.0}
        if src in to_si and dst in to_si:
            return value * to_si[src] / to_si[dst]
    linear: dict[tuple[str, str], float] = {
        ("lb", "kg"): 0.45359237, ("g", "kg"): 0.001,
        ("in", "cm"): 2.54, ("m", "cm"): 100.0, ("mm", "cm"): 0.1,
        ("g/dL", "g/L"): 10.0, ("mg/dL", "mg/L"): 10.0,
    }
    if (src, dst) in linear:
        return value * linear[(src, dst)]
    if (dst, src) in linear:
        return value / linear[(dst, src)]
    if src == "mmol/mol" and dst == "%":
        # HbA1c IFCC -> NGSP (IFCC-NGSP master equation)
        return 0.09148 * value + 2.152
    raise UnitError(f"{unit} -> {canonical}")
