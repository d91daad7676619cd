"""XMP sidecars that photo managers read (Lightroom, digiKam, darktable, exiftool), with provenance and undo.

Keyword fields written for each label (a flat keyword plus its hierarchy path, e.g. "golden retriever" at
"animal|dog|golden retriever"):

* `dc:subject`                    rdf:Bag, the flat keyword                 (every tool; exiftool Subject)
* `lr:hierarchicalSubject`        rdf:Bag, the path with "|"                (Lightroom, darktable, digiKam)
* `digiKam:TagsList`              rdf:Seq, the path with "/"                (digiKam)
* `MicrosoftPhoto:LastKeywordXMP` rdf:Bag, as TagsList, only when the file already has it (digiKam keeps it
  in step with TagsList)

`keyword_root` (e.g. "imgtag", like digiKam's "auto/") puts every path under one top-level keyword; the default
is none. In imgtag's own namespace (xmlns:imgtag="http://ns.imgtag.dev/1.0/", plain strings, so exiftool reads
them with no config file): `imgtag:Scores` ("label=0.9123" items), `imgtag:Model`, `imgtag:SidecarFormat` ("2")
and the provenance: `imgtag:AddedSubjects`, `imgtag:AddedHierarchicalSubjects`, `imgtag:AddedTagsList`,
`imgtag:AddedLastKeywordXMP` hold exactly the entries imgtag added to each field, and `imgtag:CreatedSidecar`
says imgtag created the file.

Ownership and undo. An entry is imgtag's only if imgtag added it: a keyword the user already had is never
recorded (it stays the user's when imgtag later stops predicting it). A re-run ("merge") removes imgtag's
recorded entries and adds the new ones; `untag_sidecar` removes them and every imgtag: property, and deletes
the file only if imgtag created it and nothing else is left. Every property imgtag does not change is kept
as it was (only the four keyword fields are rewritten, user entries in their order and container).
Sidecars written by imgtag before provenance existed ("imgtag|label" / "imgtag/label" entries, imgtag:Scores)
are recognised: those entries and the same labels in dc:subject count as imgtag's.

Readers that take only the first keyword field they find would lose the user's keywords when imgtag adds a
field the file did not have; so imgtag also copies them (and records the copies as its own, so untag removes
them again):
* darktable reads `dc:subject` only when `lr:hierarchicalSubject` is absent: when imgtag adds the latter to a
  file with flat keywords only, the user's `dc:subject` keywords are added to it too.
* digiKam reads the first non-empty of TagsList, LastKeywordXMP, hierarchicalSubject, ..., dc:subject: when
  imgtag adds TagsList to a file without one, the user's entries of the field digiKam read are added too.

Keyword text: control characters (which libexiv2 refuses) become spaces, runs of white space one space; a "|"
inside a keyword becomes "¦" (U+00A6) everywhere, because it separates levels in lr:hierarchicalSubject and
darktable reads it so even in dc:subject; a "/" stays as it is except in the "/"-separated digiKam fields,
where it becomes "∕" (U+2215). So "AC/DC" stays one keyword in every tool.

Layout: the file is re-serialised in exiftool's layout (one-space indent, namespaces declared on each
rdf:Description); the xpacket wrapper (with its `end="r"`/`"w"` and its padding) or its absence, and an XML
declaration, are kept as the file had them. XML comments and the original whitespace are not kept. Parsing
refuses DOCTYPE/ENTITY declarations (entity bombs) and uses defusedxml when installed. A malformed or
unreadable sidecar raises XmpError (one line) and is left as it is. Writes are atomic.

Naming (`sidecar_path`, `SidecarNamer`): see `sidecar_path`.
"""
from __future__ import annotations

import io
import os
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from xml.sax.saxutils import escape

from .atomic import atomic_write_bytes
from .formats import image_extensions, is_raw

try:
    from defusedxml.ElementTree import iterparse as _iterparse
except ImportError:  # our own DOCTYPE/ENTITY check below guards the stdlib parser
    from xml.etree.ElementTree import iterparse as _iterparse

NS = {
    "x": "adobe:ns:meta/",
    "rdf": "http://www.w3.org/1999/02/22-rdf-syntax-ns#",
    "dc": "http://purl.org/dc/elements/1.1/",
    "lr": "http://ns.adobe.com/lightroom/1.0/",
    "digiKam": "http://www.digikam.org/ns/1.0/",
    "MicrosoftPhoto": "http://ns.microsoft.com/photo/1.0/",
    "imgtag": "http://ns.imgtag.dev/1.0/",
}
XML_NS = "http://www.w3.org/XML/1998/namespace"
NAMINGS = ("auto", "ext", "stem")


def _q(qname: str) -> str:
    prefix, local = qname.split(":")
    return f"{{{NS[prefix]}}}{local}"


XMPMETA, RDF, DESC, ABOUT = _q("x:xmpmeta"), _q("rdf:RDF"), _q("rdf:Description"), _q("rdf:about")
LI = _q("rdf:li")
SUBJECT, HIER, TAGS = _q("dc:subject"), _q("lr:hierarchicalSubject"), _q("digiKam:TagsList")
LASTKW = _q("MicrosoftPhoto:LastKeywordXMP")
LASTKW_EXIFTOOL = "{http://ns.microsoft.com/photo/1.0}LastKeywordXMP"  # exiftool's URI has no final "/"
SCORES, MODEL = _q("imgtag:Scores"), _q("imgtag:Model")
FORMAT, CREATED = _q("imgtag:SidecarFormat"), _q("imgtag:CreatedSidecar")
FIELDS = (SUBJECT, HIER, TAGS, LASTKW)  # the keyword fields imgtag edits
ADDED = {SUBJECT: _q("imgtag:AddedSubjects"), HIER: _q("imgtag:AddedHierarchicalSubjects"),
         TAGS: _q("imgtag:AddedTagsList"), LASTKW: _q("imgtag:AddedLastKeywordXMP")}
_CONTAINER = {SUBJECT: "rdf:Bag", HIER: "rdf:Bag", TAGS: "rdf:Seq", LASTKW: "rdf:Bag"}
_CONTAINERS = {_q("rdf:Bag"), _q("rdf:Seq"), _q("rdf:Alt")}
_XPACKET_BEGIN = '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>\n'
_XML_DECL = '<?xml version="1.0" encoding="UTF-8"?>\n'
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
_NOT_XML = re.compile("[\ud800-\udfff\ufffe\uffff]")  # surrogates (e.g. from undecodable names), non-characters
_LEGACY_ROOT = "imgtag"  # the fixed prefix of sidecars written before provenance (imgtag|label, imgtag/label)


class XmpError(ValueError):
    """An existing sidecar cannot be read or parsed (or is not XMP); str() is one line naming the file."""


# ----------------------------------------------------------------------------- naming


class SidecarNamer:
    """Maps images to sidecars (see `sidecar_path`); caches each folder's images that share a stem.

    Make one per run: the cache assumes the images in a folder do not change while it is used.
    """

    def __init__(self, naming: str = "auto"):
        if naming not in NAMINGS:
            raise ValueError(f"unknown sidecar naming {naming!r}; choose auto, ext or stem")
        self.naming = naming
        self._stems: dict[str, dict[str, list[str]]] = {}

    def __call__(self, image_path: str | Path) -> Path:
        p = Path(image_path)
        exact = p.parent / p.name
        stem = p.parent / os.path.splitext(p.name)[0]
        if self.naming == "ext":
            return _existing(exact) or _xmp(exact)
        if self.naming == "stem":
            return (_existing(stem) or _xmp(stem)) if self.owns_stem(p) else (_existing(exact) or _xmp(exact))
        found = _existing(exact)
        if found:
            return found
        found = _existing(stem)
        if found and self.owns_stem(p):
            return found
        return _xmp(exact)

    def stem_group(self, image_path: str | Path) -> list[str]:
        """The names of the images in the image's folder that share its stem (itself included), sorted."""
        p = Path(image_path)
        folder = os.path.normpath(p.parent)
        groups = self._stems.get(folder)
        if groups is None:
            exts, groups = image_extensions(), {}
            try:
                names = os.listdir(folder)
            except OSError:
                names = []
            for n in names:
                s, e = os.path.splitext(n)
                if e.lower() in exts:
                    groups.setdefault(s, []).append(n)
            self._stems[folder] = groups
        return sorted(set(groups.get(os.path.splitext(p.name)[0], [])) | {p.name})

    def owns_stem(self, image_path: str | Path) -> bool:
        """Whether `photo.xmp` belongs to this image: it is the only image with its stem, or the only RAW
        among them (Lightroom's RAW+JPEG convention: photo.xmp is the RAW's)."""
        p = Path(image_path)
        group = self.stem_group(p)
        if len(group) == 1:
            return True
        raws = [n for n in group if is_raw(n)]
        return raws == [p.name]


def sidecar_path(image_path: str | Path, naming: str = "auto") -> Path:
    """The sidecar of `image_path`; two images never share one.

    * "ext": `photo.jpg.xmp` (darktable; digiKam's default).
    * "stem": `photo.xmp` (Lightroom; digiKam's option) when `photo.xmp` can only be this image's: no other
      image shares the stem, or this is the only RAW among them (Lightroom: photo.xmp is the RAW's); else
      `photo.jpg.xmp`.
    * "auto": an existing exact `photo.jpg.xmp`, else an existing `photo.xmp` that can only be this image's
      (as above), else a new `photo.jpg.xmp`.

    An existing `.XMP` spelling is reused. Stem siblings are images of any extension imgtag reads.
    """
    return SidecarNamer(naming)(image_path)


def _xmp(base: Path) -> Path:
    return base.parent / (base.name + ".xmp")


def _existing(base: Path) -> Path | None:
    for suffix in (".xmp", ".XMP"):
        cand = base.parent / (base.name + suffix)
        if cand.is_file():
            return cand
    return None


def _resolve(path, naming) -> Path:
    """A sidecar path: `path` itself if it ends in .xmp, else the image's sidecar under `naming`."""
    path = Path(path)
    if path.suffix.lower() == ".xmp":
        return path
    return naming(path) if isinstance(naming, SidecarNamer) else sidecar_path(path, naming)


# ----------------------------------------------------------------------------- public API


def write_sidecar(image_path: str | Path, labels, mode: str = "merge", keyword_root: str | None = None,
                  model_name: str | None = None, naming: str | SidecarNamer = "auto") -> Path:
    """Write `labels` into the image's sidecar (see the module docstring); return the sidecar path.

    `labels`: Label records (`.label`, `.score`, optional `.path` "a|b|c"), dicts with those keys, or tuples
    (label, score) / (label, score, path). mode="merge" keeps everything imgtag did not add; mode="overwrite"
    replaces the file with only imgtag's data. Raises XmpError if a sidecar to merge into cannot be read.
    """
    if mode not in ("merge", "overwrite"):
        raise ValueError(f"unknown sidecar mode {mode!r}; choose merge or overwrite")
    if keyword_root is not None and (not clean_text(keyword_root) or any(c in keyword_root for c in "|/")):
        raise ValueError(f"invalid keyword root {keyword_root!r}: must be non-empty, without '|' or '/'")
    path = _resolve(image_path, naming)
    old = None
    if mode == "merge" and os.path.lexists(path):
        old = _read(path)
        root, prefixes, layout = _parse(old, path)
    else:
        root, prefixes, layout = _new_root(), {}, None
    _apply(root, [_entry(lab, keyword_root) for lab in labels], model_name, created=old is None)
    data = _serialize(root, prefixes, layout).encode("utf-8")
    if data != old:  # an unchanged sidecar is not rewritten (its mtime stays)
        atomic_write_bytes(path, data)
    return path


def untag_sidecar(path: str | Path, naming: str | SidecarNamer = "auto") -> str:
    """Remove everything imgtag added to a sidecar (`path` or an image's, see `sidecar_path`).

    Returns "missing" (no sidecar), "unchanged" (nothing of imgtag's in it), "untagged" (imgtag's entries and
    properties removed, the rest kept) or "deleted" (imgtag created the file and nothing else was left).
    Raises XmpError if the sidecar cannot be read.
    """
    path = _resolve(path, naming)
    if not os.path.lexists(path):
        return "missing"
    data = _read(path)
    root, prefixes, layout = _parse(data, path)
    descs = _descriptions(root)
    added, created = _provenance(descs), bool(_items(descs, CREATED))
    if not any(added.values()) and not _imgtag_properties(descs):
        return "unchanged"
    for tag in FIELDS:
        _replace_values(descs, tag, [v for v in _field_items(descs, tag) if v not in set(added[tag])])
    for d in descs:
        for key in [k for k in d.attrib if k.startswith("{" + NS["imgtag"] + "}")]:
            del d.attrib[key]
        for child in [c for c in d if c.tag.startswith("{" + NS["imgtag"] + "}")]:
            d.remove(child)
    rdf = root.find(RDF)
    empty = [d for d in descs if not len(d) and set(d.attrib) <= {ABOUT}]
    if len(empty) == len(descs):
        if created and len(rdf) == len(descs) and len(root) == 1:
            os.unlink(path)
            return "deleted"
        empty = empty[1:]  # keep one (empty) Description
    for d in empty:
        rdf.remove(d)
    atomic_write_bytes(path, _serialize(root, prefixes, layout).encode("utf-8"))
    return "untagged"


def read_sidecar(path: str | Path) -> dict:
    """The keyword data of a sidecar: {"subject", "hierarchical", "tags", "last_keyword": lists of str,
    "scores": {label: float}, "model": str | None, "added": {"subject", "hierarchical", "tags",
    "last_keyword": lists of the entries imgtag added}, "created": bool}. A missing file gives empty values;
    an unreadable or malformed one raises XmpError."""
    path = Path(path)
    keys = {SUBJECT: "subject", HIER: "hierarchical", TAGS: "tags", LASTKW: "last_keyword"}
    if not os.path.lexists(path):
        return {**{k: [] for k in keys.values()}, "scores": {}, "model": None,
                "added": {k: [] for k in keys.values()}, "created": False}
    root, _, _ = _parse(_read(path), path)
    descs = _descriptions(root)
    added = _provenance(descs)
    model = _items(descs, MODEL)
    return {**{name: _field_items(descs, tag) for tag, name in keys.items()}, "scores": _scores(descs),
            "model": model[0] if model else None, "added": {name: added[tag] for tag, name in keys.items()},
            "created": bool(_items(descs, CREATED))}


def read_sidecar_labels(path: str | Path, naming: str | SidecarNamer = "auto") -> list[str]:
    """The labels the last imgtag run wrote into a sidecar (its imgtag:Scores), in order.

    `path` is the sidecar, or an image (any path not ending in .xmp), whose sidecar is found by `naming`.
    A missing sidecar gives [] (e.g. for --resume: nothing tagged yet).
    """
    return list(read_sidecar(_resolve(path, naming))["scores"])


def is_tagged(path: str | Path, naming: str | SidecarNamer = "auto") -> bool:
    """Whether imgtag has written this sidecar (or the image's): it has imgtag:Model or imgtag:Scores, so an
    image that got no label still counts as done. Raises XmpError if the sidecar cannot be read."""
    path = _resolve(path, naming)
    if not os.path.lexists(path):
        return False
    descs = _descriptions(_parse(_read(path), path)[0])
    return bool(_items(descs, MODEL) or _items(descs, SCORES))


def clean_text(s: str) -> str:
    """A string safe in XMP for every reader: control characters (refused by libexiv2) and characters XML
    cannot carry become spaces, runs of white space one space, no leading/trailing space."""
    return " ".join(_NOT_XML.sub(" ", _CONTROL.sub(" ", str(s))).split())


def keyword_entries(label, keyword_root: str | None = None) -> tuple[str, str, str, str, float]:
    """(flat keyword, lr:hierarchicalSubject path, digiKam TagsList path, label, score) for one label,
    cleaned and escaped as the module docstring says; the flat keyword is "" if nothing is left."""
    return _entry(label, keyword_root)


# ----------------------------------------------------------------------------- editing


def _entry(lab, keyword_root):
    if isinstance(lab, dict):
        label, score, path = lab["label"], lab["score"], lab.get("path")
    elif hasattr(lab, "label"):
        label, score, path = lab.label, lab.score, getattr(lab, "path", None)
    else:
        label, score, path = (*lab, None)[:3]
    label = str(label)
    if path and str(path) != label and str(path).endswith("|" + label):
        comps = str(path)[: -len(label) - 1].split("|") + [label]  # a leaf that itself contains "|"
    elif path:
        comps = str(path).split("|")
    else:
        comps = [label]
    comps = [c for c in (_keyword(c) for c in ([keyword_root] if keyword_root else []) + comps) if c]
    flat = _keyword(label)
    if not flat or not comps:
        return ("", "", "", label, float(score))
    return (flat, "|".join(comps), "/".join(c.replace("/", "\u2215") for c in comps), label, float(score))


def _keyword(s: str) -> str:
    return clean_text(s).replace("|", "\u00a6")


def _apply(root: ET.Element, entries, model_name: str | None, created: bool) -> None:
    """Replace imgtag's entries in the tree by `entries`, keeping every other value (see module doc)."""
    descs = _descriptions(root)
    old_added = _provenance(descs)
    created = created or bool(_items(descs, CREATED))
    current = {tag: _field_items(descs, tag) for tag in FIELDS}
    user = {tag: [v for v in current[tag] if v not in set(old_added[tag])] for tag in FIELDS}
    entries = [e for e in entries if e[0]]
    want = {SUBJECT: [e[0] for e in entries], HIER: [e[1] for e in entries], TAGS: [e[2] for e in entries]}
    want[LASTKW] = want[TAGS] if _present(descs, LASTKW) else []
    if want[HIER] and not user[HIER] and user[SUBJECT]:  # darktable would stop reading dc:subject
        want[HIER] = user[SUBJECT] + want[HIER]
    if want[TAGS] and not user[TAGS]:  # digiKam would stop reading the field it read so far
        seen = user[LASTKW] or [h.replace("|", "/") for h in user[HIER]] or user[SUBJECT]
        want[TAGS] = seen + want[TAGS]
        if want[LASTKW]:
            want[LASTKW] = seen + want[LASTKW]
    for tag in FIELDS:
        have = set(user[tag])
        added = [v for v in dict.fromkeys(want[tag]) if v not in have]
        if user[tag] + added != current[tag]:
            _replace_values(descs, tag, user[tag] + added)
        _set(descs, ADDED[tag], "rdf:Bag", added)
    scores = {}
    for flat, _, _, _, score in entries:
        scores.setdefault(flat, score)
    _set(descs, SCORES, "rdf:Bag", [f"{k}={s:.4f}" for k, s in scores.items()])
    _set(descs, MODEL, None, [clean_text(model_name)] if model_name and clean_text(model_name) else [])
    _set(descs, FORMAT, None, ["2"])
    _set(descs, CREATED, None, ["True"] if created else [])


def _provenance(descs: list[ET.Element]) -> dict[str, list[str]]:
    """{field: entries imgtag added}: the imgtag:Added* lists, or for a sidecar written before provenance
    existed, its "imgtag|..." / "imgtag/..." entries and their labels in dc:subject."""
    if _items(descs, FORMAT) or not (_items(descs, SCORES) or _items(descs, MODEL)):
        return {tag: _items(descs, ADDED[tag]) for tag in FIELDS}
    hp, tp = _LEGACY_ROOT + "|", _LEGACY_ROOT + "/"
    hier = [h for h in _field_items(descs, HIER) if h.startswith(hp)]
    tags = [t for t in _field_items(descs, TAGS) if t.startswith(tp)]
    labels = {h[len(hp):] for h in hier} | {t[len(tp):] for t in tags} | set(_scores(descs))
    return {SUBJECT: [s for s in _field_items(descs, SUBJECT) if s in labels], HIER: hier, TAGS: tags, LASTKW: []}


def _scores(descs) -> dict[str, float]:
    scores = {}
    for item in _items(descs, SCORES):
        label, _, score = item.rpartition("=")
        try:
            scores[label] = float(score)
        except ValueError:  # hand-edited entry: not ours to judge
            continue
    return scores


def _imgtag_properties(descs) -> bool:
    ns = "{" + NS["imgtag"] + "}"
    return any(k.startswith(ns) for d in descs for k in d.attrib) or any(
        c.tag.startswith(ns) for d in descs for c in d)


def _descriptions(root: ET.Element) -> list[ET.Element]:
    """The rdf:Description elements, creating rdf:RDF / a Description when missing."""
    rdf = root.find(RDF)
    if rdf is None:
        rdf = ET.SubElement(root, RDF)
    descs = rdf.findall(DESC)
    if not descs:
        descs = [ET.SubElement(rdf, DESC, {ABOUT: ""})]
    return descs


def _tags_of(tag: str) -> tuple[str, ...]:
    return (LASTKW, LASTKW_EXIFTOOL) if tag == LASTKW else (tag,)


def _present(descs, tag) -> bool:
    return any(t in d.attrib or d.find(t) is not None for d in descs for t in _tags_of(tag))


def _field_items(descs, tag) -> list[str]:
    """The values of a keyword field, as stored (duplicates and order kept)."""
    return [v for t in _tags_of(tag) for v in _items(descs, t, dedupe=False)]


def _items(descs: list[ET.Element], tag: str, dedupe: bool = True) -> list[str]:
    """Values of property `tag` across descriptions: container items, element text, or an attribute."""
    out = []
    for d in descs:
        if tag in d.attrib:
            out.append(d.attrib[tag])
        for prop in d.findall(tag):
            container = next((c for c in prop if c.tag in _CONTAINERS), None)
            if container is not None:
                out += [li.text or "" for li in container.findall(LI)]
            elif prop.text and prop.text.strip():
                out.append(prop.text.strip())
    return list(dict.fromkeys(out)) if dedupe else out


def _replace_values(descs, tag, values: list[str]) -> None:
    """Set a keyword field's items, keeping the element (its URI, container kind and attributes) when the
    file has one; an empty list removes the field."""
    for t in _tags_of(tag):
        for d in descs:
            for prop in d.findall(t):
                container = next((c for c in prop if c.tag in _CONTAINERS), None)
                if container is None:
                    continue
                if not values:
                    d.remove(prop)
                    continue
                old = container.findall(LI)
                for li in old:
                    container.remove(li)
                template = {li.text: li for li in old}
                for v in values:
                    li = template.pop(v, None)
                    if li is None:
                        li = ET.Element(LI)
                        li.text = v
                    li.tail = None
                    container.append(li)
                for other in _tags_of(tag):  # the same field elsewhere (attribute form, second description)
                    for dd in descs:
                        dd.attrib.pop(other, None)
                        for p2 in dd.findall(other):
                            if p2 is not prop:
                                dd.remove(p2)
                return
    _set(descs, tag, _CONTAINER[tag], values, dedupe=False)


def _set(descs: list[ET.Element], tag: str, container: str | None, values: list[str], dedupe: bool = True) -> None:
    """Replace property `tag` (element or attribute, in any description) by `values`, in place of the
    first old element if any, else at the end of the first description; no values removes it."""
    where = None
    for d in descs:
        d.attrib.pop(tag, None)
        for child in d.findall(tag):
            if where is None:
                where = (d, list(d).index(child))
            d.remove(child)
    if dedupe:
        values = list(dict.fromkeys(values))
    if not values:
        return
    parent, index = where or (descs[0], len(descs[0]))
    prop = ET.Element(tag)
    if container is None:
        prop.text = values[0]
    else:
        c = ET.SubElement(prop, _q(container))
        for v in values:
            ET.SubElement(c, LI).text = v
    parent.insert(index, prop)


# ----------------------------------------------------------------------------- parse / serialise


def _read(path: Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise XmpError(f"{path}: cannot read sidecar: {e.strerror or type(e).__name__}, left unchanged") from e


def _new_root() -> ET.Element:
    from .. import __version__
    root = ET.Element(XMPMETA, {_q("x:xmptk"): f"imgtag {__version__}"})
    ET.SubElement(ET.SubElement(root, RDF), DESC, {ABOUT: ""})
    return root


_END = re.compile(rb"""(\s*)<\?xpacket\s+end\s*=\s*["']([rw])["']\s*\?>""")


def _layout(data: bytes) -> dict:
    """How the file wraps its XMP: xpacket or not (and its end="r|w" and padding), an XML declaration."""
    head = data.lstrip(b"\xef\xbb\xbf \t\r\n")
    end = _END.search(data)
    return {"decl": head.startswith(b"<?xml"), "xpacket": b"<?xpacket begin" in data[:200] or end is not None,
            "end": end.group(2).decode() if end else "w",
            "padding": end.group(1).decode("ascii", "replace") if end else "\n"}


def _parse(data: bytes, path) -> tuple[ET.Element, dict[str, str], dict]:
    """Parse a sidecar; return its root x:xmpmeta, the {uri: prefix} bindings it used, and its layout."""
    if re.search(rb"<!\s*(DOCTYPE|ENTITY)", data, re.IGNORECASE) or re.search(
            rb"<\x00!\x00", data):  # also the UTF-16 spelling
        raise XmpError(f"{path}: refusing to parse an XMP file with a DOCTYPE/ENTITY declaration")
    try:
        root, prefixes = _parse_xml(data)
    except Exception as e:  # noqa: BLE001 - ParseError, defusedxml's errors, encoding errors
        # imgtag before 0.2 wrote control characters of labels raw: repair its own sidecars
        bad = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f]")
        if not (bad.search(data) and NS["imgtag"].encode() in data):
            raise XmpError(f"{path}: malformed XMP sidecar, left unchanged ({' '.join(str(e).split())})") from e
        try:
            root, prefixes = _parse_xml(bad.sub(b" ", data))
        except Exception:  # noqa: BLE001
            raise XmpError(f"{path}: malformed XMP sidecar, left unchanged ({' '.join(str(e).split())})") from e
    if root.tag == RDF:  # bare rdf:RDF (old writers): wrap it
        meta = ET.Element(XMPMETA)
        meta.append(root)
        root = meta
    if root.tag not in (XMPMETA, "{adobe:ns:meta/}xapmeta") or root.find(RDF) is None:
        raise XmpError(f"{path}: not an XMP sidecar (no x:xmpmeta/rdf:RDF), left unchanged")
    return root, prefixes, _layout(data)


def _parse_xml(data: bytes):
    prefixes: dict[str, str] = {}
    events = _iterparse(io.BytesIO(data), events=("start-ns",))
    for _, (prefix, uri) in events:
        prefixes.setdefault(uri, prefix)
    return events.root, prefixes


def _serialize(root: ET.Element, file_prefixes: dict[str, str], layout: dict | None = None) -> str:
    """XMP text in exiftool's layout: one-space indent, each namespace declared where first needed (for an
    rdf:Description: all that its subtree uses), the file's own prefixes and wrapper kept."""
    layout = layout or {"decl": False, "xpacket": True, "end": "w", "padding": "\n"}
    prefixes, taken = {XML_NS: "xml"}, {"xml"}
    used = [(u, "ns") for e in root.iter() for t in (e.tag, *e.attrib) if (u := _split(t)[0])]
    for uri, prefix in [*file_prefixes.items(), *((u, p) for p, u in NS.items()), *used]:
        if uri not in prefixes:
            p, i = prefix or "ns", 1
            while p in taken:
                p, i = f"{prefix or 'ns'}{i}", i + 1
            prefixes[uri] = p
            taken.add(p)
    out = [_XML_DECL] if layout["decl"] else []
    if layout["xpacket"]:
        out.append(_XPACKET_BEGIN)
    _emit(root, prefixes, {XML_NS}, 0, out)
    if layout["xpacket"]:
        out.append((layout["padding"] or "\n") + f'<?xpacket end="{layout["end"]}"?>')
    out.append("\n")
    return "".join(out)


def _split(tag: str) -> tuple[str | None, str]:
    """"{uri}local" -> (uri, local); "local" -> (None, local)."""
    return tuple(tag[1:].split("}", 1)) if tag[0] == "{" else (None, tag)


def _emit(el: ET.Element, prefixes: dict[str, str], scope: set[str], depth: int, out: list[str]):
    def name(tag):
        uri, local = _split(tag)
        return local if uri is None else f"{prefixes[uri]}:{local}"

    new = []
    for e in (el.iter() if el.tag == DESC else (el,)):
        for t in (e.tag, *e.attrib):
            uri = _split(t)[0]
            if uri is not None and uri not in scope and uri not in new:
                new.append(uri)
    scope = scope | set(new)
    attrs = [f'{name(k)}="{_attr(v)}"' for k, v in el.attrib.items()]
    attrs += [f'xmlns:{prefixes[u]}="{_attr(u)}"' for u in new]
    sep = "\n" + " " * (depth + 2) if el.tag == DESC else " "  # one attribute a line, as exiftool
    pad, tag, head = " " * depth, name(el.tag), "".join(sep + a for a in attrs)
    if len(el):
        out.append(f"{pad}<{tag}{head}>{_text(el.text)}\n")
        for child in el:
            _emit(child, prefixes, scope, depth + 1, out)
            out.append(_text(child.tail) + "\n")
        out.append(f"{pad}</{tag}>")
    elif el.text:
        out.append(f"{pad}<{tag}{head}>{_value(el.text)}</{tag}>")
    else:
        out.append(f"{pad}<{tag}{head}/>")


def _attr(s: str) -> str:
    return escape(s, {'"': "&quot;", "\n": "&#10;", "\r": "&#13;", "\t": "&#9;"})


def _value(s: str) -> str:
    return escape(s, {"\r": "&#13;"})  # a CR in a value survives the parser's newline normalisation


def _text(s: str | None) -> str:
    """Text around child elements: dropped when it is only indentation, kept (escaped) otherwise."""
    return escape(s) if s and s.strip() else ""
