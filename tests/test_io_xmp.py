"""imgtag.io.xmp: sidecar naming, create, merge into foreign metadata, idempotent re-runs, exiftool."""
from __future__ import annotations

import json
import shutil
import subprocess
import xml.etree.ElementTree as ET

import pytest

from imgtag.io.xmp import (NS, XmpError, read_sidecar, read_sidecar_labels, sidecar_path,
                           write_sidecar)

EXIFTOOL = shutil.which("exiftool")
needs_exiftool = pytest.mark.skipif(EXIFTOOL is None, reason="exiftool not installed")

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


def exiftool_json(path) -> dict:
    out = subprocess.run([EXIFTOOL, "-j", "-G1", "-XMP:all", str(path)], capture_output=True, text=True,
                         check=True).stdout
    return json.loads(out)[0]


def foreign(tags: dict) -> dict:
    """exiftool's tags minus the ones imgtag writes."""
    ours = {"SourceFile", "XMP-dc:Subject", "XMP-lr:HierarchicalSubject", "XMP-digiKam:TagsList",
            "XMP-imgtag:Scores", "XMP-imgtag:Model"}
    return {k: v for k, v in tags.items() if k not in ours}


def as_list(v):
    return v if isinstance(v, list) else [v]  # exiftool prints one-item lists as a scalar


# ----------------------------------------------------------------------------- naming


def test_sidecar_naming(tmp_path):
    img = tmp_path / "photo.jpg"
    assert sidecar_path(img) == tmp_path / "photo.jpg.xmp"
    assert sidecar_path(img, "ext") == tmp_path / "photo.jpg.xmp"
    assert sidecar_path(img, "stem") == tmp_path / "photo.xmp"
    (tmp_path / "photo.jpg.xmp").touch()
    assert sidecar_path(img) == tmp_path / "photo.jpg.xmp"
    (tmp_path / "photo.xmp").touch()
    assert sidecar_path(img) == tmp_path / "photo.xmp"  # an existing stem sidecar wins
    assert sidecar_path(img, "ext") == tmp_path / "photo.jpg.xmp"
    with pytest.raises(ValueError, match="naming"):
        sidecar_path(img, "weird")


def test_sidecar_naming_uppercase_xmp(tmp_path):
    img = tmp_path / "IMG_1.JPG"
    (tmp_path / "IMG_1.XMP").touch()
    if (tmp_path / "IMG_1.xmp").exists():
        pytest.skip("case-insensitive file system")
    assert sidecar_path(img) == tmp_path / "IMG_1.XMP"
    assert sidecar_path(img, "ext") == tmp_path / "IMG_1.JPG.xmp"
    (tmp_path / "IMG_1.JPG.XMP").touch()
    assert sidecar_path(img, "ext") == tmp_path / "IMG_1.JPG.XMP"


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
    got = read_sidecar(p)
    assert got["subject"] == ["horse", "person", "fête & <co>"]
    assert got["hierarchical"] == ["imgtag|horse", "imgtag|person", "imgtag|fête & <co>"]
    assert got["tags"] == ["imgtag/horse", "imgtag/person", "imgtag/fête & <co>"]
    assert got["scores"] == {"horse": 0.9877, "person": 0.5, "fête & <co>": 0.25}
    assert got["model"] == "q2l-test"
    assert read_sidecar_labels(p) == read_sidecar_labels(image) == ["horse", "person", "fête & <co>"]


def test_read_missing_sidecar(tmp_path):
    assert read_sidecar_labels(tmp_path / "nothing.jpg") == []
    assert read_sidecar(tmp_path / "nothing.jpg.xmp")["subject"] == []


def test_bad_arguments(image):
    with pytest.raises(ValueError, match="mode"):
        write_sidecar(image, [], mode="append")
    for prefix in ("", "a|b", "a/b"):
        with pytest.raises(ValueError, match="prefix"):
            write_sidecar(image, [], prefix=prefix)


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
    assert got["hierarchical"] == ["places|beach", "imgtag|horse", "imgtag|person"]
    text = side.read_text(encoding="utf-8")
    assert "darktable:history" in text and "xmpMM:DerivedFrom" in text  # original prefixes kept


def test_rerun_is_idempotent_and_replaces_stale_labels(image):
    side = image.parent / "photo.jpg.xmp"
    side.write_text(DARKTABLE_XMP, encoding="utf-8")
    write_sidecar(image, [("horse", 0.9), ("person", 0.6)], model_name="m1")
    first = side.read_bytes()
    write_sidecar(image, [("horse", 0.9), ("person", 0.6)], model_name="m1")
    assert side.read_bytes() == first  # same input, same file
    write_sidecar(image, [("dog", 0.8), ("horse", 0.7)], model_name="m2")
    got = read_sidecar(side)
    assert got["subject"] == ["holiday", "dog", "horse"]  # stale "person" gone, user's "holiday" kept
    assert got["hierarchical"] == ["places|beach", "imgtag|dog", "imgtag|horse"]
    assert got["tags"] == ["imgtag/dog", "imgtag/horse"]
    assert got["scores"] == {"dog": 0.8, "horse": 0.7} and got["model"] == "m2"
    for key in ("subject", "hierarchical", "tags"):
        assert len(got[key]) == len(set(got[key]))
    text = side.read_text(encoding="utf-8")
    assert text.count("<dc:subject>") == 1 and text.count("<imgtag:Scores>") == 1
    write_sidecar(image, [])
    got = read_sidecar(side)
    assert got["subject"] == ["holiday"] and got["hierarchical"] == ["places|beach"]
    assert got["tags"] == [] and got["scores"] == {} and got["model"] is None


def test_user_keyword_equal_to_a_label_is_not_duplicated(image):
    side = image.parent / "photo.jpg.xmp"
    side.write_text(DARKTABLE_XMP.replace("<rdf:li>holiday</rdf:li>", "<rdf:li>horse</rdf:li>"))
    write_sidecar(image, [("horse", 0.9)])
    assert read_sidecar(side)["subject"] == ["horse"]


def test_custom_prefix_owns_its_own_entries(image):
    write_sidecar(image, [("cat", 0.9)], prefix="auto")
    write_sidecar(image, [("dog", 0.9)])  # the "imgtag" run leaves the "auto" entries alone
    got = read_sidecar(image.parent / "photo.jpg.xmp")
    assert got["hierarchical"] == ["auto|cat", "imgtag|dog"]
    assert got["subject"] == ["cat", "dog"]
    assert read_sidecar_labels(image, prefix="auto") == ["cat"]


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
    with pytest.raises(XmpError) as ei:
        write_sidecar(image, [("cat", 0.5)])
    assert str(side) in str(ei.value) and "\n" not in str(ei.value)
    assert side.read_text() == content
    assert sorted(p.name for p in image.parent.iterdir()) == ["photo.jpg", "photo.jpg.xmp"]  # no temp
    write_sidecar(image, [("cat", 0.5)], mode="overwrite")  # overwrite does not read the old file
    assert read_sidecar(side)["subject"] == ["cat"]


def test_stem_naming_sidecar_is_merged(image):
    side = image.parent / "photo.xmp"
    side.write_text(DARKTABLE_XMP)
    assert write_sidecar(image, [("cat", 0.5)]) == side
    assert read_sidecar(side)["subject"] == ["holiday", "cat"]
    assert not (image.parent / "photo.jpg.xmp").exists()


# ----------------------------------------------------------------------------- exiftool


@needs_exiftool
def test_exiftool_reads_our_sidecar(image):
    side = write_sidecar(image, [("horse", 0.98765), ("person", 0.5)], model_name="q2l-test")
    tags = exiftool_json(side)
    assert as_list(tags["XMP-dc:Subject"]) == ["horse", "person"]
    assert as_list(tags["XMP-lr:HierarchicalSubject"]) == ["imgtag|horse", "imgtag|person"]
    assert as_list(tags["XMP-digiKam:TagsList"]) == ["imgtag/horse", "imgtag/person"]
    assert as_list(tags["XMP-imgtag:Scores"]) == ["horse=0.9877", "person=0.5000"]
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
    assert as_list(after["XMP-lr:HierarchicalSubject"]) == ["Animals|cat", "imgtag|horse", "imgtag|person"]
    assert as_list(after["XMP-digiKam:TagsList"]) == ["People/Bob", "imgtag/horse", "imgtag/person"]
    assert foreign(after) == foreign(before)  # Rating, Title, tiff:* ... unchanged
    assert after["XMP-xmp:Rating"] == 3 and after["XMP-dc:Title"] == "Foo"


@needs_exiftool
def test_exiftool_darktable_sidecar_survives_merge(image):
    side = image.parent / "photo.jpg.xmp"
    side.write_text(DARKTABLE_XMP)
    before = exiftool_json(side)
    write_sidecar(image, [("horse", 0.9)])
    after = exiftool_json(side)
    assert foreign(after) == foreign(before)  # rating, title, darktable history...
    assert after["XMP-darktable:HistoryOperation"] == "exposure" and after["XMP-xmp:Rating"] == 4
    assert as_list(after["XMP-dc:Subject"]) == ["holiday", "horse"]
    assert as_list(after["XMP-lr:HierarchicalSubject"]) == ["places|beach", "imgtag|horse"]
