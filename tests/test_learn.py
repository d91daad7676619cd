"""imgtag learn: keyword harvesting (sidecars, embedded XMP, IPTC), honest labels, the content-keyed feature cache,
calibrated thresholds and the learned model, on a tiny library of real files written here."""
from __future__ import annotations

import hashlib
import json
import shutil
import struct
import subprocess

import numpy as np
import pytest
from PIL import Image

from imgtag.engine.learn import LearnConfig, collect, precision_threshold, read_corrections
from imgtag.io.keywords import embedded_metadata, harvest, parse_xmp, photo_keywords

EXIFTOOL = shutil.which("exiftool")


def xmp(subject=(), hier=(), tags=(), extra="") -> str:
    def bag(tag, items, kind="Bag"):
        if not items:
            return ""
        lis = "".join(f"<rdf:li>{i}</rdf:li>" for i in items)
        return f"<{tag}><rdf:{kind}>{lis}</rdf:{kind}></{tag}>"

    return ("<?xpacket begin='\ufeff' id='W5M0MpCehiHzreSzNTczkc9d'?>\n"
            "<x:xmpmeta xmlns:x='adobe:ns:meta/'><rdf:RDF xmlns:rdf='http://www.w3.org/1999/02/22-rdf-syntax-ns#'>"
            "<rdf:Description rdf:about='' xmlns:dc='http://purl.org/dc/elements/1.1/' "
            "xmlns:lr='http://ns.adobe.com/lightroom/1.0/' xmlns:digiKam='http://www.digikam.org/ns/1.0/' "
            "xmlns:imgtag='http://ns.imgtag.dev/1.0/'>"
            + bag("dc:subject", subject) + bag("lr:hierarchicalSubject", hier) + bag("digiKam:TagsList", tags, "Seq")
            + extra + "</rdf:Description></rdf:RDF></x:xmpmeta>\n<?xpacket end='w'?>")


def iptc_jpeg(path, keywords: list[bytes], utf8: bool, color=(200, 30, 30)) -> None:
    """A JPEG with an APP13 Photoshop IPTC block holding ``keywords`` (raw bytes), built by hand."""
    Image.new("RGB", (48, 40), color).save(path, quality=90)
    iim = (b"\x1c\x01\x5a\x00\x03\x1b%G" if utf8 else b"")
    iim += b"".join(b"\x1c\x02\x19" + struct.pack(">H", len(k)) + k for k in keywords)
    res = b"8BIM\x04\x04\x00\x00" + struct.pack(">I", len(iim)) + iim + b"\x00" * (len(iim) % 2)
    seg = b"Photoshop 3.0\x00" + res
    data = path.read_bytes()
    path.write_bytes(data[:2] + b"\xff\xed" + struct.pack(">H", len(seg) + 2) + seg + data[2:])


def image(path, color, seed: int) -> None:
    rng = np.random.default_rng(seed)
    a = np.clip(np.array(color, np.float32) + rng.normal(0, 25, (40, 48, 3)), 0, 255).astype(np.uint8)
    Image.fromarray(a).save(path)


def digest(root) -> dict:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def library(tmp_path):
    """12 red photos keyworded Colors|red (three sidecar styles and IPTC), 12 blue ones (Colors|blue), 3 without
    keywords, a bad sidecar, a photo that is no image, a keyword with '/' inside a level, imgtag's own labels."""
    lib = tmp_path / "lib"
    (lib / "a").mkdir(parents=True)
    red, blue = (210, 40, 40), (40, 60, 210)
    for i in range(12):
        for name, color, kw in (("red", red, "red"), ("blue", blue, "blue")):
            p = lib / "a" / f"{name}{i:02d}.jpg"
            image(p, color, seed=i + (100 if name == "blue" else 0))
            style = i % 4
            if style == 0:  # exiftool / Lightroom: photo.jpg.xmp with both properties
                (lib / "a" / f"{p.name}.xmp").write_text(xmp([kw, "Colors"], [f"Colors|{kw}"]), "utf-8")
            elif style == 1:  # digiKam TagsList in photo.xmp
                p.with_suffix(".xmp").write_text(xmp(tags=[f"Colors/{kw}"]), "utf-8")
            elif style == 2:  # flat dc:subject only, plus imgtag's own earlier label (ignored)
                (lib / "a" / f"{p.name}.xmp").write_text(
                    xmp([kw, "person"], ["imgtag|person"], extra="<imgtag:Scores><rdf:Bag><rdf:li>person=0.9</rdf:li>"
                        "</rdf:Bag></imgtag:Scores>"), "utf-8")
            else:  # IPTC only (no charset record, Latin-1 bytes for a second keyword)
                p.unlink()
                iptc_jpeg(p, [kw.encode(), "Café".encode("latin-1")], utf8=False,
                          color=red if name == "red" else blue)
    for i in range(3):
        image(lib / f"untagged{i}.png", (120, 120, 120), seed=50 + i)
    image(lib / "broken_sidecar.jpg", red, 7)
    (lib / "broken_sidecar.jpg.xmp").write_text(xmp(["red"])[:-40], "utf-8")
    (lib / "not_an_image.jpg").write_text("this is text, not a photo")
    (lib / "not_an_image.jpg.xmp").write_text(xmp(["red"], ["Colors|red"]), "utf-8")
    (lib / "deleted.jpg.xmp").write_text(xmp(["red"], ["Colors|red"]), "utf-8")  # its photo is gone
    image(lib / "slash.jpg", blue, 8)
    (lib / "slash.jpg.xmp").write_text(xmp(["AC/DC", "blue"], ["Music|AC/DC"]), "utf-8")
    return lib


def test_harvest_styles_encodings_and_problems(library):
    problems: list[str] = []
    photos = {p.path.name: p for p in harvest(sorted(library.rglob("*.jpg")) + sorted(library.rglob("*.png")), problems)}
    assert photos["red00.jpg"].keywords == ["Colors|red"]  # dc:subject levels folded into the path
    assert photos["red01.jpg"].keywords == ["Colors|red"]  # digiKam TagsList, photo.xmp
    assert photos["red02.jpg"].keywords == ["Colors|red"]  # flat 'red' resolved to the library's one path
    assert "person" not in " ".join(photos["red02.jpg"].keywords)  # imgtag's own label ignored
    assert set(photos["red03.jpg"].keywords) == {"Colors|red", "Café"}  # IPTC, Latin-1 without 1:90
    assert photos["untagged0.png"].keywords == []
    assert "broken_sidecar.jpg" not in photos
    assert any("broken_sidecar.jpg.xmp" in p and "malformed" in p for p in problems)
    assert photos["slash.jpg"].keywords == ["Colors|blue"]
    assert sum("AC/DC" in p for p in problems) == 2  # the flat one and the path, one line each


def test_sidecar_encodings(tmp_path):
    """Sidecars in the encodings tools write: UTF-8 with a BOM, UTF-16 (XMP allows it), Latin-1 with its XML
    declaration are read; Latin-1 bytes that claim nothing (so UTF-8) are reported, one line, and skipped."""
    x = xmp(["Café", "Größe"], ["Places|Café"])
    bare = x.replace("\ufeff", "").split("?>", 1)[1]  # without the xpacket header
    files = {"bom": b"\xef\xbb\xbf" + x.encode(), "utf16": x.encode("utf-16"),
             "latin1": ('<?xml version="1.0" encoding="ISO-8859-1"?>' + bare).encode("latin-1"),
             "undeclared": bare.encode("latin-1")}
    for name, data in files.items():
        Image.new("RGB", (8, 8)).save(tmp_path / f"{name}.jpg")
        (tmp_path / f"{name}.jpg.xmp").write_bytes(data)
    problems: list[str] = []
    got = {p.path.stem: sorted(p.keywords) for p in harvest(sorted(tmp_path.glob("*.jpg")), problems)}
    assert got == {"bom": ["Größe", "Places|Café"], "utf16": ["Größe", "Places|Café"],
                   "latin1": ["Größe", "Places|Café"]}
    assert len(problems) == 1 and "undeclared.jpg.xmp" in problems[0] and "malformed" in problems[0]


def test_iptc_utf8_record_and_provenance(tmp_path):
    p = tmp_path / "x.jpg"
    iptc_jpeg(p, ["Größe".encode("utf-8"), b"plain"], utf8=True)
    assert photo_keywords(p, []).keywords == ["Größe", "plain"]
    # a provenance list says exactly which flat keywords imgtag added: the user's own 'dog' stays
    x = parse_xmp(xmp(["dog", "cat"], ["imgtag|dog", "imgtag|cat"],
                      extra="<imgtag:AddedSubjects><rdf:Bag><rdf:li>cat</rdf:li></rdf:Bag></imgtag:AddedSubjects>").encode())
    assert x.provenance and x.imgtag == ["cat"] and x.added_subjects == ["cat"]
    q = tmp_path / "y.jpg"
    Image.new("RGB", (8, 8)).save(q)
    (tmp_path / "y.jpg.xmp").write_text(xmp(["dog", "cat"], ["imgtag|dog", "imgtag|cat", "animal|cat"],
                                            extra="<imgtag:AddedSubjects><rdf:Bag><rdf:li>cat</rdf:li></rdf:Bag>"
                                                  "</imgtag:AddedSubjects><imgtag:AddedHierarchicalSubjects><rdf:Bag>"
                                                  "<rdf:li>animal|cat</rdf:li></rdf:Bag></imgtag:AddedHierarchicalSubjects>"
                                                  "<imgtag:Scores><rdf:Bag><rdf:li>dog=0.9</rdf:li><rdf:li>cat=0.8</rdf:li>"
                                                  "</rdf:Bag></imgtag:Scores>"), "utf-8")
    assert photo_keywords(q, []).keywords == ["dog"]  # the user's dog (imgtag scored it too, did not add it)


@pytest.mark.skipif(EXIFTOOL is None, reason="exiftool not installed")
@pytest.mark.parametrize("ext", ["jpg", "png", "tif", "webp"])
def test_embedded_xmp_written_by_exiftool(tmp_path, ext):
    p = tmp_path / f"e.{ext}"
    Image.new("RGB", (16, 16), "red").save(p)
    subprocess.run([EXIFTOOL, "-q", "-overwrite_original", "-XMP-dc:Subject=Mia", "-XMP-lr:HierarchicalSubject=Family|Kids|Mia",
                    str(p)], check=True)
    assert embedded_metadata(p)[0]
    assert photo_keywords(p, []).keywords == ["Family|Kids|Mia"]


def test_precision_threshold():
    s = np.array([0.95, 0.9, 0.85, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2])
    pos = np.array([1, 1, 1, 1, 1, 0, 1, 0, 0, 0], bool)
    assert precision_threshold(s, pos, 0.85)["threshold"] == 0.5  # never below the floor: P(right) >= 0.5
    t = precision_threshold(s, pos, 0.85, floor=0)
    assert t["reached"] and 0.4 < t["threshold"] < 0.5 and t["precision"] == pytest.approx(6 / 7)
    assert t["recall"] == 1.0
    t = precision_threshold(s, pos, 0.99)
    assert t["reached"] and 0.6 < t["threshold"] < 0.7 and t["recall"] == pytest.approx(5 / 6)
    t = precision_threshold(s, ~pos, 0.9)
    assert not t["reached"] and t["threshold"] > 1  # never: a probability does not reach it
    # minimum support: two right photos on top are no evidence of precision 0.9 ...
    s2 = np.linspace(0.99, 0.01, 20)
    pos2 = np.zeros(20, bool)
    pos2[[0, 1, 4, 9, 14, 19]] = True
    assert not precision_threshold(s2, pos2, 0.9)["reached"]
    assert precision_threshold(s2, pos2, 0.9, min_support=2)["suggested"] == 2  # ... unless asked for


def test_platt_keeps_separable_keywords_finite():
    """A keyword the head separates perfectly: raw sigmoid scores saturate at 1.0 and every threshold lands at
    0.99x; Platt scaling on the held-out logits gives a finite slope, so the calibrated threshold is an ordinary
    probability, and the folded head scores what the thresholds were chosen on."""
    from imgtag.engine.learn import Labels, apply_platt, calibrate, platt, sigmoid

    rng = np.random.default_rng(0)
    z = np.concatenate([rng.normal(40, 5, 30), rng.normal(-40, 5, 300)])  # logits of an over-confident head
    pos = np.arange(330) < 30
    assert (sigmoid(z[pos]) > 0.999999).all()
    a, c = platt(z, pos)
    assert 0 < a < 1 and np.isfinite(c)
    p = sigmoid(a * z + c)
    assert p[pos].max() < 0.999 and p[~pos].min() > 1e-4
    lab = Labels([], ["k"], pos[:, None].astype(np.float32), np.ones((330, 1), np.float32), {"k": 30}, {}, 0, [])
    rows, ab = calibrate(z[:, None].astype(np.float32), lab, 0.99)  # 0.99: no negative above the cut
    thr = rows[0]["threshold"]
    assert rows[0]["reached"] and rows[0]["recall"] == 1.0
    assert p[~pos].max() < thr < p[pos].min()  # in the gap, half way in logit space, not 0.999x
    wt, b = apply_platt((np.ones((1, 1), np.float32), np.zeros(1, np.float32)), ab)
    assert np.allclose(sigmoid(z[:, None] * wt[0, 0] + b[0]), p[:, None], atol=1e-5)
    # a keyword the head cannot rank: never reaches the target, and Platt does not reverse the ranking
    a, _ = platt(rng.normal(size=200), rng.random(200) < 0.3)
    assert a > 0


def test_labels_are_honest(library, tmp_path):
    corr = tmp_path / "corrections.jsonl"
    corr.write_text(json.dumps({"path": str(library / "a" / "blue00.jpg"), "keyword": "red",
                                "keyword_path": "Colors|red", "verdict": "wrong"}) + "\n"
                    + json.dumps({"path": str(library / "untagged0.png"), "keyword": "grey",
                                  "keyword_path": "Colors|grey", "verdict": "missing"}) + "\nnot json\n")
    lab = collect([library], LearnConfig(out="x", min_examples=4, corrections=str(corr), negative_weight=0.25))
    assert lab.keywords == ["Café", "Colors|blue", "Colors|red"]
    assert lab.unlabelled == 2  # untagged1, untagged2 (untagged0 has a correction)
    assert lab.not_learnable == {"Colors|grey": 1}
    assert any("corrections.jsonl:3" in p for p in lab.problems)
    assert [p for p in lab.problems if "deleted.jpg.xmp" in p] == [f"{library / 'deleted.jpg.xmp'}: sidecar without a photo next to it: skipped"]
    names = [p.name for p in lab.photos]
    j = lab.keywords.index("Colors|red")
    i = names.index("blue01.jpg")
    assert lab.targets[i, j] == 0 and lab.weights[i, j] == 0.25  # weak negative
    i = names.index("blue00.jpg")
    assert lab.targets[i, j] == 0 and lab.weights[i, j] == 1.0  # hard negative from a correction
    assert "untagged0.png" not in names  # only its corrected keyword (not learnable) is known: nothing to learn
    lab = collect([library], LearnConfig(out="x", min_examples=4, exclude_keywords=["Colors"]))
    assert lab.keywords == ["Café"]
    lab = collect([library], LearnConfig(out="x", min_examples=4, keywords=["blue"]))
    assert lab.keywords == ["Colors|blue"]


@pytest.mark.slow
def test_learn_cli_end_to_end(library, tmp_path, tiny_model):
    from typer.testing import CliRunner

    from imgtag.cli import app
    from imgtag.card import read_card
    from imgtag.runtime.tagger import Tagger

    before = digest(library)
    out = tmp_path / "models" / "mine"
    args = ["learn", str(library), "--out", str(out), "--base-model", str(tiny_model), "--min-examples", "6",
            "--precision", "0.8", "--folds", "3", "--json",
            "--runtime", "torch", "--workers", "0"]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout[r.stdout.index("{"):])
    assert digest(library) == before  # nothing the user owns was touched, no file added
    assert summary["features"]["extracted"] == 25 and summary["features"]["failed"] == 1  # not_an_image.jpg
    assert "not_an_image.jpg" in r.stderr and "broken_sidecar.jpg.xmp" in r.stderr and "deleted.jpg.xmp" in r.stderr
    card = read_card(out.with_suffix(".json"))
    from imgtag.engine.evaluate import user_columns

    paths, cols, thr = user_columns(card)
    assert paths == ["Café", "Colors|blue", "Colors|red"] and [row["keyword"] for row in card.metrics["keywords"]] == paths
    assert {k["name"] for k in card.vocabulary["keywords"]} == {"Café", "Colors", "blue", "red"}
    assert card.metrics["below_target"] == [r["keyword"] for r in card.metrics["keywords"] if not r["reached"]]
    red = next(row for row in card.metrics["keywords"] if row["keyword"] == "Colors|red")
    assert red["photos"] == 12 and red["ap"] > 90 and (red["threshold"] < 0.99 or not red["reached"])
    # one backbone pass over the learned model: red photos score red high
    t = Tagger(str(out.with_suffix(".json")), device="cpu", runtime="torch", workers=0)
    preds = list(t.tag_paths([library / "a" / "red05.jpg", library / "a" / "blue05.jpg"]))
    z = np.stack([p.logits[cols] for p in preds])
    assert z[0, 2] > z[1, 2] and z[1, 1] > z[0, 1]
    # a re-learn extracts nothing again; a new photo is the only one extracted
    image(library / "a" / "red99.jpg", (210, 40, 40), 99)
    (library / "a" / "red99.jpg.xmp").write_text(xmp(["red"], ["Colors|red"]), "utf-8")
    r = CliRunner().invoke(app, args)
    summary = json.loads(r.stdout[r.stdout.index("{"):])
    assert summary["features"]["extracted"] == 1 and summary["features"]["cached"] == 25
    # eval on the whole library: the model's keywords matched by path; problems reported; the model has seen
    # these photos (no --hold-out), and eval says so
    ev_args = ["eval", "--dataset", "library", "--root", str(library), "--model", str(out.with_suffix(".json")),
               "--runtime", "torch", "--workers", "0", "--json"]
    r = CliRunner().invoke(app, [*ev_args, "--split", "all"])
    ev = json.loads(r.stdout[r.stdout.index("{"):])
    assert set(ev["per_class_ap"]) == {"Café", "Colors|blue", "Colors|red"} and ev["images"] == 26
    assert ev["per_class_ap"]["Colors|red"] > 90 and ev["split"] == "all"
    assert "optimistic" in ev["warning"] and "warning:" in r.stderr
    # --hold-out: learn leaves the test split out; eval's default split is that test split, with no warning
    from imgtag.data.library import LibraryDataset

    test_photos = LibraryDataset(library, "test").paths
    r = CliRunner().invoke(app, [*args, "--hold-out"])
    assert r.exit_code == 0, r.output
    held = read_card(out.with_suffix(".json")).recipe["held_out"]
    assert held["split"] == "test" and "sha1" in held["rule"]
    r = CliRunner().invoke(app, ev_args)
    assert r.exit_code == 1 and "broken_sidecar" in r.stderr  # the bad sidecar is reported: exit 1
    ev = json.loads(r.stdout[r.stdout.index("{"):])
    assert ev["split"] == "test" and "warning" not in ev and 0 < ev["images"] <= len(test_photos) < 26
    r = CliRunner().invoke(app, [*ev_args, "--split", "val"])  # not a library split: the rule is explained
    assert r.exit_code == 2 and "unknown library split" in r.output and "sha1" in r.output


def test_corrections_schema(tmp_path):
    f = tmp_path / "c.jsonl"
    f.write_text(json.dumps({"path": "x.jpg", "keyword": "Mia", "keyword_path": "Family/Kids/Mia", "verdict": "right"})
                 + "\n" + json.dumps({"path": "y.jpg", "keyword": "Mia", "verdict": "maybe"}) + "\n")
    problems: list[str] = []
    c = read_corrections(f, problems)
    assert c == {str(tmp_path / "x.jpg"): {"Family|Kids|Mia": "right"}}
    assert len(problems) == 1 and "c.jsonl:2" in problems[0]


@pytest.mark.slow
@pytest.mark.parametrize("with_default", [False, True])
def test_learned_model_is_the_base_plus_a_user_head(tmp_path, tiny_model, with_default):
    """The learned model is the base model's card + a "user" head on the avg+max pooled map, one backbone pass;
    its file holds only that head (the base's weights are referenced by name + sha256 and merged at load); the
    user's keywords come out with their own paths and land in a sidecar's keyword fields."""
    import torch

    from imgtag.card import read_card, read_weights
    from imgtag.engine.learn import read_learned, save_learned
    from imgtag.io.xmp import write_sidecar
    from imgtag.models.model import load_model
    from imgtag.runtime.tagger import Tagger

    rng = np.random.default_rng(0)
    kws = ["Animals|Pets|dog", "Family|Kids|Mia"]
    head = (rng.normal(size=(2, 2 * 1280)).astype(np.float32) * 0.01, np.array([-30.0, 30.0], np.float32))
    cfg = LearnConfig(out=str(tmp_path / "m"), base_model=str(tiny_model), with_default=with_default)
    wpath, cpath = save_learned(cfg, kws, head, [0.7, 0.6], [{"keyword": k} for k in kws], {"command": "imgtag learn"})
    assert set(read_weights(wpath)) == {"extra_heads.user.weight", "extra_heads.user.bias"}  # no backbone copy
    assert wpath.stat().st_size < 30_000
    card = read_card(cpath)
    assert card.base["model"].endswith("tiny.json") and card.labels == ["cat", "dog", "person"]
    assert [h["name"] for h in card.heads] == ["base", "user"]
    voc = {k["path"]: k for k in card.vocabulary["keywords"]}
    assert voc["Family|Kids|Mia"]["name"] == "Mia" and voc["Family|Kids|Mia"]["thresholds"] == {"user": 0.6}
    assert voc["Family|Kids"]["classes"] == {}  # a parent only
    assert ("dog" in voc) == with_default and voc["Animals|Pets|dog"]["name"] == ("Animals|Pets|dog" if with_default else "dog")
    base, _ = load_model(str(tiny_model))
    mine, _ = load_model(str(cpath))
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        out, ref, fmap = mine(x), base(x), base.backbone(x)
    assert out.shape == (2, 5) and torch.allclose(out[:, :3], ref, atol=1e-5)
    pooled = torch.cat([fmap.mean((2, 3)), fmap.amax((2, 3))], 1).numpy()
    assert np.allclose(out[:, 3:].numpy(), pooled @ head[0].T + head[1], atol=1e-3)
    assert read_learned(cpath)[0] == kws and read_learned(cpath)[2] == [0.7, 0.6]
    # tagging: Mia fires (bias +30) with her path and parents, dog never (bias -30)
    t = Tagger(str(cpath), device="cpu", runtime="torch", workers=0)
    pred = t.tag_pixels([rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)], ["p.jpg"])[0]
    mine_out = [(lb.label, lb.path) for lb in pred.labels if lb.path.startswith("Family")]
    assert mine_out and mine_out[0] == ("Mia", "Family|Kids|Mia") and ("Family", "Family") in mine_out
    assert not any(lb.path.startswith("Animals") for lb in pred.labels)
    if not with_default:
        assert all(lb.path.startswith("Family") for lb in pred.labels)  # only the user's keywords
        # the CPU default runtime: the ONNX graph of base + user head gives the same logits
        o = Tagger(str(cpath), device="cpu", runtime="onnx", workers=0)
        img = rng.integers(0, 255, (2, 3, 64, 64), dtype=np.uint8)
        assert np.allclose(o.logits_batch(img), t.logits_batch(img), atol=1e-3)
    photo = tmp_path / "p.jpg"
    Image.new("RGB", (8, 8)).save(photo)
    write_sidecar(photo, pred.labels)
    sidecar = (tmp_path / "p.jpg.xmp").read_text("utf-8")
    assert "Family|Kids|Mia" in sidecar and "Family/Kids/Mia" in sidecar  # lr:hierarchicalSubject, digiKam:TagsList
    if EXIFTOOL:
        got = subprocess.run([EXIFTOOL, "-j", "-XMP-lr:HierarchicalSubject", "-XMP-digiKam:TagsList", "-XMP-dc:Subject",
                              str(tmp_path / "p.jpg.xmp")], capture_output=True, text=True, check=True).stdout
        d = json.loads(got)[0]
        assert "Family|Kids|Mia" in d["HierarchicalSubject"] and "Family/Kids/Mia" in d["TagsList"]
        assert "Mia" in d["Subject"]


def test_user_vocabulary_paths_parents_and_names():
    from imgtag.engine.learn import user_vocabulary
    from imgtag.vocab.score import Vocabulary

    base = [{"name": "animal", "path": "animal", "classes": {}, "thresholds": {}},
            {"name": "dog", "path": "animal|dog", "classes": {"voc": [0]}, "thresholds": {"voc": 0.5}}]
    kws = ["person", "Family|Kids|Mia", "Animals|Pets|dog", "animal|dog", "Trips|Mia"]
    v = user_vocabulary(kws, [0.1, 0.2, 0.3, 0.4, 2.0], base)
    by = {k["path"]: k for k in v}
    assert by["animal|dog"]["classes"] == {"voc": [0], "user": [3]}  # the same path: one keyword, both heads
    assert by["Animals|Pets|dog"]["name"] == "Animals|Pets|dog"  # 'dog' is taken
    assert by["Family|Kids|Mia"]["name"] == "Family|Kids|Mia" and by["Trips|Mia"]["name"] == "Trips|Mia"  # two Mias
    assert by["Family|Kids"] == {"name": "Kids", "path": "Family|Kids", "classes": {}, "thresholds": {}}
    assert by["Trips|Mia"]["thresholds"] == {"user": 2.0} and base[1]["classes"] == {"voc": [0]}  # base untouched
    Vocabulary([{"name": "voc", "size": 1}, {"name": "user", "size": 5}], v)  # a valid tree


def test_keywords_imgtag_wrote_are_not_learned(tmp_path):
    """A sidecar the user keyworded, then tagged by imgtag's own writer (with hierarchy paths): only the user's
    keywords are harvested, including one imgtag also predicted."""
    from imgtag.io.xmp import write_sidecar

    p = tmp_path / "p.jpg"
    Image.new("RGB", (8, 8)).save(p)
    (tmp_path / "p.jpg.xmp").write_text(xmp(["Mia", "dog"], ["Family|Kids|Mia"]), "utf-8")
    write_sidecar(p, [("dog", 0.9, "animal|dog"), ("person", 0.8, "person"), ("cat", 0.7, "animal|cat")])
    assert sorted(photo_keywords(p, []).keywords) == ["Family|Kids|Mia", "dog"]


def test_selector_emits_the_users_paths():
    from imgtag.runtime.selection import Selector

    sel = Selector(["Mia", "dog"], [0.5, 0.5], paths=["Family|Kids|Mia", "Animals|Pets|dog"])
    out = sel(np.array([0.9, 0.7], np.float32))
    assert [(lb.label, lb.path) for lb in out] == [("Mia", "Family|Kids|Mia"), ("dog", "Animals|Pets|dog")]
    sel = Selector(["Mia", "dog"], 0.5, exclude=["Family"], paths=["Family|Kids|Mia", "Animals|Pets|dog"])
    assert [lb.label for lb in sel(np.array([0.9, 0.7], np.float32))] == ["dog"]
    with pytest.raises(ValueError):
        Selector(["Mia"], 0.5, exclude=["Kids"], paths=["Family|Kids|Mia"])


@pytest.mark.slow
def test_feature_cache_key_is_the_backbone(tmp_path, tiny_model):
    """Two models with the same backbone weights (one with a keyword model's extra head) share the feature-cache
    key and give the same features: changing the default model to one with more heads keeps the cache."""
    import torch

    from imgtag.card import read_card, save_model
    from imgtag.engine.features import FeatureExtractor
    from imgtag.models.model import MultiLabelModel, load_model

    base, card = load_model(str(tiny_model))
    arch = {**card.architecture, "extra_heads": [{"name": "imagenet", "size": 7}]}
    m = MultiLabelModel(arch, card.num_classes)
    m.load_state_dict(base.state_dict(), strict=False)
    _, c2 = save_model(m, read_card(tiny_model).__class__(
        name="kw", labels=card.labels, architecture=arch, input_size=64, heads=[
            {"name": "voc", "size": 3}, {"name": "imagenet", "size": 7, "activation": "softmax"}]), tmp_path / "kw")
    a, b = FeatureExtractor(str(tiny_model), runtime="torch"), FeatureExtractor(str(c2), runtime="torch")
    assert a.key == b.key and b.dim == 2 * 1280
    x = torch.randint(0, 255, (2, 3, 64, 64), dtype=torch.uint8)
    assert np.allclose(a(x), b(x), atol=1e-5)
    with torch.no_grad():  # and a different backbone is another key
        next(m.backbone.parameters()).add_(1)
    _, c3 = save_model(m, read_card(c2), tmp_path / "other")
    assert FeatureExtractor(str(c3), runtime="torch").key != a.key


def test_unwritable_out_fails_before_any_photo_is_read(library, tmp_path, monkeypatch):
    """`learn --out` where no folder can be made (a FILE stands in the way): one line naming it, exit 2, before
    the harvest (no sidecar problem reported) and before any feature is extracted (the feature cache stays empty).
    A missing folder is made, as saving would."""
    from typer.testing import CliRunner

    from imgtag.cli import app
    from imgtag.engine.learn import check_out

    monkeypatch.setenv("IMGTAG_CACHE", str(tmp_path / "cache"))
    (tmp_path / "afile").write_text("not a folder")
    bad = tmp_path / "afile" / "mine"
    r = CliRunner().invoke(app, ["learn", str(library), "--out", str(bad), "--runtime", "torch", "--workers", "0"])
    assert r.exit_code == 2, r.output
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"imgtag: error: cannot write {bad}.json: "), lines
    assert not (tmp_path / "cache").exists()
    check_out(tmp_path / "new" / "folders" / "mine")  # made, like a NAME's user models folder
    assert (tmp_path / "new" / "folders").is_dir()
    monkeypatch.setenv("IMGTAG_USER_MODELS", str(tmp_path / "user-models"))
    check_out("mine")
    assert (tmp_path / "user-models").is_dir()
