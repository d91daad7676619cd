"""Sidecars as darktable, digiKam and Lightroom write them: tag, re-tag, untag, read back by exiftool AND
libexiv2, and what each app then shows (its documented read rules, see xmpreaders.py). Each test here is a
row of the README's compatibility table."""
from __future__ import annotations

from typing import NamedTuple

import pytest
from xmpreaders import (darktable_keywords, digikam_keywords, exiftool_json, exiv2_read, foreign,
                        lightroom_keywords, needs_exiftool, needs_exiv2)

from imgtag.io.xmp import SidecarNamer, read_sidecar, untag_sidecar, write_sidecar

pytestmark = [needs_exiftool, needs_exiv2]


class Label(NamedTuple):
    label: str
    score: float
    path: str | None = None


LABELS = [Label("golden retriever", 0.71, "animal|dog|golden retriever"), Label("dog", 0.9, "animal|dog"),
          Label("animal", 0.95, "animal"), Label("AC/DC", 0.3, "AC/DC")]
RETAG = [Label("cat", 0.8, "animal|cat"), Label("animal", 0.9, "animal")]

# darktable 4.x: everything as attributes of one rdf:Description, auto tags under darktable|, history.
DARKTABLE = """<?xml version="1.0" encoding="UTF-8"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/" x:xmptk="XMP Core 4.4.0-Exiv2">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <rdf:Description rdf:about=""
    xmlns:exif="http://ns.adobe.com/exif/1.0/"
    xmlns:xmp="http://ns.adobe.com/xap/1.0/"
    xmlns:xmpMM="http://ns.adobe.com/xap/1.0/mm/"
    xmlns:dc="http://purl.org/dc/elements/1.1/"
    xmlns:lr="http://ns.adobe.com/lightroom/1.0/"
    xmlns:darktable="http://darktable.sf.net/"
   exif:DateTimeOriginal="2023:06:01 10:00:00"
   xmp:Rating="1"
   xmpMM:DerivedFrom="IMG_0001.CR2"
   darktable:import_timestamp="63822585600000000"
   darktable:change_timestamp="63822589200000000"
   darktable:xmp_version="5"
   darktable:raw_params="0"
   darktable:auto_presets_applied="1"
   darktable:history_end="2"
   darktable:iop_order_version="4">
   <dc:subject>
    <rdf:Bag>
     <rdf:li>holiday</rdf:li>
    </rdf:Bag>
   </dc:subject>
   <lr:hierarchicalSubject>
    <rdf:Bag>
     <rdf:li>darktable|format|cr2</rdf:li>
     <rdf:li>holiday</rdf:li>
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
      darktable:operation="rawprepare"
      darktable:enabled="1"
      darktable:modversion="1"
      darktable:params="000000000000000000000000"
      darktable:multi_name=""
      darktable:multi_priority="0"
      darktable:blendop_version="11"
      darktable:blendop_params="gz08eJxjYGBgYAFiCQYYOOHEgAYY0QVwggZ7"/>
     <rdf:li
      darktable:num="1"
      darktable:operation="exposure"
      darktable:enabled="1"
      darktable:modversion="6"
      darktable:params="00000000000080b9"
      darktable:multi_name=""
      darktable:multi_priority="0"
      darktable:blendop_version="11"
      darktable:blendop_params="gz08eJxjYGBgYAFiCQYYOOHEgAYY0QVwggZ7"/>
    </rdf:Seq>
   </darktable:history>
  </rdf:Description>
 </rdf:RDF>
</x:xmpmeta>
"""

# digiKam 8 (libexiv2): TagsList + LastKeywordXMP + hierarchicalSubject + CatalogSets + dc:subject, padding.
DIGIKAM = """<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/" x:xmptk="XMP Core 4.4.0-Exiv2">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <rdf:Description rdf:about=""
    xmlns:xmp="http://ns.adobe.com/xap/1.0/"
    xmlns:digiKam="http://www.digikam.org/ns/1.0/"
    xmlns:MicrosoftPhoto="http://ns.microsoft.com/photo/1.0/"
    xmlns:lr="http://ns.adobe.com/lightroom/1.0/"
    xmlns:mediapro="http://ns.iview-multimedia.com/mediapro/1.0/"
    xmlns:dc="http://purl.org/dc/elements/1.1/"
   xmp:Rating="3"
   MicrosoftPhoto:Rating="50">
   <digiKam:TagsList>
    <rdf:Seq>
     <rdf:li>People/Alice</rdf:li>
     <rdf:li>Places/Paris</rdf:li>
    </rdf:Seq>
   </digiKam:TagsList>
   <MicrosoftPhoto:LastKeywordXMP>
    <rdf:Bag>
     <rdf:li>People/Alice</rdf:li>
     <rdf:li>Places/Paris</rdf:li>
    </rdf:Bag>
   </MicrosoftPhoto:LastKeywordXMP>
   <lr:hierarchicalSubject>
    <rdf:Bag>
     <rdf:li>People|Alice</rdf:li>
     <rdf:li>Places|Paris</rdf:li>
    </rdf:Bag>
   </lr:hierarchicalSubject>
   <mediapro:CatalogSets>
    <rdf:Bag>
     <rdf:li>People|Alice</rdf:li>
     <rdf:li>Places|Paris</rdf:li>
    </rdf:Bag>
   </mediapro:CatalogSets>
   <dc:subject>
    <rdf:Bag>
     <rdf:li>Alice</rdf:li>
     <rdf:li>Paris</rdf:li>
    </rdf:Bag>
   </dc:subject>
   <dc:description>
    <rdf:Alt>
     <rdf:li xml:lang="x-default">Eiffel tower at night</rdf:li>
    </rdf:Alt>
   </dc:description>
  </rdf:Description>
 </rdf:RDF>
</x:xmpmeta>
""" + ("                                                                                                    \n" * 20) + """<?xpacket end="w"?>"""

# Lightroom Classic, RAW sidecar: develop settings (crs:), photoshop:, xmpMM history, keywords, no xpacket.
LIGHTROOM = """<x:xmpmeta xmlns:x="adobe:ns:meta/" x:xmptk="Adobe XMP Core 7.0-c000 1.000000, 0000/00/00-00:00:00        ">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <rdf:Description rdf:about=""
    xmlns:tiff="http://ns.adobe.com/tiff/1.0/"
    xmlns:exif="http://ns.adobe.com/exif/1.0/"
    xmlns:xmp="http://ns.adobe.com/xap/1.0/"
    xmlns:aux="http://ns.adobe.com/exif/1.0/aux/"
    xmlns:photoshop="http://ns.adobe.com/photoshop/1.0/"
    xmlns:xmpMM="http://ns.adobe.com/xap/1.0/mm/"
    xmlns:stEvt="http://ns.adobe.com/xap/1.0/sType/ResourceEvent#"
    xmlns:dc="http://purl.org/dc/elements/1.1/"
    xmlns:crs="http://ns.adobe.com/camera-raw-settings/1.0/"
    xmlns:lr="http://ns.adobe.com/lightroom/1.0/"
   tiff:Make="NIKON CORPORATION"
   tiff:Model="NIKON D750"
   tiff:Orientation="1"
   exif:ExposureTime="1/250"
   exif:FNumber="56/10"
   xmp:ModifyDate="2023-06-01T10:00:00.00+02:00"
   xmp:Rating="2"
   aux:Lens="24.0-120.0 mm f/4.0"
   photoshop:DateCreated="2023-06-01T10:00:00.00"
   photoshop:City="Lyon"
   xmpMM:DocumentID="xmp.did:0a1b2c3d"
   xmpMM:InstanceID="xmp.iid:4e5f6a7b"
   crs:Version="15.0"
   crs:ProcessVersion="11.0"
   crs:WhiteBalance="As Shot"
   crs:Exposure2012="+0.35"
   crs:HasSettings="True">
   <xmpMM:History>
    <rdf:Seq>
     <rdf:li
      stEvt:action="saved"
      stEvt:instanceID="xmp.iid:4e5f6a7b"
      stEvt:when="2023-06-01T10:00:00+02:00"
      stEvt:softwareAgent="Adobe Photoshop Lightroom Classic 12.0 (Windows)"
      stEvt:changed="/metadata"/>
    </rdf:Seq>
   </xmpMM:History>
   <crs:ToneCurvePV2012>
    <rdf:Seq>
     <rdf:li>0, 0</rdf:li>
     <rdf:li>255, 255</rdf:li>
    </rdf:Seq>
   </crs:ToneCurvePV2012>
   <dc:title>
    <rdf:Alt>
     <rdf:li xml:lang="x-default">Vieux Lyon</rdf:li>
    </rdf:Alt>
   </dc:title>
   <dc:subject>
    <rdf:Bag>
     <rdf:li>France</rdf:li>
     <rdf:li>Lyon</rdf:li>
    </rdf:Bag>
   </dc:subject>
   <lr:hierarchicalSubject>
    <rdf:Bag>
     <rdf:li>Places|France|Lyon</rdf:li>
    </rdf:Bag>
   </lr:hierarchicalSubject>
  </rdf:Description>
 </rdf:RDF>
</x:xmpmeta>
"""


def snapshot(side):
    return exiftool_json(side), exiv2_read(side)


def roundtrip(side, image, naming, app_keywords, user_keywords, ours):
    """Tag, re-tag and untag one sidecar; check both readers and what the app shows at each step."""
    before_et, before_x2 = snapshot(side)
    assert set(app_keywords(before_x2)) >= set(user_keywords)
    for labels in (LABELS, RETAG):
        assert write_sidecar(image, labels, naming=naming, model_name="imgtag-test") == side
        et, x2 = snapshot(side)
        assert foreign(et) == foreign(before_et) and foreign(x2) == foreign(before_x2)
        shown = set(app_keywords(x2))
        assert shown >= set(user_keywords), "the app lost a user keyword"
        assert shown >= set(ours(labels)), "the app does not see imgtag's keywords"
    stale = set(ours(LABELS)) - set(ours(RETAG)) - set(user_keywords)
    assert stale and not stale & shown, "a re-run left imgtag's stale keywords"
    assert untag_sidecar(side) == "untagged"
    assert snapshot(side) == (before_et, before_x2)  # every property as both readers read it before


def test_darktable_ext_naming(tmp_path):
    """darktable: photo.CR2.xmp; reads lr:hierarchicalSubject (else dc:subject)."""
    image = tmp_path / "IMG_0001.CR2"
    image.touch()
    side = tmp_path / "IMG_0001.CR2.xmp"
    side.write_text(DARKTABLE, encoding="utf-8")
    roundtrip(side, image, "auto", darktable_keywords, ["darktable|format|cr2", "holiday", "places|beach"],
              lambda labels: [lab.path for lab in labels])


def test_darktable_flat_keywords_only(tmp_path):
    """darktable on a sidecar with dc:subject only: the user's keywords stay visible after imgtag."""
    image = tmp_path / "IMG_0002.CR2"
    image.touch()
    side = tmp_path / "IMG_0002.CR2.xmp"
    flat = DARKTABLE.replace("""   <lr:hierarchicalSubject>
    <rdf:Bag>
     <rdf:li>darktable|format|cr2</rdf:li>
     <rdf:li>holiday</rdf:li>
     <rdf:li>places|beach</rdf:li>
    </rdf:Bag>
   </lr:hierarchicalSubject>
""", "")
    assert "hierarchicalSubject" not in flat
    side.write_text(flat, encoding="utf-8")
    roundtrip(side, image, "ext", darktable_keywords, ["holiday"], lambda labels: [lab.path for lab in labels])


def test_digikam_ext_naming(tmp_path):
    """digiKam (default): photo.jpg.xmp; reads TagsList first (LastKeywordXMP kept in step)."""
    image = tmp_path / "paris.jpg"
    image.touch()
    side = tmp_path / "paris.jpg.xmp"
    side.write_text(DIGIKAM, encoding="utf-8")
    roundtrip(side, image, "auto", digikam_keywords, ["People/Alice", "Places/Paris"],
              lambda labels: [lab.path.replace("/", "\u2215").replace("|", "/") for lab in labels])
    write_sidecar(image, LABELS)
    x2 = exiv2_read(side)
    assert x2["Xmp.MicrosoftPhoto.LastKeywordXMP"] == x2["Xmp.digiKam.TagsList"]
    assert x2["Xmp.mediapro.CatalogSets"] == ["People|Alice", "Places|Paris"]  # not imgtag's field: untouched
    assert side.read_text(encoding="utf-8").endswith(" " * 100 + '\n<?xpacket end="w"?>\n')  # padding kept


def test_digikam_stem_naming(tmp_path):
    """digiKam with "photo.xmp" naming: --sidecar-naming stem (or auto once photo.xmp exists)."""
    image = tmp_path / "paris.jpg"
    image.touch()
    side = tmp_path / "paris.xmp"
    side.write_text(DIGIKAM, encoding="utf-8")
    roundtrip(side, image, "stem", digikam_keywords, ["People/Alice", "Places/Paris"],
              lambda labels: [lab.path.replace("/", "\u2215").replace("|", "/") for lab in labels])
    assert SidecarNamer("auto")(image) == side


def test_digikam_without_tags_list_keeps_seeing_user_keywords(tmp_path):
    """digiKam read lr:hierarchicalSubject while TagsList was absent: adding TagsList copies it in."""
    image = tmp_path / "paris.jpg"
    image.touch()
    side = tmp_path / "paris.jpg.xmp"
    side.write_text(LIGHTROOM, encoding="utf-8")
    roundtrip(side, image, "auto", digikam_keywords, ["Places/France/Lyon"],
              lambda labels: [lab.path.replace("/", "\u2215").replace("|", "/") for lab in labels])


def test_lightroom_raw_stem_naming(tmp_path):
    """Lightroom Classic: photo.xmp beside the RAW (a JPEG of the same stem gets photo.JPG.xmp); reads
    dc:subject and lr:hierarchicalSubject."""
    raw, jpg = tmp_path / "DSC_0042.NEF", tmp_path / "DSC_0042.JPG"
    raw.touch()
    jpg.touch()
    side = tmp_path / "DSC_0042.xmp"
    side.write_text(LIGHTROOM, encoding="utf-8")
    roundtrip(side, raw, "auto", lightroom_keywords, ["France", "Lyon", "Places"],
              lambda labels: [lab.label for lab in labels])
    assert write_sidecar(jpg, LABELS, naming="stem") == tmp_path / "DSC_0042.JPG.xmp"  # never photo.xmp
    assert read_sidecar(side)["scores"] == {}


def test_exiftool_and_exiv2_read_a_new_sidecar(tmp_path):
    """A sidecar imgtag creates: both readers see every field, and untag deletes it."""
    image = tmp_path / "new.png"
    side = write_sidecar(image, LABELS, model_name="imgtag-test")
    et, x2 = snapshot(side)
    assert et["XMP-lr:HierarchicalSubject"] == [lab.path for lab in LABELS]
    assert x2["Xmp.dc.subject"] == [lab.label for lab in LABELS]
    assert x2["Xmp.digiKam.TagsList"][-1] == "AC\u2215DC" and x2["Xmp.imgtag.Model"] == ["imgtag-test"]
    assert x2["Xmp.imgtag.AddedSubjects"] == x2["Xmp.dc.subject"]
    assert untag_sidecar(image) == "deleted"


@pytest.mark.parametrize("fixture", [DARKTABLE, DIGIKAM, LIGHTROOM], ids=["darktable", "digikam", "lightroom"])
def test_keyword_the_user_had_survives_untag(tmp_path, fixture):
    """B6 in each app's file: a label equal to a user keyword is not imgtag's, so untag keeps it."""
    image = tmp_path / "a.jpg"
    side = tmp_path / "a.jpg.xmp"
    side.write_text(fixture, encoding="utf-8")
    before = snapshot(side)
    user_kw = read_sidecar(side)["subject"][0]
    write_sidecar(image, [Label(user_kw, 0.9, user_kw), Label("cat", 0.8, "animal|cat")])
    write_sidecar(image, [Label("cat", 0.8, "animal|cat")])  # user_kw no longer predicted
    assert user_kw in read_sidecar(side)["subject"]
    untag_sidecar(image)
    assert snapshot(side) == before
