"""imgtag.io.xmp: sidecar naming, create, merge into foreign metadata, provenance, untag, issue-15 bugs.

The app-style sidecars (darktable, digiKam, Lightroom) read back by exiftool and libexiv2 are in
test_xmp_apps.py.
"""
from __future__ import annotations

import os
import subprocess
import xml.etree.ElementTree as ET
from typing import NamedTuple

import pytest
from xmpreaders import EXIFTOOL, as_list, exiftool_json, exiv2_read, foreign, needs_exiftool, needs_exiv2

from imgtag.io.xmp import (NS, SidecarNamer, XmpError, is_tagged, read_sidecar, read_sidecar_labels,
                           sidecar_path, untag_sidecar, write_sidecar)


class Label(NamedTuple):  # the shape of imgtag.io.records.Label
    label: str
    score: float
    path: str | None = None

# What darktable writes: simple properties as attributes of rdf:Description, structured history.
DARKTABLE_XMP = """<?xml version="1.0" encoding="UTF-8"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/" x:xmptk="XMP Core 4.4.0-Exiv2">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <rdf:Description rdf:about=""
    xmlns:xmp="http://ns.adobe.com/xap/1.0/"
    xmlns:xmpMM="http://ns.adobe.com/xap/1.0/mm/"
    xmlns:darktable="http://darktable.sf.net/"
    xmlns:dc="http://purl.org/dc/elements/1.1/"
    xmlns:lr="http://ns.adobe.com/lightroom/1.0/"
   xmp:Rating="4"
   xmpMM:DerivedFrom="photo.jpg"
   darktable:xmp_version="5"
   darktable:history_end="1">
   <dc:subject>
    <rdf:Bag>
     <rdf:li>holiday</rdf:li>
    </rdf:Bag>
   </dc:subject>
   <dc:title>
    <rdf:Alt>
     <rdf:li xml:lang="x-default">Beach &amp; sun</rdf:li>
    </rdf:Alt>
   </dc:title>
   <lr:hierarchicalSubject>
    <rdf:Bag>
     <rdf:li>places|beach</rdf:li>
    </rdf:Bag>
   </lr:hierarchicalSubject>
   <darktable:masks_history>
    <rdf:Seq/>
   </darktable:masks_history>
   <darktable:history>
    <rdf:Seq>
     <rdf:li
      darktable:num="0"
      darktable:operation="exposure"
      darktable:enabled="1"
      darktable:params="0000000000"/>
    </rdf:Seq>
   </darktable:history>
  </rdf:Description>
 </rdf:RDF>
</x:xmpmeta>
"""


@pytest.fixture
def image(tmp_path, photo):
    p = tmp_path / "photo.jpg"
    p.write_bytes(photo.read_bytes())
    return p


# What digiKam writes (through libexiv2): TagsList with LastKeywordXMP in step, xpacket with padding.
DIGIKAM_STYLE = """<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/" x:xmptk="XMP Core 4.4.0-Exiv2">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <rdf:Description rdf:about=""
    xmlns:digiKam="http://www.digikam.org/ns/1.0/"
    xmlns:MicrosoftPhoto="http://ns.microsoft.com/photo/1.0/"
    xmlns:xmp="http://ns.adobe.com/xap/1.0/"
   xmp:Rating="3">
   <digiKam:TagsList>
    <rdf:Seq>
     <rdf:li>People/Alice</rdf:li>
    </rdf:Seq>
   </digiKam:TagsList>
   <MicrosoftPhoto:LastKeywordXMP>
    <rdf:Bag>
     <rdf:li>People/Alice</rdf:li>
    </rdf:Bag>
   </MicrosoftPhoto:LastKeywordXMP>
  </rdf:Description>
 </rdf:RDF>
</x:xmpmeta>
<?xpacket end="w"?>"""

# Flat keywords only (e.g. set by a tool that writes dc:subject alone).
FLAT_ONLY_XMP = """<x:xmpmeta xmlns:x="adobe:ns:meta/">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/">
   <dc:subject><rdf:Bag><rdf:li>Grandma</rdf:li><rdf:li>garden</rdf:li></rdf:Bag></dc:subject>
  </rdf:Description>
 </rdf:RDF>
</x:xmpmeta>"""


def side_of(image):
    return image.parent / (image.name + ".xmp")


# ----------------------------------------------------------------------------- naming


def test_sidecar_naming(tmp_path):
    img = tmp_path / "photo.jpg"
    assert sidecar_path(img) == tmp_path / "photo.jpg.xmp"
    assert sidecar_path(img, "ext") == tmp_path / "photo.jpg.xmp"
    assert sidecar_path(img, "stem") == tmp_path / "photo.xmp"
    (tmp_path / "photo.xmp").touch()
    assert sidecar_path(img) == tmp_path / "photo.xmp"  # an existing stem sidecar of the only photo.* image
    assert sidecar_path(img, "ext") == tmp_path / "photo.jpg.xmp"
    with pytest.raises(ValueError, match="naming"):
        sidecar_path(img, "weird")


def test_b2_exact_sidecar_wins_over_stem(tmp_path):
    """B2: with both photo.xmp and photo.jpg.xmp, auto used photo.xmp (maybe the RAW's); the exact one wins."""
    (tmp_path / "photo.xmp").touch()
    (tmp_path / "photo.jpg.xmp").touch()
    assert sidecar_path(tmp_path / "photo.jpg") == tmp_path / "photo.jpg.xmp"
    assert sidecar_path(tmp_path / "photo.jpg", "stem") == tmp_path / "photo.xmp"  # asked for: stem


def test_b1_images_sharing_a_stem_never_share_a_sidecar(tmp_path, photo):
    """B1: photo.jpg and photo.png both wrote photo.xmp; the JPEG's labels were lost on every run."""
    user = DARKTABLE_XMP
    (tmp_path / "photo.xmp").write_text(user, encoding="utf-8")
    for ext in ("jpg", "png"):
        (tmp_path / f"photo.{ext}").write_bytes(photo.read_bytes())
    for naming in ("auto", "stem"):
        a = write_sidecar(tmp_path / "photo.jpg", [("car", 0.9)], naming=naming)
        b = write_sidecar(tmp_path / "photo.png", [("cat", 0.8)], naming=naming)
        assert (a, b) == (tmp_path / "photo.jpg.xmp", tmp_path / "photo.png.xmp")
        assert read_sidecar_labels(a) == ["car"] and read_sidecar_labels(b) == ["cat"]
    assert (tmp_path / "photo.xmp").read_text(encoding="utf-8") == user  # nobody's: left alone


def test_raw_jpeg_pair_lightroom_convention(tmp_path):
    """A RAW+JPEG pair: photo.xmp (Lightroom's) is the RAW's, the JPEG gets photo.JPG.xmp."""
    for name in ("DSC_1.NEF", "DSC_1.JPG"):
        (tmp_path / name).touch()
    assert sidecar_path(tmp_path / "DSC_1.NEF", "stem") == tmp_path / "DSC_1.xmp"
    assert sidecar_path(tmp_path / "DSC_1.JPG", "stem") == tmp_path / "DSC_1.JPG.xmp"
    assert sidecar_path(tmp_path / "DSC_1.NEF") == tmp_path / "DSC_1.NEF.xmp"  # auto, nothing there yet
    (tmp_path / "DSC_1.xmp").touch()  # Lightroom wrote one
    assert sidecar_path(tmp_path / "DSC_1.NEF") == tmp_path / "DSC_1.xmp"
    assert sidecar_path(tmp_path / "DSC_1.JPG") == tmp_path / "DSC_1.JPG.xmp"
    (tmp_path / "DSC_1.CR2").touch()  # two RAWs: photo.xmp is nobody's
    namer = SidecarNamer("auto")
    assert namer(tmp_path / "DSC_1.NEF") == tmp_path / "DSC_1.NEF.xmp"
    assert namer.stem_group(tmp_path / "DSC_1.NEF") == ["DSC_1.CR2", "DSC_1.JPG", "DSC_1.NEF"]


def test_sidecar_naming_uppercase_xmp(tmp_path):
    img = tmp_path / "IMG_1.JPG"
    (tmp_path / "IMG_1.XMP").touch()
    if (tmp_path / "IMG_1.xmp").exists():
        pytest.skip("case-insensitive file system")
    assert sidecar_path(img) == tmp_path / "IMG_1.XMP"
    assert sidecar_path(img, "ext") == tmp_path / "IMG_1.JPG.xmp"
    (tmp_path / "IMG_1.JPG.XMP").touch()
    assert sidecar_path(img, "ext") == tmp_path / "IMG_1.JPG.XMP"
    assert sidecar_path(img) == tmp_path / "IMG_1.JPG.XMP"


# ----------------------------------------------------------------------------- create


def test_create(image):
    p = write_sidecar(image, [("horse", 0.98765), ("person", 0.5), ("fête & <co>", 0.25)],
                      model_name="q2l-test")
    assert p == image.parent / "photo.jpg.xmp"
    text = p.read_text(encoding="utf-8")
    assert text.startswith('<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>')
    assert text.rstrip().endswith('<?xpacket end="w"?>')
    root = ET.fromstring(text.split("?>", 1)[1].rsplit("<?xpacket", 1)[0])
    assert root.tag == f"{{{NS['x']}}}xmpmeta"
    for prefix in ("dc", "lr", "digiKam", "imgtag"):
        assert f'xmlns:{prefix}="{NS[prefix]}"' in text
    assert "MicrosoftPhoto" not in text  # only kept in step when the file has it
    got = read_sidecar(p)
    assert got["subject"] == got["hierarchical"] == got["tags"] == ["horse", "person", "fête & <co>"]
    assert got["scores"] == {"horse": 0.9877, "person": 0.5, "fête & <co>": 0.25}
    assert got["model"] == "q2l-test" and got["created"]
    assert got["added"]["subject"] == ["horse", "person", "fête & <co>"]
    assert read_sidecar_labels(p) == read_sidecar_labels(image) == ["horse", "person", "fête & <co>"]
    assert is_tagged(image) and not is_tagged(image.parent / "other.jpg")


def test_hierarchy_paths_and_keyword_root(image):
    labels = [Label("golden retriever", 0.71, "animal|dog|golden retriever"), Label("dog", 0.9, "animal|dog"),
              Label("animal", 0.95, "animal"), {"label": "beach", "score": 0.5, "path": "landscape|beach"},
              ("tv", 0.4, None)]
    p = write_sidecar(image, labels)
    got = read_sidecar(p)
    assert got["subject"] == ["golden retriever", "dog", "animal", "beach", "tv"]
    assert got["hierarchical"] == ["animal|dog|golden retriever", "animal|dog", "animal", "landscape|beach", "tv"]
    assert got["tags"] == ["animal/dog/golden retriever", "animal/dog", "animal", "landscape/beach", "tv"]
    p = write_sidecar(image, labels[:2], keyword_root="imgtag")  # digiKam's auto/ style
    got = read_sidecar(p)
    assert got["subject"] == ["golden retriever", "dog"]  # flat keywords have no root
    assert got["hierarchical"] == ["imgtag|animal|dog|golden retriever", "imgtag|animal|dog"]
    assert got["tags"] == ["imgtag/animal/dog/golden retriever", "imgtag/animal/dog"]


def test_read_missing_sidecar(tmp_path):
    assert read_sidecar_labels(tmp_path / "nothing.jpg") == []
    assert read_sidecar(tmp_path / "nothing.jpg.xmp")["subject"] == []
    assert untag_sidecar(tmp_path / "nothing.jpg") == "missing"


def test_bad_arguments(image):
    with pytest.raises(ValueError, match="mode"):
        write_sidecar(image, [], mode="append")
    for root in ("", "a|b", "a/b", "\x01"):
        with pytest.raises(ValueError, match="keyword root"):
            write_sidecar(image, [], keyword_root=root)


# ----------------------------------------------------------------------------- merge


def test_merge_keeps_foreign_metadata(image):
    side = image.parent / "photo.jpg.xmp"
    side.write_text(DARKTABLE_XMP, encoding="utf-8")
    write_sidecar(image, [("horse", 0.9), ("person", 0.6)])
    root = ET.parse(side).getroot()
    desc = root.find(".//{%s}Description" % NS["rdf"])
    xmp, dt = "{http://ns.adobe.com/xap/1.0/}", "{http://darktable.sf.net/}"
    assert desc.get(xmp + "Rating") == "4"
    assert desc.get(dt + "xmp_version") == "5" and desc.get(dt + "history_end") == "1"
    assert desc.get("{http://ns.adobe.com/xap/1.0/mm/}DerivedFrom") == "photo.jpg"
    li = root.find(f".//{dt}history/{{{NS['rdf']}}}Seq/{{{NS['rdf']}}}li")
    assert li.get(dt + "operation") == "exposure" and li.get(dt + "params") == "0000000000"
    assert root.find(f".//{dt}masks_history/{{{NS['rdf']}}}Seq") is not None
    title = root.find(".//{%s}title//{%s}li" % (NS["dc"], NS["rdf"]))
    assert title.text == "Beach & sun" and title.get("{http://www.w3.org/XML/1998/namespace}lang") == "x-default"
    got = read_sidecar(side)
    assert got["subject"] == ["holiday", "horse", "person"]
    assert got["hierarchical"] == ["places|beach", "horse", "person"]
    # digiKam read lr:hierarchicalSubject so far: adding TagsList copies it, so digiKam still sees places/beach
    assert got["tags"] == ["places/beach", "horse", "person"]
    assert got["added"]["tags"] == got["tags"] and not got["created"]
    text = side.read_text(encoding="utf-8")
    assert "darktable:history" in text and "xmpMM:DerivedFrom" in text  # original prefixes kept
    assert text.startswith('<?xml version="1.0" encoding="UTF-8"?>\n<x:xmpmeta')  # no xpacket, as it was


def test_rerun_is_idempotent_and_replaces_stale_labels(image):
    side = image.parent / "photo.jpg.xmp"
    side.write_text(DARKTABLE_XMP, encoding="utf-8")
    write_sidecar(image, [("horse", 0.9), ("person", 0.6)], model_name="m1")
    first, mtime = side.read_bytes(), side.stat().st_mtime_ns
    write_sidecar(image, [("horse", 0.9), ("person", 0.6)], model_name="m1")
    assert side.read_bytes() == first and side.stat().st_mtime_ns == mtime  # same input: file not rewritten
    write_sidecar(image, [("dog", 0.8), ("horse", 0.7)], model_name="m2")
    got = read_sidecar(side)
    assert got["subject"] == ["holiday", "dog", "horse"]  # stale "person" gone, user's "holiday" kept
    assert got["hierarchical"] == ["places|beach", "dog", "horse"]
    assert got["tags"] == ["places/beach", "dog", "horse"]
    assert got["scores"] == {"dog": 0.8, "horse": 0.7} and got["model"] == "m2"
    text = side.read_text(encoding="utf-8")
    assert text.count("<dc:subject>") == 1 and text.count("<imgtag:Scores>") == 1
    write_sidecar(image, [])
    got = read_sidecar(side)
    assert got["subject"] == ["holiday"] and got["hierarchical"] == ["places|beach"]
    assert got["tags"] == [] and got["scores"] == {} and got["model"] is None
    assert is_tagged(side) is False  # no model name and no labels: nothing says imgtag was here


def test_zero_labels_still_mark_the_image_done(image):
    write_sidecar(image, [], model_name="m")
    assert is_tagged(image) and read_sidecar_labels(image) == []


def test_b6_a_keyword_the_user_had_is_never_imgtags(image):
    """B6: before `dog, Grandma`; run 1 adds person; run 2 with -x dog deleted the user's own `dog`."""
    side = side_of(image)
    side.write_text(DARKTABLE_XMP.replace("<rdf:li>holiday</rdf:li>", "<rdf:li>dog</rdf:li><rdf:li>Grandma</rdf:li>"))
    write_sidecar(image, [("dog", 0.9), ("person", 0.8)])
    got = read_sidecar(side)
    assert got["subject"] == ["dog", "Grandma", "person"] and got["added"]["subject"] == ["person"]
    write_sidecar(image, [("person", 0.8)])  # e.g. --exclude dog
    assert read_sidecar(side)["subject"] == ["dog", "Grandma", "person"]
    untag_sidecar(image)
    assert read_sidecar(side)["subject"] == ["dog", "Grandma"]


def test_keyword_root_entries_are_replaced_not_piled_up(image):
    write_sidecar(image, [("cat", 0.9)], keyword_root="auto")
    write_sidecar(image, [("dog", 0.9)])  # a run without the root replaces the rooted entries: they are imgtag's
    got = read_sidecar(side_of(image))
    assert got["hierarchical"] == ["dog"] and got["subject"] == ["dog"] and got["tags"] == ["dog"]


def test_merge_properties_written_as_attributes(image):
    side = image.parent / "photo.jpg.xmp"
    side.write_text(f"""<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="{NS['rdf']}">
      <rdf:Description rdf:about="" xmlns:imgtag="{NS['imgtag']}" xmlns:xmp="http://ns.adobe.com/xap/1.0/"
        imgtag:Model="old-model" xmp:Rating="2" xmp:Label="Red"/>
    </rdf:RDF></x:xmpmeta>""")
    write_sidecar(image, [("cat", 0.5)], model_name="new-model")
    got = read_sidecar(side)
    assert got["model"] == "new-model" and got["subject"] == ["cat"]
    desc = ET.parse(side).getroot().find(".//{%s}Description" % NS["rdf"])
    assert desc.get("{%s}Model" % NS["imgtag"]) is None  # the attribute became the element
    assert desc.get("{http://ns.adobe.com/xap/1.0/}Rating") == "2"
    assert desc.get("{http://ns.adobe.com/xap/1.0/}Label") == "Red"


def test_merge_keeps_unusual_prefixes_and_namespaces(image):
    side = image.parent / "photo.jpg.xmp"
    side.write_text(f"""<?xpacket begin="" id="W5M0MpCehiHzreSzNTczkc9d"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="{NS['rdf']}">
 <rdf:Description rdf:about="" xmlns:purl="{NS['dc']}" xmlns:acme="http://acme.example/ns/1.0/">
  <purl:subject><rdf:Bag><rdf:li>mine</rdf:li></rdf:Bag></purl:subject>
  <acme:Project>Q3 shoot</acme:Project>
 </rdf:Description>
</rdf:RDF></x:xmpmeta>
<?xpacket end="w"?>""")
    write_sidecar(image, [("cat", 0.5)])
    text = side.read_text(encoding="utf-8")
    assert "<acme:Project>Q3 shoot</acme:Project>" in text
    assert "<purl:subject>" in text and "ns0" not in text
    assert read_sidecar(side)["subject"] == ["mine", "cat"]


def test_merge_bare_rdf_root(image):
    side = image.parent / "photo.jpg.xmp"
    side.write_text(f'<rdf:RDF xmlns:rdf="{NS["rdf"]}"><rdf:Description rdf:about="" '
                    f'xmlns:xmp="http://ns.adobe.com/xap/1.0/" xmp:Rating="1"/></rdf:RDF>')
    write_sidecar(image, [("cat", 0.5)])
    root = ET.parse(side).getroot()
    assert root.tag == f"{{{NS['x']}}}xmpmeta"
    assert read_sidecar(side)["subject"] == ["cat"] and 'xmp:Rating="1"' in side.read_text()


def test_overwrite_drops_everything_else(image):
    side = image.parent / "photo.jpg.xmp"
    side.write_text(DARKTABLE_XMP)
    write_sidecar(image, [("cat", 0.5)], mode="overwrite")
    text = side.read_text(encoding="utf-8")
    assert "darktable" not in text and "holiday" not in text
    assert read_sidecar(side)["subject"] == ["cat"]


@pytest.mark.parametrize("content", [
    "<x:xmpmeta xmlns:x='adobe:ns:meta/'><rdf:RDF",                        # cut short
    "this is not xml",
    "<html><body>hello</body></html>",                                      # XML, not XMP
    ('<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;">]>'
     '<x:xmpmeta xmlns:x="adobe:ns:meta/">&lol2;</x:xmpmeta>'),              # entity bomb
])
def test_malformed_sidecar_is_left_alone(image, content):
    side = image.parent / "photo.jpg.xmp"
    side.write_text(content)
    for call in (lambda: write_sidecar(image, [("cat", 0.5)]), lambda: untag_sidecar(image),
                 lambda: is_tagged(image), lambda: read_sidecar_labels(image)):
        with pytest.raises(XmpError) as ei:
            call()
        assert str(side) in str(ei.value) and "\n" not in str(ei.value)
    assert side.read_text() == content
    assert sorted(p.name for p in image.parent.iterdir()) == ["photo.jpg", "photo.jpg.xmp"]  # no temp
    write_sidecar(image, [("cat", 0.5)], mode="overwrite")  # overwrite does not read the old file
    assert read_sidecar(side)["subject"] == ["cat"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads mode-000 files")
def test_unreadable_sidecar_is_one_xmp_error(image):
    """B4 at the I/O level: a mode-000 sidecar is an XmpError naming it, not a PermissionError."""
    side = side_of(image)
    side.write_text(DARKTABLE_XMP)
    side.chmod(0)
    try:
        with pytest.raises(XmpError, match="cannot read sidecar"):
            is_tagged(image)
    finally:
        side.chmod(0o644)


def test_directory_in_place_of_sidecar_is_one_xmp_error(image):
    side_of(image).mkdir()
    with pytest.raises(XmpError, match="cannot read sidecar"):
        read_sidecar_labels(image)


def test_stem_naming_sidecar_is_merged(image):
    side = image.parent / "photo.xmp"
    side.write_text(DARKTABLE_XMP)
    assert write_sidecar(image, [("cat", 0.5)]) == side
    assert read_sidecar(side)["subject"] == ["holiday", "cat"]
    assert not (image.parent / "photo.jpg.xmp").exists()


# ----------------------------------------------------------------------------- issue 15: text, layout


@needs_exiv2
def test_b7_control_characters_are_cleaned(image):
    """B7: a label with control characters was written raw; libexiv2 refused the file (error 201)."""
    p = write_sidecar(image, [("a\x01b", 0.9), ("tab\there\nnow", 0.5), ("bad\ud800surrogate", 0.4)],
                      model_name="m\x1b1")
    x = exiv2_read(p)  # fails on any libexiv2 complaint
    assert x["Xmp.dc.subject"] == ["a b", "tab here now", "bad surrogate"]
    assert x["Xmp.imgtag.Model"] == ["m 1"]
    write_sidecar(image, [("c", 0.9)])  # and the next merge reads it
    assert read_sidecar(p)["subject"] == ["c"]


def test_b7_old_sidecar_with_raw_control_characters_is_repaired(image):
    """A sidecar written by imgtag before the fix (raw \\x01 in labels) is still read and cleaned."""
    side = side_of(image)
    side.write_text(LEGACY_XMP.replace("<rdf:li>cat</rdf:li>", "<rdf:li>c\x01t</rdf:li>")
                    .replace("imgtag|cat", "imgtag|c\x01t").replace("imgtag/cat", "imgtag/c\x01t")
                    .replace("cat=0.9000", "c\x01t=0.9000"), encoding="utf-8")
    write_sidecar(image, [("dog", 0.9)])
    got = read_sidecar(side)
    assert got["subject"] == ["holiday", "dog"] and got["hierarchical"] == ["places|beach", "dog"]


def test_b8_separators_inside_a_label_add_no_level(image):
    """B8: `|` or `/` inside a label created extra hierarchy levels in Lightroom, darktable and digiKam."""
    p = write_sidecar(image, [Label("AC/DC", 0.9, "music|AC/DC"), ("a|b", 0.5), Label("x", 0.4, "top|x/y|x")])
    got = read_sidecar(p)
    assert got["subject"] == ["AC/DC", "a\u00a6b", "x"]
    assert got["hierarchical"] == ["music|AC/DC", "a\u00a6b", "top|x/y|x"]  # "/" is no separator here
    assert got["tags"] == ["music/AC\u2215DC", "a\u00a6b", "top/x\u2215y/x"]  # but it is in digiKam's


def test_xpacket_padding_and_read_only_marker_are_kept(image):
    """Also: the padding was dropped and end='r' rewritten as 'w'."""
    side = side_of(image)
    padding = "\n" + (" " * 99 + "\n") * 20
    side.write_text(DIGIKAM_STYLE.replace('<?xpacket end="w"?>', padding + '<?xpacket end="r"?>'))
    write_sidecar(image, [("cat", 0.9)])
    text = side.read_text(encoding="utf-8")
    assert text.startswith('<?xpacket begin="\ufeff"')
    assert text.endswith("</x:xmpmeta>\n" + padding + '<?xpacket end="r"?>\n')
    untag_sidecar(image)
    assert side.read_text(encoding="utf-8").endswith(padding + '<?xpacket end="r"?>\n')


def test_last_keyword_xmp_kept_in_step_with_tags_list(image):
    """Also: MicrosoftPhoto:LastKeywordXMP was not updated beside digiKam:TagsList (both URIs in use)."""
    for uri in ("http://ns.microsoft.com/photo/1.0/", "http://ns.microsoft.com/photo/1.0"):  # exiv2, exiftool
        side = side_of(image)
        side.write_text(DIGIKAM_STYLE.replace('"http://ns.microsoft.com/photo/1.0/"', f'"{uri}"'))
        write_sidecar(image, [Label("dog", 0.9, "animal|dog")])
        got = read_sidecar(side)
        assert got["tags"] == ["People/Alice", "animal/dog"]
        assert got["last_keyword"] == ["People/Alice", "animal/dog"] and got["added"]["last_keyword"] == ["animal/dog"]
        assert f'xmlns:MicrosoftPhoto="{uri}"' in side.read_text()
        untag_sidecar(image)
        assert read_sidecar(side)["last_keyword"] == ["People/Alice"]


def test_darktable_keeps_seeing_flat_user_keywords(image):
    """Also: darktable reads dc:subject only without lr:hierarchicalSubject; adding the latter copies them."""
    side = side_of(image)
    side.write_text(FLAT_ONLY_XMP)
    write_sidecar(image, [Label("dog", 0.9, "animal|dog")])
    got = read_sidecar(side)
    assert got["subject"] == ["Grandma", "garden", "dog"]
    assert got["hierarchical"] == ["Grandma", "garden", "animal|dog"]
    assert got["added"]["hierarchical"] == got["hierarchical"]  # the copies are imgtag's: untag removes them
    assert got["tags"] == ["Grandma", "garden", "animal/dog"]  # digiKam read dc:subject so far
    write_sidecar(image, [])  # nothing to add: no copies either
    got = read_sidecar(side)
    assert got["hierarchical"] == got["tags"] == [] and got["subject"] == ["Grandma", "garden"]


# ----------------------------------------------------------------------------- provenance, untag, migration


def test_untag_restores_the_file_and_deletes_what_imgtag_created(image, tmp_path):
    side = side_of(image)
    side.write_text(DARKTABLE_XMP)
    before = read_sidecar(side)
    write_sidecar(image, [Label("dog", 0.9, "animal|dog"), Label("person", 0.6, "person")], model_name="m")
    write_sidecar(image, [Label("cat", 0.9, "animal|cat")], model_name="m")
    assert untag_sidecar(image) == "untagged"
    after = read_sidecar(side)
    assert after == before
    assert "imgtag" not in side.read_text() and "digiKam" not in side.read_text()
    assert untag_sidecar(image) == "unchanged"
    other = tmp_path / "new.jpg"
    created = write_sidecar(other, [("cat", 0.5)], model_name="m")
    assert untag_sidecar(other) == "deleted" and not created.exists()


def test_untag_keeps_a_file_imgtag_created_once_another_app_wrote_to_it(tmp_path):
    img = tmp_path / "a.jpg"
    side = write_sidecar(img, [("cat", 0.5)])
    side.write_text(side.read_text().replace("<imgtag:Scores>", '<xmp:Rating xmlns:xmp="http://ns.adobe.com/xap/1.0/">'
                                             '3</xmp:Rating>\n   <imgtag:Scores>'))
    assert untag_sidecar(img) == "untagged"
    got = read_sidecar(side)
    assert got["subject"] == [] and "Rating" in side.read_text() and "xmlns:imgtag" not in side.read_text()


LEGACY_XMP = """<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <rdf:Description rdf:about=""
    xmlns:xmp="http://ns.adobe.com/xap/1.0/"
    xmlns:dc="http://purl.org/dc/elements/1.1/"
    xmlns:lr="http://ns.adobe.com/lightroom/1.0/"
    xmlns:digiKam="http://www.digikam.org/ns/1.0/"
    xmlns:imgtag="http://ns.imgtag.dev/1.0/"
   xmp:Rating="4">
   <dc:subject>
    <rdf:Bag>
     <rdf:li>holiday</rdf:li>
     <rdf:li>cat</rdf:li>
     <rdf:li>person</rdf:li>
    </rdf:Bag>
   </dc:subject>
   <lr:hierarchicalSubject>
    <rdf:Bag>
     <rdf:li>places|beach</rdf:li>
     <rdf:li>imgtag|cat</rdf:li>
     <rdf:li>imgtag|person</rdf:li>
    </rdf:Bag>
   </lr:hierarchicalSubject>
   <digiKam:TagsList>
    <rdf:Seq>
     <rdf:li>imgtag/cat</rdf:li>
     <rdf:li>imgtag/person</rdf:li>
    </rdf:Seq>
   </digiKam:TagsList>
   <imgtag:Scores>
    <rdf:Bag>
     <rdf:li>cat=0.9000</rdf:li>
     <rdf:li>person=0.5000</rdf:li>
    </rdf:Bag>
   </imgtag:Scores>
   <imgtag:Model>voc-lite2</imgtag:Model>
  </rdf:Description>
 </rdf:RDF>
</x:xmpmeta>
<?xpacket end="w"?>
"""


def test_sidecar_from_imgtag_before_provenance_is_recognised(image):
    """Migration: today's sidecars (imgtag|label entries + imgtag:Scores) are imgtag's to replace or untag."""
    side = side_of(image)
    side.write_text(LEGACY_XMP)
    assert is_tagged(image) and read_sidecar_labels(image) == ["cat", "person"]
    assert read_sidecar(side)["added"]["hierarchical"] == ["imgtag|cat", "imgtag|person"]
    write_sidecar(image, [Label("dog", 0.8, "animal|dog")], model_name="new")
    got = read_sidecar(side)
    assert got["subject"] == ["holiday", "dog"]
    assert got["hierarchical"] == ["places|beach", "animal|dog"]
    assert got["tags"] == ["places/beach", "animal/dog"]  # digiKam read hierarchicalSubject so far: copied
    side.write_text(LEGACY_XMP)
    assert untag_sidecar(image) == "untagged"
    got = read_sidecar(side)
    assert got["subject"] == ["holiday"] and got["hierarchical"] == ["places|beach"] and got["tags"] == []
    assert 'xmp:Rating="4"' in side.read_text() and "xmlns:imgtag" not in side.read_text()


# ----------------------------------------------------------------------------- exiftool, libexiv2


@needs_exiftool
def test_exiftool_reads_our_sidecar(image):
    side = write_sidecar(image, [Label("horse", 0.98765, "animal|horse"), ("person", 0.5)], model_name="q2l-test")
    tags = exiftool_json(side)
    assert as_list(tags["XMP-dc:Subject"]) == ["horse", "person"]
    assert as_list(tags["XMP-lr:HierarchicalSubject"]) == ["animal|horse", "person"]
    assert as_list(tags["XMP-digiKam:TagsList"]) == ["animal/horse", "person"]
    assert as_list(tags["XMP-imgtag:Scores"]) == ["horse=0.9877", "person=0.5000"]
    assert as_list(tags["XMP-imgtag:AddedSubjects"]) == ["horse", "person"]
    assert tags["XMP-imgtag:Model"] == "q2l-test"


@needs_exiftool
def test_exiftool_written_sidecar_survives_merge(image):
    side = image.parent / "photo.jpg.xmp"
    subprocess.run([EXIFTOOL, "-q", "-o", str(side), "-XMP-xmp:Rating=3", "-XMP-dc:Title=Foo",
                    "-XMP-dc:Subject=userkw", "-XMP-lr:HierarchicalSubject=Animals|cat",
                    "-XMP-digiKam:TagsList=People/Bob", str(image)], check=True)
    before = exiftool_json(side)
    write_sidecar(image, [("horse", 0.9)])
    write_sidecar(image, [("horse", 0.9), ("person", 0.4)])  # a re-run
    after = exiftool_json(side)
    assert as_list(after["XMP-dc:Subject"]) == ["userkw", "horse", "person"]
    assert as_list(after["XMP-lr:HierarchicalSubject"]) == ["Animals|cat", "horse", "person"]
    assert as_list(after["XMP-digiKam:TagsList"]) == ["People/Bob", "horse", "person"]
    assert foreign(after) == foreign(before)  # Rating, Title, tiff:* ... unchanged
    assert after["XMP-xmp:Rating"] == 3 and after["XMP-dc:Title"] == "Foo"
    untag_sidecar(image)
    assert exiftool_json(side) == before
