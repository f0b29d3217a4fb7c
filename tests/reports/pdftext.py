"""Text of a PDF through poppler's pdftotext; tests skip with a reason when poppler is missing."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest


def require_poppler(tool: str = "pdftotext") -> str:
    path = shutil.which(tool)
    if path is None:
        if os.environ.get("CARELOOP_REQUIRE_BROWSER") == "1":
            pytest.fail(f"{tool} (poppler-utils) is required when CARELOOP_REQUIRE_BROWSER=1")
        pytest.skip(f"{tool} not found: install poppler-utils to check PDF text")
    return path


def pdf_text(data: bytes) -> str:
    tool = require_poppler()
    assert data.startswith(b"%PDF-"), "not a PDF"
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "r.pdf"
        path.write_bytes(data)
        out = subprocess.run([tool, "-layout", "-enc", "UTF-8", str(path), "-"], check=True, capture_output=True)
    return out.stdout.decode("utf-8")


def pdf_pages(data: bytes) -> int:
    tool = require_poppler("pdfinfo")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "r.pdf"
        path.write_bytes(data)
        out = subprocess.run([tool, str(path)], check=True, capture_output=True, text=True).stdout
    return int(next(line.split()[-1] for line in out.splitlines() if line.startswith("Pages:")))


def squash(text: str) -> str:
    """Text without whitespace: pdftotext may put spaces or line breaks inside a CJK run."""
    return "".join(text.split())
