"""XMP sidecars that photo managers read (Lightroom, digiKam, darktable, exiftool).

`write_sidecar` writes the labels three ways, so every common tool sees them as keywords:

* `dc:subject`             rdf:Bag of the labels                   (exiftool Subject, every tool)
* `lr:hierarchicalSubject` rdf:Bag of "imgtag|label"               (Lightroom, darktable, digiKam)
* `digiKam:TagsList`       rdf:Seq of "imgtag/label"               (digiKam)

plus, in its own namespace (xmlns:imgtag="http://ns.imgtag.dev/1.0/"), `imgtag:Scores`, an rdf:Bag of
"label=0.9123" strings (plain strings: exiftool reads them as XMP-imgtag:Scores with no config file), and
`imgtag:Model`.

Ownership: the "imgtag|..." / "imgtag/..." entries (the prefix is configurable), imgtag:Scores and
imgtag:Model belong to imgtag. In "merge" mode a re-run replaces them, and removes from dc:subject only
the labels a previous run added (known from those entries); everything else in the file (other
descriptions, properties, namespaces and their prefixes, user keywords) is kept. Caveat: a keyword the
user typed that equals a label imgtag added earlier and no longer predicts is removed too.

The file is re-serialised in the usual exiftool layout (xpacket wrapper, x:xmpmeta, one-space indent,
namespaces declared on each rdf:Description); XML comments and the original whitespace are not kept.
Parsing refuses DOCTYPE/ENTITY declarations (entity bombs) and uses defusedxml when installed. A malformed
existing sidecar raises XmpError and is left as it is. Writes are atomic.
"""
from __future__ import annotations

import io
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from xml.sax.saxutils import escape

from .atomic import atomic_write_bytes

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
    "imgtag": "http://ns.imgtag.dev/1.0/",
}
XML_NS = "http://www.w3.org/XML/1998/namespace"


def _q(qname: str) -> str:
    prefix, local = qname.split(":")
    return f"{{{NS[prefix]}}}{local}"


XMPMETA, RDF, DESC, ABOUT = _q("x:xmpmeta"), _q("rdf:RDF"), _q("rdf:Description"), _q("rdf:about")
LI = _q("rdf:li")
SUBJECT, HIER, TAGS = _q("dc:subject"), _q("lr:hierarchicalSubject"), _q("digiKam:TagsList")
SCORES, MODEL = _q("imgtag:Scores"), _q("imgtag:Model")
_CONTAINERS = {_q("rdf:Bag"), _q("rdf:Seq"), _q("rdf:Alt")}
_XPACKET_BEGIN = '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>\n'
_XPACKET_END = '\n<?xpacket end="w"?>\n'


class XmpError(ValueError):
    """An existing sidecar cannot be parsed (or is not XMP); str() is one line naming the file."""


# ----------------------------------------------------------------------------- public API


def sidecar_path(image_path: str | Path, naming: str = "auto") -> Path:
    """The sidecar for `image_path`.

    naming="auto": an existing `photo.xmp` (or `.XMP`), else an existing `photo.jpg.xmp`, else
    `photo.jpg.xmp` (darktable/digiKam style: no clash between photo.jpg and photo.cr2).
    naming="ext": `photo.jpg.xmp`; naming="stem": `photo.xmp` (Lightroom style); each reuses an
    existing `.XMP` spelling.
    """
    p = Path(image_path)
    stem, ext = p.with_suffix(""), p.parent / p.name
    if naming not in ("auto", "ext", "stem"):
        raise ValueError(f"unknown sidecar naming {naming!r}; choose auto, ext or stem")
    bases = {"auto": (stem, ext), "ext": (ext,), "stem": (stem,)}[naming]
    for base in bases:
        for suffix in (".xmp", ".XMP"):
            cand = base.parent / (base.name + suffix)
            if cand.is_file():
                return cand
    return bases[-1].parent / (bases[-1].name + ".xmp")


def write_sidecar(image_path: str | Path, labels: list[tuple[str, float]], mode: str = "merge",
                  prefix: str = "imgtag", model_name: str | None = None, naming: str = "auto") -> Path:
    """Write `labels` [(label, score), ...] into the image's sidecar (see the module docstring).

    mode="merge" keeps everything not owned by imgtag; mode="overwrite" replaces the file with only
    imgtag's data. Returns the sidecar path. Raises XmpError if a sidecar to merge into is malformed.
    """
    if mode not in ("merge", "overwrite"):
        raise ValueError(f"unknown sidecar mode {mode!r}; choose merge or overwrite")
    if not prefix or any(c in prefix for c in "|/"):
        raise ValueError(f"invalid keyword prefix {prefix!r}: must be non-empty, without '|' or '/'")
    path = sidecar_path(image_path, naming)
    if mode == "merge" and path.exists():
        root, prefixes = _parse(path.read_bytes(), path)
    else:
        root, prefixes = _new_root(), {}
    _apply(root, labels, prefix, model_name)
    atomic_write_bytes(path, _serialize(root, prefixes).encode("utf-8"))
    return path


def read_sidecar(path: str | Path) -> dict:
    """The keyword data of a sidecar: {"subject", "hierarchical", "tags": lists of str,
    "scores": {label: float}, "model": str | None}. A missing file gives empty values."""
    path = Path(path)
    if not path.exists():
        return {"subject": [], "hierarchical": [], "tags": [], "scores": {}, "model": None}
    root, _ = _parse(path.read_bytes(), path)
    descs = _descriptions(root)
    scores = {}
    for item in _items(descs, SCORES):
        label, _, score = item.rpartition("=")
        try:
            scores[label] = float(score)
        except ValueError:  # hand-edited entry: not ours to judge
            continue
    model = _items(descs, MODEL)
    return {"subject": _items(descs, SUBJECT), "hierarchical": _items(descs, HIER),
            "tags": _items(descs, TAGS), "scores": scores, "model": model[0] if model else None}


def read_sidecar_labels(path: str | Path, prefix: str = "imgtag") -> list[str]:
    """The labels a previous imgtag run wrote (its "prefix|label" hierarchical keywords), in order.

    `path` is the sidecar, or an image (any path not ending in .xmp), whose sidecar is looked up with
    naming="auto". A missing sidecar gives [] (e.g. for --resume: nothing tagged yet).
    """
    path = Path(path)
    if path.suffix.lower() != ".xmp":
        path = sidecar_path(path)
    start = prefix + "|"
    return [h[len(start):] for h in read_sidecar(path)["hierarchical"] if h.startswith(start)]


# ----------------------------------------------------------------------------- editing


def _apply(root: ET.Element, labels, prefix: str, model_name: str | None) -> None:
    """Replace imgtag's entries in the tree by `labels`, keeping every other value (see module doc)."""
    descs = _descriptions(root)
    hp, tp = prefix + "|", prefix + "/"
    old = {q: _items(descs, q) for q in (SUBJECT, HIER, TAGS)}
    ours_before = ({h[len(hp):] for h in old[HIER] if h.startswith(hp)}
                   | {t[len(tp):] for t in old[TAGS] if t.startswith(tp)})
    labels = list({str(lab): float(s) for lab, s in labels}.items())  # de-duplicated, order kept
    names = [lab for lab, _ in labels]
    _set(descs, SUBJECT, "rdf:Bag", [s for s in old[SUBJECT] if s not in ours_before] + names)
    _set(descs, HIER, "rdf:Bag", [h for h in old[HIER] if not h.startswith(hp)] + [hp + n for n in names])
    _set(descs, TAGS, "rdf:Seq", [t for t in old[TAGS] if not t.startswith(tp)] + [tp + n for n in names])
    _set(descs, SCORES, "rdf:Bag", [f"{lab}={s:.4f}" for lab, s in labels])
    _set(descs, MODEL, None, [model_name] if model_name else [])


def _descriptions(root: ET.Element) -> list[ET.Element]:
    """The rdf:Description elements, creating rdf:RDF / a Description when missing."""
    rdf = root.find(RDF)
    if rdf is None:
        rdf = ET.SubElement(root, RDF)
    descs = rdf.findall(DESC)
    if not descs:
        descs = [ET.SubElement(rdf, DESC, {ABOUT: ""})]
    return descs


def _items(descs: list[ET.Element], tag: str) -> list[str]:
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
    return list(dict.fromkeys(out))  # de-duplicated, order kept


def _set(descs: list[ET.Element], tag: str, container: str | None, values: list[str]) -> None:
    """Replace property `tag` (element or attribute, in any description) by `values`, in place of the
    first old element if any, else at the end of the first description; no values removes it."""
    where = None
    for d in descs:
        d.attrib.pop(tag, None)
        for child in d.findall(tag):
            if where is None:
                where = (d, list(d).index(child))
            d.remove(child)
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


def _new_root() -> ET.Element:
    from .. import __version__
    root = ET.Element(XMPMETA, {_q("x:xmptk"): f"imgtag {__version__}"})
    ET.SubElement(ET.SubElement(root, RDF), DESC, {ABOUT: ""})
    return root


def _parse(data: bytes, path) -> tuple[ET.Element, dict[str, str]]:
    """Parse a sidecar; return its root x:xmpmeta and the {uri: prefix} bindings it used."""
    if re.search(rb"<!\s*(DOCTYPE|ENTITY)", data, re.IGNORECASE) or re.search(
            rb"<\x00!\x00", data):  # also the UTF-16 spelling
        raise XmpError(f"{path}: refusing to parse an XMP file with a DOCTYPE/ENTITY declaration")
    prefixes: dict[str, str] = {}
    try:
        events = _iterparse(io.BytesIO(data), events=("start-ns",))
        for _, (prefix, uri) in events:
            prefixes.setdefault(uri, prefix)
        root = events.root
    except Exception as e:  # noqa: BLE001 - ParseError, defusedxml's errors, encoding errors
        raise XmpError(f"{path}: malformed XMP sidecar, left unchanged ({' '.join(str(e).split())})") from e
    if root.tag == RDF:  # bare rdf:RDF (old writers): wrap it
        meta = ET.Element(XMPMETA)
        meta.append(root)
        root = meta
    if root.tag not in (XMPMETA, "{adobe:ns:meta/}xapmeta") or root.find(RDF) is None:
        raise XmpError(f"{path}: not an XMP sidecar (no x:xmpmeta/rdf:RDF), left unchanged")
    return root, prefixes


def _serialize(root: ET.Element, file_prefixes: dict[str, str]) -> str:
    """XMP text in exiftool's layout: xpacket wrapper, one-space indent, each namespace declared where
    first needed (for an rdf:Description: all that its subtree uses), the file's own prefixes kept."""
    prefixes, taken = {XML_NS: "xml"}, {"xml"}
    used = [(u, "ns") for e in root.iter() for t in (e.tag, *e.attrib) if (u := _split(t)[0])]
    for uri, prefix in [*file_prefixes.items(), *((u, p) for p, u in NS.items()), *used]:
        if uri not in prefixes:
            p, i = prefix or "ns", 1
            while p in taken:
                p, i = f"{prefix or 'ns'}{i}", i + 1
            prefixes[uri] = p
            taken.add(p)
    out = [_XPACKET_BEGIN]
    _emit(root, prefixes, {XML_NS}, 0, out)
    out.append(_XPACKET_END)
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
        out.append(f"{pad}<{tag}{head}>{escape(el.text)}</{tag}>")
    else:
        out.append(f"{pad}<{tag}{head}/>")


def _attr(s: str) -> str:
    return escape(s, {'"': "&quot;", "\n": "&#10;", "\r": "&#13;", "\t": "&#9;"})


def _text(s: str | None) -> str:
    """Text around child elements: dropped when it is only indentation, kept (escaped) otherwise."""
    return escape(s) if s and s.strip() else ""
