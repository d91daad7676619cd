"""The keyword vocabulary: build from (a real excerpt of) WordNet, and hierarchy-aware scoring on hand-made logits."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from imgtag.vocab.build import VocabError, build_vocabulary
from imgtag.vocab.score import Vocabulary
from imgtag.vocab.wordnet import hypernym_path, parse_data_noun

DATA = Path(__file__).parent / "data"
CLASSES = ["n02088364", "n02099601", "n02099712", "n02123045", "n03782006", "n03991062", "n04404412", "n09421951",
           "n09428293"]  # beagle, golden retriever, Labrador, tabby, monitor, pot, television, sandbar, seashore
OVERRIDES = {
    "top": [["animal", ["n00015388"]], ["landscape", ["n09287968"]], ["object", ["n00021939"]]],
    "keep": {"n02084071": "dog", "n02099029": "retriever", "n02121808": "cat"},
    "groups": {"tv": "object", "water": "landscape"},
    "names": {"n02123045": "tabby cat", "n09428293": "beach", "n09421951": "beach", "n03991062": "potted plant",
              "n02099601": "golden retriever"},
    "parent": {"n04404412": "tv", "n03782006": "tv", "n09428293": "water", "n09421951": "water"},
    "drop": {"n02099712": "test: dropped"},
    "voc": {"dog": "dog", "tvmonitor": "tv", "pottedplant": "potted plant"},
}


@pytest.fixture(scope="module")
def synsets():
    return parse_data_noun((DATA / "wordnet_excerpt.noun").read_text())


def test_parse_real_wordnet_lines(synsets):
    assert synsets["n02099601"].lemmas == ["golden_retriever"]
    chain = [synsets[w].name for w in hypernym_path(synsets, "n02099601")]
    assert chain[0] == "entity" and chain[-3:] == ["sporting dog", "retriever", "golden retriever"]


def test_build_paths_merges_drops_and_voc(synsets):
    v = build_vocabulary(synsets, CLASSES, OVERRIDES)
    by = {k["name"]: k for k in v["keywords"]}
    assert by["golden retriever"]["path"] == "animal|dog|retriever|golden retriever"
    assert by["golden retriever"]["classes"] == [1]
    assert by["beagle"]["path"] == "animal|dog|beagle"  # unkept WordNet levels (hound, hunting dog...) vanish
    assert by["tabby cat"]["path"] == "animal|cat|tabby cat"
    assert by["beach"]["path"] == "landscape|water|beach" and by["beach"]["classes"] == [7, 8]  # merged
    assert by["television"]["path"] == "object|tv|television"
    assert "Labrador retriever" not in by and all(2 not in k["classes"] for k in v["keywords"])  # dropped
    assert by["dog"]["voc"] == "dog" and by["tv"]["voc"] == "tvmonitor" and by["potted plant"]["voc"] == "pottedplant"
    paths = [k["path"] for k in v["keywords"]]
    for p in paths:  # every parent is a keyword, listed before its children
        if "|" in p:
            assert paths.index(p.rsplit("|", 1)[0]) < paths.index(p)


def test_build_rejects_name_clash_and_unknown_ids(synsets):
    ov = json.loads(json.dumps(OVERRIDES))
    ov["names"]["n02088364"] = "television"  # beagle renamed onto a keyword with another path
    with pytest.raises(VocabError, match="two paths"):
        build_vocabulary(synsets, CLASSES, ov)
    ov = json.loads(json.dumps(OVERRIDES))
    ov["drop"]["n01234567"] = "not a class"
    with pytest.raises(VocabError, match="n01234567"):
        build_vocabulary(synsets, CLASSES, ov)


# ---- scoring on hand-made arrays -------------------------------------------------------------------------------
HEADS = [{"name": "voc", "size": 2, "activation": "sigmoid"}, {"name": "imagenet", "size": 4, "activation": "softmax"}]
KEYWORDS = [
    {"name": "animal", "path": "animal", "thresholds": {"imagenet": 0.5}},
    {"name": "dog", "path": "animal|dog", "classes": {"voc": [0]}, "thresholds": {"imagenet": 0.5, "voc": 0.8}},
    {"name": "beagle", "path": "animal|dog|beagle", "classes": {"imagenet": [0]}, "thresholds": {"imagenet": 0.5}},
    {"name": "pug", "path": "animal|dog|pug", "classes": {"imagenet": [1]}, "thresholds": {"imagenet": 0.5}},
    {"name": "person", "path": "person", "classes": {"voc": [1]}, "thresholds": {"voc": 0.7}},
    {"name": "car", "path": "vehicle|car", "classes": {"imagenet": [2]}, "thresholds": {"imagenet": 0.5}},
    {"name": "vehicle", "path": "vehicle", "classes": {"imagenet": [3]}, "thresholds": {"imagenet": 0.5}},
]


def logits(voc_p, img_p):
    voc = np.log(np.asarray(voc_p)) - np.log1p(-np.asarray(voc_p))
    return np.concatenate([voc, np.log(np.asarray(img_p))])[None].astype(np.float32)


@pytest.fixture()
def vocab():
    order = [0, 1, 2, 3, 4, 6, 5]  # root-first order: vehicle before car
    return Vocabulary(HEADS, [KEYWORDS[i] for i in order])


def test_parent_mass_sums_children(vocab):
    # no breed is sure (0.3 + 0.35), but "dog" is (0.65): dog + animal, no breed
    scores, fired = vocab.score(logits([0.1, 0.1], [0.3, 0.35, 0.2, 0.15]))
    s = dict(zip(vocab.names, scores[0]))
    assert s["dog"] == pytest.approx(0.65, abs=1e-5) and s["animal"] == pytest.approx(0.65, abs=1e-5)
    assert s["vehicle"] == pytest.approx(0.35, abs=1e-5)  # its own class + car's
    got = vocab.tag(logits([0.1, 0.1], [0.3, 0.35, 0.2, 0.15]))[0]
    assert [(k.name, k.path) for k in got] == [("dog", "animal|dog"), ("animal", "animal")]


def test_most_specific_with_ancestors_and_voc_fires(vocab):
    got = vocab.tag(logits([0.1, 0.9], [0.7, 0.1, 0.1, 0.1]))[0]
    assert [k.name for k in got] == ["person", "beagle", "dog", "animal"]
    assert got[1].path == "animal|dog|beagle"
    # VOC alone fires "dog" (ImageNet mass on dogs is low); its ancestors come along, at least as sure as it
    got = vocab.tag(logits([0.95, 0.1], [0.05, 0.05, 0.6, 0.3]))[0]
    assert [k.name for k in got] == ["dog", "animal", "car", "vehicle"]
    assert got[0].score == pytest.approx(0.95, abs=1e-5) and got[1].score == pytest.approx(0.95, abs=1e-5)
    assert got[3].score == pytest.approx(0.9, abs=1e-5)  # vehicle: its own mass (0.6 + 0.3), above car's 0.6


def test_exclude_drops_subtree_and_top_k(vocab):
    x = logits([0.1, 0.9], [0.7, 0.1, 0.1, 0.1])
    assert [k.name for k in vocab.tag(x, exclude=["dog"])[0]] == ["person", "animal"]  # animal is sure on its own
    assert [k.name for k in vocab.tag(x, exclude=["animal"])[0]] == ["person"]
    assert [k.name for k in vocab.tag(x, exclude=["person"])[0]] == ["beagle", "dog", "animal"]
    assert [k.name for k in vocab.tag(x, top_k=1)[0]] == ["person"]  # 0.9 beats beagle's 0.7
    with pytest.raises(ValueError, match="nonsense"):
        vocab.tag(x, exclude=["nonsense"])


def test_card_errors():
    with pytest.raises(ValueError, match="parent"):
        Vocabulary(HEADS, [{"name": "beagle", "path": "animal|dog|beagle"}])
    with pytest.raises(ValueError, match="unique"):
        Vocabulary(HEADS, [{"name": "a", "path": "a"}, {"name": "a", "path": "b|a"}, {"name": "b", "path": "b"}])
    v = Vocabulary(HEADS, KEYWORDS[:4])
    with pytest.raises(ValueError, match="columns"):
        v.score(np.zeros((1, 5), np.float32))


def test_shipped_vocabulary_is_a_tree_of_500_plus():
    from imgtag.vocab import build

    v = json.loads((Path(build.__file__).parent / "imagenet1k.json").read_text())
    assert len(v["keywords"]) >= 500 and len(v["classes"]) == 1000
    mapped = sorted(c for k in v["keywords"] for c in k["classes"])
    assert len(mapped) == len(set(mapped))  # a class feeds one keyword at most
    assert len({k["voc"] for k in v["keywords"] if k["voc"]}) == 20


# ---- a model with a second head on the same pass, through the card -------------------------------------------
def test_extra_head_model_card_roundtrip(tmp_path):
    import torch

    from imgtag.card import ModelFileError, read_card, save_model
    from imgtag.models.model import MultiLabelModel, load_model

    torch.manual_seed(0)
    arch = {"backbone": "tf_efficientnet_lite0", "neck": "none", "head": "gap", "head_args": {},
            "extra_heads": [{"name": "imagenet", "size": 4}]}
    model = MultiLabelModel(arch, 2).eval()
    from imgtag.card import ModelCard

    card = ModelCard(name="kw", labels=["dog", "person"], architecture=arch, input_size=64, thresholds=[0.8, 0.7],
                     heads=HEADS, vocabulary={"separator": "|", "keywords": KEYWORDS[:4] + KEYWORDS[4:5] + KEYWORDS[6:] + KEYWORDS[5:6]})
    _, c = save_model(model, card, tmp_path / "kw")
    net, back = load_model(str(c))
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        out = net(x)
        f = net.backbone(x)
    assert out.shape == (2, 6) and back.num_outputs == 6
    # one pass: the extra head is a linear layer on the pooled map the main head also sees
    lin = net.extra_heads["imagenet"]
    assert torch.allclose(out[:, 2:], lin(f.mean((2, 3))), atol=1e-5)
    assert torch.allclose(out[:, :2], net.head(f), atol=1e-5)
    v = Vocabulary.from_card(back.to_dict())
    assert len(v.tag(out.numpy())) == 2
    bad = json.loads(c.read_text())
    bad["vocabulary"]["keywords"][2]["path"] = "nowhere|beagle"
    c.write_text(json.dumps(bad))
    with pytest.raises(ModelFileError, match="vocabulary"):
        read_card(c)


# ---- `imgtag vocab`: the tree and --json from a card ------------------------------------------------------------
def test_vocab_command_tree_and_json(tmp_path):
    from safetensors.numpy import save_file
    from typer.testing import CliRunner

    from imgtag.card import ModelCard
    from imgtag.cli import app

    order = [0, 1, 2, 3, 4, 6, 5]  # root-first: vehicle before car
    card = ModelCard(name="kw", labels=["dog", "person"], architecture={"backbone": "x", "head": "gap"},
                     thresholds=[0.8, 0.7], heads=HEADS, vocabulary={"separator": "|", "keywords": [KEYWORDS[i] for i in order]})
    (tmp_path / "kw.json").write_text(json.dumps(card.to_dict()))
    save_file({}, str(tmp_path / "kw.safetensors"))  # `imgtag vocab` reads the card only
    r = CliRunner().invoke(app, ["vocab", str(tmp_path / "kw.json"), "--json"])
    assert r.exit_code == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["model"] == "kw" and [h["name"] for h in data["heads"]] == ["voc", "imagenet"]
    by = {k["name"]: k for k in data["keywords"]}
    assert by["dog"] == {"name": "dog", "path": "animal|dog", "depth": 1, "thresholds": {"imagenet": 0.5, "voc": 0.8},
                         "classes": {"voc": 1, "imagenet": 2}}  # beagle + pug feed "dog" on the softmax head
    assert by["person"]["thresholds"] == {"voc": 0.7} and by["car"]["depth"] == 1
    r = CliRunner().invoke(app, ["vocab", str(tmp_path / "kw.json")])
    assert r.exit_code == 0, r.stderr
    lines = r.stdout.splitlines()
    assert "7 keywords" in lines[0]
    dog = next(i for i, ln in enumerate(lines) if " dog " in ln)
    assert "imagenet ≥ 0.5, voc ≥ 0.8" in lines[dog]
    assert "beagle" in lines[dog + 1] and lines[dog + 1].index("beagle") > lines[dog].index("dog")  # a child, indented
    r = CliRunner().invoke(app, ["vocab", str(tmp_path / "kw.json"), "--depth", "1", "--json"])
    assert [k["name"] for k in json.loads(r.stdout)["keywords"]] == ["animal", "person", "vehicle"]
    r = CliRunner().invoke(app, ["vocab", str(tmp_path / "nothing.json")])
    assert r.exit_code == 2 and "nothing" in r.stderr


def test_vocab_of_a_flat_model_lists_its_labels():
    from imgtag.card import read_card, resolve_model
    from imgtag.runtime.vocabulary import text, vocabulary

    card = read_card(resolve_model("voc2007-lite2-448-csra-asl")[1])
    data = vocabulary(card=card)
    assert [k["name"] for k in data["keywords"]] == card.labels
    assert [k["thresholds"]["main"] for k in data["keywords"]] == pytest.approx(card.class_thresholds())
    # a learned model's label paths become a tree; the parents they imply are listed without thresholds
    import dataclasses

    card = dataclasses.replace(card, labels=["dog", "cat"], thresholds=[0.6, 0.4], paths=["Animals|Pets|dog", "Animals|cat"])
    rows = vocabulary(card=card)["keywords"]
    assert [(k["path"], k["thresholds"]) for k in rows] == [
        ("Animals", {}), ("Animals|cat", {"main": 0.4}), ("Animals|Pets", {}), ("Animals|Pets|dog", {"main": 0.6})]
    assert text(vocabulary(card=card)).splitlines()[3] == "    dog  [main ≥ 0.6]"


def test_veto_drops_a_voc_keyword_when_imagenet_is_sure_of_a_sibling():
    kws = [dict(k) for k in (KEYWORDS[i] for i in [0, 1, 2, 3, 4, 6, 5])]
    kws.insert(4, {"name": "bear", "path": "animal|bear", "classes": {"imagenet": [3]}, "thresholds": {"imagenet": 0.5}})
    kws = [k for k in kws if k["name"] != "vehicle" and k["name"] != "car"]
    heads = HEADS
    veto = {"heads": ["voc"], "by": "imagenet", "mass": 0.6}
    plain, vetoed = Vocabulary(heads, kws), Vocabulary(heads, kws, veto=veto)
    bear = logits([0.95, 0.9], [0.05, 0.05, 0.1, 0.8])  # VOC says dog (0.95), ImageNet is sure of a bear (0.8)
    assert [k.name for k in plain.tag(bear)[0]] == ["dog", "animal", "person", "bear"]
    assert [k.name for k in vetoed.tag(bear)[0]] == ["person", "bear", "animal"]  # person: a top level, never vetoed
    unsure = logits([0.95, 0.9], [0.05, 0.05, 0.4, 0.5])  # the bear mass below the veto's
    assert "dog" in [k.name for k in vetoed.tag(unsure)[0]]
    with pytest.raises(ValueError, match="veto"):
        Vocabulary(heads, kws, veto={"heads": ["nope"], "by": "imagenet", "mass": 0.6})


def test_review_hints_of_a_keyword_model_are_its_keywords():
    from imgtag.card import read_card, resolve_model
    from imgtag.engine.review import card_hints, model_hints

    kws, thr = card_hints(read_card(resolve_model("lite2-448-keywords")[1]))
    assert len(kws) >= 500 and "golden retriever" in kws and "dining table" in kws and "diningtable" not in kws
    assert thr["dog"] == pytest.approx(0.15) and thr["animal"] > 0.3  # dog: the lower of its two heads' thresholds
    labels, thr = model_hints("voc2007-lite2-448-csra-asl")
    assert "diningtable" in labels and len(labels) == 20
