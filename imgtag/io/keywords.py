"""The keywords a user already gave their photos, as photo managers store them: what `imgtag learn` learns from.

Read-only: nothing here opens a file for writing. Per photo ``photo.ext`` the keywords come from

* XMP sidecars ``photo.ext.xmp`` (darktable, digiKam) and ``photo.xmp`` (Lightroom, digiKam option), either
  spelling of ``.xmp``/``.XMP``, both when both exist;
* XMP embedded in the file: JPEG (APP1 ``http://ns.adobe.com/xap/1.0/``), TIFF and TIFF-based RAW/DNG (tag 700),
  PNG (iTXt ``XML:com.adobe.xmp``), WebP (``XMP `` chunk), HEIC/HEIF (through pillow-heif when installed);
* IPTC-IIM Keywords (2:25) in JPEG (APP13 ``Photoshop 3.0`` resource 0x0404) and TIFF (tag 33723, or tag 34377's
  Photoshop resources). The text is UTF-8 when the record says so (1:90 = ESC % G) or when the bytes are valid
  UTF-8 with non-ASCII characters; otherwise Latin-1 (cp1252), what older tools wrote.

From XMP: ``lr:hierarchicalSubject`` ("Family|Kids|Mia"), ``digiKam:TagsList`` ("Family/Kids/Mia", read as the
same path) and the flat ``dc:subject``. A flat keyword that is a level of one of the photo's paths is that path
(Lightroom also writes every level of a path into dc:subject); :func:`resolve_flat` later maps a flat keyword to
the one path of the library that ends with it, when there is exactly one.

Keywords imgtag wrote are not the user's and are ignored: the ``imgtag|...``/``imgtag/...`` paths, the labels of
``imgtag:Scores``, and every value of imgtag's provenance properties (``imgtag:Added...``, whatever they list).
When a provenance list exists, ``imgtag:AddedSubjects`` says exactly which flat keywords imgtag added (a user's
own keyword that imgtag also scored stays the user's); without one, a flat keyword equal
to an ``imgtag|`` label is taken as imgtag's (a user keyword spelled the same is then missed, the same caveat
as the sidecar merge).

Problems are reported, never raised: an unreadable or malformed sidecar, or an unreadable embedded packet, makes
the photo unusable (its keywords are unknown: it is reported and skipped); a keyword with ``|`` or ``/`` inside
a level (it would become extra levels in Lightroom or digiKam) or with control characters is reported and
skipped. Each problem is one line naming the file.
"""
from __future__ import annotations

import re
import struct
import xml.etree.ElementTree as ET
import zlib
from collections import defaultdict
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path

try:
    from defusedxml.ElementTree import parse as _xml_parse
except ImportError:  # the DOCTYPE/ENTITY refusal below guards the stdlib parser
    from xml.etree.ElementTree import parse as _xml_parse

SEP = "|"
IMGTAG_PREFIX = "imgtag"
_RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
_DC = "{http://purl.org/dc/elements/1.1/}subject"
_LR = "{http://ns.adobe.com/lightroom/1.0/}hierarchicalSubject"
_DK = "{http://www.digikam.org/ns/1.0/}TagsList"
_IMGTAG_NS = "{http://ns.imgtag.dev/1.0/}"
_LI, _DESC = f"{{{_RDF}}}li", f"{{{_RDF}}}Description"
_CONTAINERS = {f"{{{_RDF}}}Bag", f"{{{_RDF}}}Seq", f"{{{_RDF}}}Alt"}
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_XMP_APP1 = b"http://ns.adobe.com/xap/1.0/\x00"
_MAX_PACKET = 16 << 20


class KeywordError(ValueError):
    """A keyword source cannot be read; str() is one line naming the file."""


@dataclass
class XmpKeywords:
    subject: list[str] = field(default_factory=list)
    hierarchical: list[str] = field(default_factory=list)  # "A|B|C"
    tags: list[str] = field(default_factory=list)  # digiKam "A/B/C"
    imgtag: list[str] = field(default_factory=list)  # values of imgtag's own properties
    provenance: bool = False  # an imgtag:Added... list was present
    added_subjects: list[str] = field(default_factory=list)  # imgtag:AddedSubjects: the dc:subject entries it added


@dataclass
class PhotoKeywords:
    path: Path
    keywords: list[str]  # keyword paths, levels joined by "|"; a flat keyword is a one-level path
    sources: list[str]  # where they came from: sidecar file names, "XMP", "IPTC"
    flat: set[str] = field(default_factory=set)  # keywords that were flat (resolve_flat may map them to paths)


# ----------------------------------------------------------------------------- XMP


def parse_xmp(data: bytes, name: str = "XMP") -> XmpKeywords:
    """The keyword properties of an XMP packet or sidecar. Raises KeywordError if it is not parseable XMP."""
    if re.search(rb"<!\s*(DOCTYPE|ENTITY)", data, re.IGNORECASE) or re.search(rb"<\x00!\x00", data):
        raise KeywordError(f"{name}: refusing XMP with a DOCTYPE/ENTITY declaration")
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):  # UTF-16 (XMP allows it): re-encode, or the NUL strip below breaks it
        try:
            text = data.decode("utf-16")
        except UnicodeDecodeError as e:
            raise KeywordError(f"{name}: malformed XMP (bad UTF-16: {e})") from e
        text = re.sub(r"""^(\s*<\?xml[^>]*encoding=)["'][^"']*["']""", r'\1"UTF-8"', text.lstrip("\ufeff"))
        data = text.encode("utf-8")
    data = data.rstrip(b"\x00 \t\r\n")
    try:
        root = _xml_parse(BytesIO(data)).getroot()
    except Exception as e:  # noqa: BLE001 - ParseError, defusedxml's errors, encoding errors
        raise KeywordError(f"{name}: malformed XMP ({' '.join(str(e).split())})") from e
    if root.tag != f"{{{_RDF}}}RDF" and root.find(f".//{{{_RDF}}}RDF") is None:
        raise KeywordError(f"{name}: not XMP (no rdf:RDF)")
    out = XmpKeywords()
    for d in root.iter(_DESC):
        for tag, dest in ((_DC, out.subject), (_LR, out.hierarchical), (_DK, out.tags)):
            dest += _items(d, tag)
        for k, v in d.attrib.items():
            if k.startswith(_IMGTAG_NS):
                out.imgtag.append(v)
        for prop in d:
            if isinstance(prop.tag, str) and prop.tag.startswith(_IMGTAG_NS):
                local = prop.tag[len(_IMGTAG_NS):]
                vals = _items(d, prop.tag)
                if local == "Scores":
                    vals = [v.rpartition("=")[0] or v for v in vals]
                if local.startswith("Added"):
                    out.provenance = True
                if local == "AddedSubjects":
                    out.added_subjects += vals
                out.imgtag += vals
    return out


def _items(desc: ET.Element, tag: str) -> list[str]:
    out = []
    if tag in desc.attrib:
        out.append(desc.attrib[tag])
    for prop in desc.findall(tag):
        container = next((c for c in prop if c.tag in _CONTAINERS), None)
        if container is not None:
            out += [li.text or "" for li in container.findall(_LI)]
        elif prop.text and prop.text.strip():
            out.append(prop.text)
    return out


# ----------------------------------------------------------------------------- embedded metadata


def _iptc_keywords(data: bytes) -> list[str]:
    """Keywords (2:25) of an IPTC-IIM block, decoded per its 1:90 coded character set."""
    raw, utf8, i = [], False, 0
    while i + 5 <= len(data) and data[i] == 0x1C:
        rec, ds, n = data[i + 1], data[i + 2], struct.unpack(">H", data[i + 3:i + 5])[0]
        i += 5
        if n & 0x8000:  # extended dataset: the next (n & 0x7fff) bytes hold the length
            k = n & 0x7FFF
            n = int.from_bytes(data[i:i + k], "big")
            i += k
        value = data[i:i + n]
        i += n
        if (rec, ds) == (1, 90):
            utf8 = value == b"\x1b%G"
        elif (rec, ds) == (2, 25):
            raw.append(value)
    out = []
    for v in raw:
        if utf8:
            out.append(v.decode("utf-8", "replace"))
            continue
        try:  # no charset record: valid UTF-8 with non-ASCII bytes is UTF-8 (tools often omit 1:90)
            out.append(v.decode("utf-8"))
        except UnicodeDecodeError:
            out.append(v.decode("cp1252", "replace"))
    return out


def _photoshop_iptc(data: bytes) -> bytes | None:
    """The IPTC block (resource 0x0404) of Photoshop image resources ("8BIM" records)."""
    i = 0
    while i + 12 <= len(data) and data[i:i + 4] == b"8BIM":
        rid = struct.unpack(">H", data[i + 4:i + 6])[0]
        nlen = data[i + 6]
        j = i + 6 + 1 + nlen + ((1 + nlen) % 2)  # Pascal name padded to even
        size = struct.unpack(">I", data[j:j + 4])[0]
        body = data[j + 4:j + 4 + size]
        if rid == 0x0404:
            return body
        i = j + 4 + size + (size % 2)
    return None


def _jpeg(f) -> tuple[list[bytes], list[bytes]]:
    xmps, iptcs = [], []
    f.seek(2)
    while True:
        b = f.read(2)
        if len(b) < 2 or b[0] != 0xFF:
            break
        marker = b[1]
        while marker == 0xFF:  # fill bytes
            marker = f.read(1)[0]
        if marker in (0xD9, 0xDA):  # EOI / SOS: no metadata after the scan starts
            break
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:
            continue
        n = struct.unpack(">H", f.read(2))[0]
        if marker in (0xE1, 0xED):
            seg = f.read(n - 2)
            if marker == 0xE1 and seg.startswith(_XMP_APP1):
                xmps.append(seg[len(_XMP_APP1):])
            elif marker == 0xED and seg.startswith(b"Photoshop 3.0\x00"):
                block = _photoshop_iptc(seg[14:])
                if block:
                    iptcs.append(block)
        else:
            f.seek(n - 2, 1)
    return xmps, iptcs


_TIFF_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 13: 4, 16: 8}


def _tiff(f, head: bytes) -> tuple[list[bytes], list[bytes]]:
    e = "<" if head[:2] == b"II" else ">"
    if head[2:4] in (b"\x2b\x00", b"\x00\x2b"):  # BigTIFF: not read
        return [], []
    f.seek(4)
    (ifd,) = struct.unpack(e + "I", f.read(4))
    f.seek(ifd)
    (n,) = struct.unpack(e + "H", f.read(2))
    entries = [struct.unpack(e + "HHI4s", f.read(12)) for _ in range(min(n, 4096))]
    xmps, iptcs = [], []
    for tag, typ, count, value in entries:
        if tag not in (700, 33723, 34377):
            continue
        size = _TIFF_SIZES.get(typ, 1) * count
        if size > _MAX_PACKET:
            continue
        if size <= 4:
            data = value[:size]
        else:
            f.seek(struct.unpack(e + "I", value)[0])
            data = f.read(size)
        if tag == 700:
            xmps.append(data)
        elif tag == 33723:
            iptcs.append(data)
        elif (block := _photoshop_iptc(data)) is not None:
            iptcs.append(block)
    return xmps, iptcs


def _png(f) -> list[bytes]:
    f.seek(8)
    out = []
    while True:
        h = f.read(8)
        if len(h) < 8:
            break
        n, kind = struct.unpack(">I4s", h)
        if kind == b"iTXt" and n < _MAX_PACKET:
            chunk = f.read(n)
            key, _, rest = chunk.partition(b"\x00")
            if key == b"XML:com.adobe.xmp" and len(rest) >= 2:
                compressed, text = rest[0], rest[2:]
                _lang, _, text = text.partition(b"\x00")
                _translated, _, text = text.partition(b"\x00")
                out.append(zlib.decompress(text) if compressed else text)
            f.seek(4, 1)
        elif kind == b"IEND":
            break
        else:
            f.seek(n + 4, 1)
    return out


def _webp(f) -> list[bytes]:
    f.seek(12)
    out = []
    while True:
        h = f.read(8)
        if len(h) < 8:
            break
        kind, n = h[:4], struct.unpack("<I", h[4:])[0]
        if kind == b"XMP " and n < _MAX_PACKET:
            out.append(f.read(n))
            f.seek(n % 2, 1)
        else:
            f.seek(n + n % 2, 1)
    return out


def _heif(path: Path) -> list[bytes]:
    try:
        import pillow_heif
    except ImportError:  # without the plugin HEIC photos are not decoded either
        return []
    x = pillow_heif.open_heif(str(path)).info.get("xmp")
    return [x] if x else []


def embedded_metadata(path: str | Path) -> tuple[list[bytes], list[bytes]]:
    """``(xmp packets, iptc blocks)`` embedded in an image file, found by its leading bytes; reads headers only.
    Raises OSError if the file cannot be read, KeywordError if its structure is broken."""
    path = Path(path)
    with open(path, "rb") as f:
        head = f.read(16)
        try:
            if head[:2] == b"\xff\xd8":
                return _jpeg(f)
            if head[:4] in (b"II*\x00", b"MM\x00*", b"IIRO", b"IIU\x00") or head[:4] in (b"II+\x00", b"MM\x00+"):
                return _tiff(f, head)
            if head[:8] == b"\x89PNG\r\n\x1a\n":
                return _png(f), []
            if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
                return _webp(f), []
        except (struct.error, IndexError, zlib.error, ValueError) as e:
            raise KeywordError(f"{path}: broken metadata structure ({type(e).__name__}: {e})") from e
    if head[4:8] == b"ftyp" and head[8:12] in (b"heic", b"heix", b"mif1", b"msf1", b"heim", b"heis", b"hevc"):
        try:
            return _heif(path), []
        except Exception as e:  # noqa: BLE001 - the plugin's own errors
            raise KeywordError(f"{path}: unreadable HEIF metadata ({e})") from e
    return [], []


# ----------------------------------------------------------------------------- per photo


def sidecars_of(path: str | Path) -> list[Path]:
    """The existing sidecars of a photo: ``photo.ext.xmp`` then ``photo.xmp`` (either case of .xmp)."""
    p = Path(path)
    out = []
    for base in (p.parent / p.name, p.with_suffix("")):
        for suffix in (".xmp", ".XMP"):
            c = base.parent / (base.name + suffix)
            if c.is_file() and c not in out and c != p:
                out.append(c)
                break
    return out


def _clean(levels: list[str], sep_inside: str, where: str, problems: list[str]) -> str | None:
    levels = [" ".join(x.split()) for x in levels]
    levels = [x for x in levels if x]
    if not levels:
        return None
    for x in levels:
        bad = next((c for c in ("|", "/") if c in x), None) if sep_inside == "any" else (sep_inside if sep_inside in x else None)
        if bad:
            problems.append(f"{where}: keyword {'|'.join(levels)!r} has {bad!r} inside a level "
                            "(Lightroom/digiKam would read extra levels): skipped")
            return None
        if _CONTROL.search(x):
            problems.append(f"{where}: keyword {'|'.join(levels)!r} has control characters: skipped")
            return None
    return SEP.join(levels)


def photo_keywords(path: str | Path, problems: list[str], embedded: bool = True) -> PhotoKeywords | None:
    """The user's keywords of one photo (see the module docstring), or None when a source of them is unreadable
    (the photo's keywords are then unknown; the reason is appended to ``problems``)."""
    path = Path(path)
    packets: list[tuple[str, XmpKeywords]] = []
    flat_iptc: list[str] = []
    sources = []
    try:
        for sc in sidecars_of(path):
            try:
                data = sc.read_bytes()
            except OSError as e:
                raise KeywordError(f"{sc}: unreadable sidecar ({e.strerror or e})") from e
            try:
                packets.append((sc.name, parse_xmp(data, str(sc))))
            except KeywordError as e:
                raise KeywordError(f"{e}; photo skipped") from e
            sources.append(sc.name)
        if embedded:
            try:
                xmps, iptcs = embedded_metadata(path)
            except OSError as e:
                raise KeywordError(f"{path}: unreadable ({e.strerror or e})") from e
            for x in xmps:
                packets.append(("XMP", parse_xmp(x, f"{path} (embedded XMP)")))
            sources += ["XMP"] * bool(xmps)
            for block in iptcs:
                flat_iptc += _iptc_keywords(block)
            sources += ["IPTC"] * bool(iptcs)
    except KeywordError as e:
        problems.append(str(e))
        return None

    paths: list[str] = []
    flat: list[tuple[str, str]] = []
    for where, x in packets:
        loc = f"{path}" if where == "XMP" else f"{path.parent / where}"
        ours = set(x.imgtag)
        hp, tp = IMGTAG_PREFIX + "|", IMGTAG_PREFIX + "/"
        ours_flat = set(x.added_subjects) if x.provenance else ours | {h[len(hp):] for h in x.hierarchical if h.startswith(hp)} \
            | {t[len(tp):] for t in x.tags if t.startswith(tp)}
        for h in x.hierarchical:
            if not h.startswith(hp) and h not in ours:
                if (k := _clean(h.split("|"), "/", loc, problems)) is not None:
                    paths.append(k)
        for t in x.tags:
            if not t.startswith(tp) and t not in ours:
                if (k := _clean(t.split("/"), "|", loc, problems)) is not None:
                    paths.append(k)
        flat += [(s, loc) for s in x.subject if s not in ours_flat]
    flat += [(s, f"{path} (IPTC)") for s in flat_iptc]

    levels = {lv for p in paths for lv in p.split(SEP)}
    flats = set()
    for s, loc in flat:
        k = _clean([s], "any", loc, problems)
        if k is not None and k not in levels:
            flats.add(k)
            paths.append(k)
    return PhotoKeywords(path, list(dict.fromkeys(paths)), sources, flats)


def resolve_flat(photos: list[PhotoKeywords]) -> dict[str, str]:
    """Map each flat keyword to the one keyword path of the library ending with it (when exactly one exists),
    so "dog" from an IPTC-only photo and "Animals|Pets|dog" from a sidecar are one keyword. Applied in place;
    returns the mapping."""
    by_leaf: dict[str, set[str]] = defaultdict(set)
    for ph in photos:
        for k in ph.keywords:
            if SEP in k:
                by_leaf[k.rsplit(SEP, 1)[1]].add(k)
    mapping = {f: next(iter(by_leaf[f])) for ph in photos for f in ph.flat if len(by_leaf.get(f, ())) == 1}
    for ph in photos:
        if ph.flat & mapping.keys():
            ph.keywords = list(dict.fromkeys(mapping.get(k, k) for k in ph.keywords))
    return mapping


def orphan_sidecars(inputs, photos, recursive: bool = True) -> list[Path]:
    """XMP sidecars under the directories among ``inputs`` that belong to none of ``photos`` (their photo was
    deleted, moved or is not an image imgtag reads): keywords without an image to learn from. Walks like the
    image discovery: hidden entries skipped, symlinked directories not entered, unreadable folders passed over
    (the discovery reports those)."""
    import os

    claimed = set()
    for p in photos:
        for sc in sidecars_of(p):
            claimed.add(os.path.abspath(sc))
    out = []
    for root in inputs:
        if not os.path.isdir(root):
            continue
        for d, dirs, files in os.walk(root, followlinks=False):
            dirs[:] = sorted(x for x in dirs if not x.startswith(".")) if recursive else []
            for f in sorted(files):
                full = os.path.join(d, f)
                if f.lower().endswith(".xmp") and not f.startswith(".") and os.path.abspath(full) not in claimed \
                        and os.path.isfile(full):
                    out.append(Path(full))
    return out


def harvest(paths, problems: list[str], embedded: bool = True) -> list[PhotoKeywords]:
    """:func:`photo_keywords` for every photo (unusable ones left out, reported in ``problems``), flat keywords
    resolved to paths (:func:`resolve_flat`)."""
    out = [pk for p in paths if (pk := photo_keywords(p, problems, embedded)) is not None]
    resolve_flat(out)
    return out
