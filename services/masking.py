"""Masking of contact details and identity numbers for roles that do not need them in full."""

from __future__ import annotations

# Roles that work with the patient directly (calls, enrolment) see contacts in full; the others see masks.
FULL_VIEW_ROLES = frozenset({"nurse", "admin"})


def sees_full(role: str) -> bool:
    return role in FULL_VIEW_ROLES


def mask_phone(phone: str | None) -> str:
    """138****5678: keep the first 3 and last 4 digits of a mobile number, fewer for short numbers."""
    if not phone:
        return ""
    if len(phone) <= 4:
        return "*" * len(phone)
    if len(phone) <= 7:
        return phone[:1] + "*" * (len(phone) - 3) + phone[-2:]
    return phone[:3] + "*" * (len(phone) - 7) + phone[-4:]


def mask_id_number(value: str | None) -> str:
    """110105********1234 for resident IDs; passports keep their first and last two characters."""
    if not value:
        return ""
    if len(value) == 18:
        return value[:6] + "*" * 8 + value[-4:]
    if len(value) <= 4:
        return "*" * len(value)
    return value[:2] + "*" * (len(value) - 4) + value[-2:]


def phone_for(role: str, phone: str | None) -> str:
    return (phone or "") if sees_full(role) else mask_phone(phone)


def id_number_for(role: str, value: str | None) -> str:
    return (value or "") if sees_full(role) else mask_id_number(value)
