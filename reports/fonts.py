"""The embedded CJK font (Noto Sans SC, SIL OFL, from the pylopdf-fonts-zh-cn wheel), loaded once per process.

fpdf2 parses and subsets the font for every document; on the 8 MB full font that costs about half a second
a report. So reports use a pre-subset copy (ASCII, Latin, punctuation and the 6,763 GB 2312 hanzi), built
once and cached on disk, and add the full font as a fallback only when a text needs a rarer character.
Even that copy (8,000 glyphs) took fontTools a quarter of a second per document to decode (cmap, hmtx, glyf,
post) before subsetting, so its glyphs are read once per process (GlyphStore) and each document embeds a
small font built from the glyphs it used (prepare_output), which fpdf2 then subsets in milliseconds.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
import threading
from collections.abc import Iterable
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from fpdf import FPDF

FAMILY = "notosc"
FALLBACK_FAMILY = "notoscfull"
_FONT_FILE = "NotoSansSC-Regular.otf"
_SUBSET_VERSION = "2-ttf"
_lock = threading.Lock()


class FontMissingError(RuntimeError):
    """The CJK font package is not installed; the message says how to install it."""


@cache
def full_font_path() -> Path:
    """Noto Sans SC Regular as shipped in the pylopdf-fonts-zh-cn package."""
    try:
        path = Path(str(resources.files("pylopdf_fonts_zh_cn").joinpath(_FONT_FILE)))
    except ModuleNotFoundError as exc:
        raise FontMissingError("install pylopdf-fonts-zh-cn (pip install pylopdf-fonts-zh-cn)") from exc
    if not path.is_file():
        raise FontMissingError(f"{path} is missing; reinstall pylopdf-fonts-zh-cn")
    return path


def font_directory() -> Path:
    """The folder holding the font files, for renderers that take a directory (vl-convert)."""
    return full_font_path().parent


def _subset_codepoints() -> set[int]:
    points = set(range(0x20, 0x7F)) | set(range(0xA0, 0x250))
    points |= set(range(0x2000, 0x2070)) | set(range(0x2100, 0x2200)) | set(range(0x2190, 0x2200))
    points |= set(range(0x2200, 0x2300)) | set(range(0x25A0, 0x2600)) | set(range(0x3000, 0x3040))
    points |= set(range(0xFF00, 0xFFF0)) | set(range(0x0370, 0x0400))
    # GB 2312: symbols (rows 0xA1-0xA9) and both levels of hanzi (rows 0xB0-0xF7).
    for hi in [*range(0xA1, 0xAA), *range(0xB0, 0xF8)]:
        for lo in range(0xA1, 0xFF):
            try:
                points.add(ord(bytes((hi, lo)).decode("gb2312")))
            except UnicodeDecodeError:
                continue
    return points


def _cache_dir() -> Path:
    configured = os.environ.get("CARELOOP_CACHE_DIR")
    if configured:
        return Path(configured)
    return Path(__file__).resolve().parent.parent / "data" / "cache"


def _build_subset(source: Path, target: Path) -> None:
    from fontTools import subset  # type: ignore[import-untyped]
    from fontTools.ttLib import TTFont  # type: ignore[import-untyped]

    options = subset.Options()
    options.layout_features = []
    options.name_IDs = ["*"]
    options.notdef_outline = True
    options.hinting = False
    font = TTFont(str(source), lazy=True, recalcTimestamp=False)
    subsetter = subset.Subsetter(options)
    subsetter.populate(unicodes=_subset_codepoints())
    subsetter.subset(font)
    _cff_to_glyf(font)
    buf = io.BytesIO()
    font.save(buf)
    target.parent.mkdir(parents=True, exist_ok=True)
    # Written next to the target and renamed: parallel processes never read a half-written file.
    fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".tmp")
    with os.fdopen(fd, "wb") as fh:
        fh.write(buf.getvalue())
    os.replace(tmp, target)


def _cff_to_glyf(font: Any) -> None:
    """Convert CFF outlines to TrueType (quadratic) ones, as fontTools' otf2ttf snippet does: fpdf2 subsets a
    glyf font by copying glyph records, where a CFF font makes it run every charstring (ten times slower)."""
    from fontTools.pens.cu2quPen import Cu2QuPen  # type: ignore[import-untyped]
    from fontTools.pens.ttGlyphPen import TTGlyphPen  # type: ignore[import-untyped]
    from fontTools.ttLib import newTable

    order = font.getGlyphOrder()
    glyph_set = font.getGlyphSet()
    quadratic = {}
    for name in order:
        pen = TTGlyphPen(glyph_set)
        glyph_set[name].draw(Cu2QuPen(pen, 1.0, reverse_direction=True))
        quadratic[name] = pen.glyph()
    font["loca"] = newTable("loca")
    font["glyf"] = glyf = newTable("glyf")
    glyf.glyphOrder = order
    glyf.glyphs = quadratic
    del font["CFF "]
    if "VORG" in font:
        del font["VORG"]
    glyf.compile(font)
    hmtx = font["hmtx"]
    for name, glyph in glyf.glyphs.items():
        if hasattr(glyph, "xMin"):
            hmtx[name] = (hmtx[name][0], glyph.xMin)
    font["maxp"] = maxp = newTable("maxp")
    maxp.tableVersion = 0x00010000
    for attr in ("maxZones",):
        setattr(maxp, attr, 1)
    for attr in ("maxTwilightPoints", "maxStorage", "maxFunctionDefs", "maxInstructionDefs", "maxStackElements",
                 "maxSizeOfInstructions", "maxComponentElements"):
        setattr(maxp, attr, 0)
    maxp.compile(font)
    post = font["post"]
    post.formatType = 2.0
    post.extraNames = []
    post.mapping = {}
    post.glyphOrder = order
    font["head"].glyphDataFormat = 0
    font.sfntVersion = "\000\001\000\000"


@cache
def report_font_path() -> Path:
    """The subset font file, built on first use (tens of seconds, once per machine) and reused after."""
    source = full_font_path()
    stat = source.stat()
    key = hashlib.sha256(f"{source}:{stat.st_size}:{stat.st_mtime_ns}:{_SUBSET_VERSION}".encode()).hexdigest()[:16]
    target = _cache_dir() / f"NotoSansSC-subset-{key}.ttf"
    with _lock:
        if not target.is_file():
            try:
                _build_subset(source, target)
            except OSError:
                return source  # a read-only tree: fall back to the full font (slower, still correct)
    return target


@cache
def subset_charset() -> frozenset[int]:
    from fontTools.ttLib import TTFont

    font = TTFont(str(report_font_path()), lazy=True)
    return frozenset(int(c) for c in font.getBestCmap())


def needs_fallback(texts: Iterable[str]) -> bool:
    charset = subset_charset()
    return any(ord(ch) not in charset for text in texts for ch in text if not ch.isspace())


@cache
def _font_bytes() -> bytes:
    return report_font_path().read_bytes()


_template: Any = None


def _add_cached(pdf: FPDF) -> bool:
    """Give `pdf` a copy of a TTFFont parsed once per process (cmap, widths, glyph ids: a quarter of a report's
    time when parsed per document) with its own font tables and subset map, since fpdf2 subsets the tables in
    place when it writes the file. Relies on fpdf2 internals (pinned 2.8.x); False means "use add_font"."""
    global _template
    try:
        import copy

        from fontTools.ttLib import TTFont
        from fpdf.fonts import SubsetMap

        with _lock:
            if _template is None:
                scratch = FPDF()
                scratch.add_font(FAMILY, "", str(report_font_path()))
                _template = scratch.fonts[FAMILY]
        font = copy.copy(_template)
        font.i = len(pdf.fonts) + 1
        font.ttfont = TTFont(io.BytesIO(_font_bytes()), recalcTimestamp=False, lazy=True)
        font.missing_glyphs = []
        font.biggest_size_pt = 0
        font._hbfont = None
        font.color_font = None
        font.subset = SubsetMap(font)
        pdf.fonts[FAMILY] = font
        return True
    except Exception:  # noqa: BLE001 - an fpdf2 upgrade changed the internals: fall back to the public API
        return False


class GlyphStore:
    """The report font's glyphs, metrics and small tables, read once per process: raw glyph records by name
    (TrueType outlines, copied as bytes), advance widths, the cmap, and the raw head/hhea/maxp/OS/2/name."""

    def __init__(self, path: Path) -> None:
        from fontTools.ttLib import TTFont

        font = TTFont(str(path), lazy=True)
        self.order: list[str] = list(font.getGlyphOrder())
        self.gid = {name: n for n, name in enumerate(self.order)}
        reader = font.reader
        glyf = reader["glyf"]
        locations = list(font["loca"].locations)
        self.records = [bytes(glyf[locations[n]:locations[n + 1]]) for n in range(len(self.order))]
        self.metrics: dict[str, tuple[int, int]] = dict(font["hmtx"].metrics)
        self.cmap: dict[int, str] = dict(font.getBestCmap())
        self.raw = {tag: bytes(reader[tag]) for tag in ("head", "hhea", "maxp", "OS/2", "name")}
        post = font["post"]
        self.post = {a: getattr(post, a) for a in ("italicAngle", "underlinePosition", "underlineThickness",
                                                    "isFixedPitch", "minMemType42", "maxMemType42",
                                                    "minMemType1", "maxMemType1")}
        font.close()

    def mini_font(self, names: Iterable[str], unicodes: Iterable[int]) -> Any:
        """A TTFont holding only `names` (and glyphs 0-3, which fpdf2's subsetter always keeps), with the
        original glyph names so fpdf2 finds each glyph's new id; no composite glyphs in the cached subset
        (CFF outlines converted one by one), so no closure is needed."""
        from fontTools.ttLib import TTFont, newTable
        from fontTools.ttLib.tables._c_m_a_p import CmapSubtable  # type: ignore[import-untyped]
        from fontTools.ttLib.tables._g_l_y_f import Glyph  # type: ignore[import-untyped]

        keep = sorted(set(self.order[:4]) | {n for n in names if n in self.gid}, key=self.gid.__getitem__)
        font = TTFont(recalcBBoxes=False, recalcTimestamp=False)
        font.setGlyphOrder(keep)
        for tag, data in self.raw.items():
            table = newTable(tag)
            table.decompile(data, font)
            font[tag] = table
        glyf = newTable("glyf")
        glyf.glyphOrder = keep
        glyf.glyphs = {n: Glyph(self.records[self.gid[n]]) for n in keep}
        font["glyf"] = glyf
        font["loca"] = newTable("loca")
        hmtx = newTable("hmtx")
        hmtx.metrics = {n: self.metrics[n] for n in keep}
        font["hmtx"] = hmtx
        post = newTable("post")
        post.formatType = 3.0
        for attr, value in self.post.items():
            setattr(post, attr, value)
        font["post"] = post
        sub = CmapSubtable.newSubtable(4)
        sub.platformID, sub.platEncID, sub.language = 3, 1, 0
        sub.cmap = {u: self.cmap[u] for u in unicodes if u <= 0xFFFF and u in self.cmap}
        cmap = newTable("cmap")
        cmap.tableVersion = 0
        cmap.tables = [sub]
        font["cmap"] = cmap
        return font


@cache
def glyph_store() -> GlyphStore:
    return GlyphStore(report_font_path())


def prepare_output(pdf: FPDF) -> None:
    """Before pdf.output(): give the report font a small font of the glyphs this document used, so fpdf2's
    subsetting no longer decodes the whole 8,000-glyph file. Other fonts (the full-font fallback) are left
    as they are. Relies on fpdf2 internals (pinned 2.8.x); without them the normal path still works."""
    from fpdf.fonts import TTFFont

    path = str(report_font_path())
    for font in pdf.fonts.values():
        subset = getattr(font, "subset", None)
        if not isinstance(font, TTFFont) or str(font.ttffile) != path or subset is None:
            continue
        glyphs = [g for g, _ in subset.items() if g is not None]
        unicodes = [u for g in glyphs if isinstance(g.unicode, tuple) for u in g.unicode]
        old = font.ttfont
        font.ttfont = glyph_store().mini_font((g.glyph_name for g in glyphs), unicodes)
        if old is not None:
            old.close()


def register(pdf: FPDF, *, texts: Iterable[str] = ()) -> str:
    """Add the report font and return its family name. Regular only: a second style of the same file would be
    parsed and subset again (doubling the cost), so headings use size and colour, and tables pass
    FontFace(emphasis="") for their heading rows. The full font joins as a fallback when one of `texts`
    has a character outside the subset."""
    path = report_font_path()
    if path == full_font_path() or not _add_cached(pdf):
        pdf.add_font(FAMILY, "", str(path))
    # The cached subset already has correct glyph boxes: recomputing them made fontTools decode and re-encode
    # every glyph of each report's subset (a fifth of a report's time).
    for font in pdf.fonts.values():
        ttfont = getattr(font, "ttfont", None)
        if ttfont is not None:
            ttfont.recalcBBoxes = False
    if path != full_font_path() and needs_fallback(texts):
        pdf.add_font(FALLBACK_FAMILY, "", str(full_font_path()))
        pdf.set_fallback_fonts([FALLBACK_FAMILY], exact_match=False)
    return FAMILY


def warm_up() -> None:
    """Build or load the cached subset and read its glyphs now (the CLI, batch workers and benchmarks call
    this before timing)."""
    subset_charset()
    glyph_store()
