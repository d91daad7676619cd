"""Distributed tagging on Ray Data: the same scores as the local engine, bad files as error rows, a two-node
cluster, an actor that dies mid-batch, and `imgtag tag --engine ray` end to end. Small: tiny model, 64 px."""
import json
import os
import sys
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")
pytest.importorskip("ray.data")

from typer.testing import CliRunner  # noqa: E402

from imgtag.cli import app  # noqa: E402
from imgtag.runtime.tagger import Tagger  # noqa: E402
from imgtag.io.xmp import read_sidecar, read_sidecar_labels  # noqa: E402
from imgtag.ray import RayTagger, model_files, tag_dataset  # noqa: E402

RAY_ARGS = dict(num_cpus=2, include_dashboard=False, log_to_driver=False)

# Every Ray test starts a local cluster (~15 s on 2 cores): the whole module is the slow lane.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", autouse=True)
def ray_local():
    """One local Ray (2 CPUs) for the whole module."""
    if not ray.is_initialized():
        ray.init(**RAY_ARGS)
    yield
    ray.shutdown()


@pytest.fixture()
def many(tmp_path, photos) -> list[str]:
    """24 images (copies of the test photos) in two folders."""
    out = []
    for i in range(24):
        p = tmp_path / "imgs" / f"d{i % 2}" / f"{i:02d}_{photos[i % len(photos)].name}"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(photos[i % len(photos)].read_bytes())
        out.append(str(p))
    return out


@pytest.fixture()
def bad(tmp_path, photos) -> dict[str, str]:
    d = tmp_path / "bad"
    d.mkdir()
    good = photos[0].read_bytes()
    files = {"good.jpg": good, "truncated.jpg": good[: len(good) // 2], "empty.jpg": b"", "text.jpg": b"not an image\n"}
    for name, data in files.items():
        (d / name).write_bytes(data)
    return {name: str(d / name) for name in files}


def local_scores(model, paths) -> dict[str, dict[str, float]]:
    return {p.path: {lab.label: lab.score for lab in p.labels} for p in Tagger(str(model), threshold=0.0, workers=0, runtime="torch").tag_paths(paths)}


def assert_close(rows, ref):
    assert sorted(r["path"] for r in rows) == sorted(ref)
    for r in rows:
        assert r["error"] == ""
        got = dict(zip(r["labels"], r["scores"]))
        assert got.keys() == ref[r["path"]].keys()
        assert all(abs(got[k] - ref[r["path"]][k]) < 1e-5 for k in got)
        assert r["scores"] == sorted(r["scores"], reverse=True)


def test_paths_and_bytes_give_the_local_scores(tiny_model, photos):
    paths = [str(p) for p in photos]
    ref = local_scores(tiny_model, paths)
    rows = tag_dataset(ray.data.from_items([{"path": p} for p in paths]), tiny_model, actors=1, threshold=0.0).take_all()
    assert [r["path"] for r in rows] == paths or sorted(r["path"] for r in rows) == sorted(paths)
    assert_close(rows, ref)
    ds = ray.data.read_binary_files(paths, include_paths=True)
    assert_close(tag_dataset(ds, tiny_model, actors=1, threshold=0.0).take_all(), ref)


def test_bad_files_become_error_rows(tiny_model, bad):
    missing = str(Path(bad["good.jpg"]).with_name("missing.jpg"))
    ds = ray.data.from_items([{"path": p} for p in [*bad.values(), missing]])
    rows = {Path(r["path"]).name: r for r in tag_dataset(ds, tiny_model, actors=1).take_all()}
    assert rows["good.jpg"]["error"] == "" and "person" in rows["good.jpg"]["labels"]  # person's threshold: 0.0
    for name in ("truncated.jpg", "empty.jpg", "text.jpg", "missing.jpg"):
        assert rows[name]["error"].startswith(rows[name]["path"]) and rows[name]["labels"] == []
    # the same through encoded bytes, RayTagger called as map_batches documents it (pandas batches)
    ds = ray.data.read_binary_files(list(bad.values()), include_paths=True)
    rows = ds.map_batches(RayTagger, fn_constructor_kwargs={"model": str(tiny_model)}, batch_format="pandas",
                          batch_size=8, compute=ray.data.ActorPoolStrategy(size=1)).take_all()
    errs = {Path(r["path"]).name: r["error"] for r in rows}
    assert errs["good.jpg"] == "" and all(errs[n] for n in ("truncated.jpg", "empty.jpg", "text.jpg"))


def test_actor_dies_mid_batch_is_retried_without_duplicates(tiny_model, many, tmp_path):
    marker = tmp_path / "crashed-once"

    class DiesOnce(RayTagger):  # defined here, so Ray ships it by value
        def __init__(self, marker, **kw):
            super().__init__(**kw)
            self.marker = marker

        def __call__(self, batch):
            if not os.path.exists(self.marker):
                open(self.marker, "w").close()
                super().__call__({"path": batch["path"][:2]})  # two sidecars written, then the process dies
                os._exit(1)
            return super().__call__(batch)

    ds = ray.data.from_items([{"path": p} for p in many], override_num_blocks=6)
    rows = ds.map_batches(DiesOnce, fn_constructor_kwargs={"marker": str(marker), "files": model_files(tiny_model),
                                                          "write_sidecars": True, "threshold": 0.0},
                          batch_size=4, compute=ray.data.ActorPoolStrategy(size=1)).take_all()
    # retried by Ray Data's defaults for actor pools: max_restarts=-1, max_task_retries=-1
    assert marker.exists(), "the actor never died: the test tested nothing"
    assert sorted(r["path"] for r in rows) == sorted(many)  # each image exactly once
    for r in rows:
        assert r["error"] == ""
        side = read_sidecar(r["path"] + ".xmp")  # parses: complete, valid XMP
        assert side["model"] == "tiny" and read_sidecar_labels(r["path"]) == r["labels"]
    assert not [p for p in Path(many[0]).parents[1].rglob(".*")], "temp files left behind"


def test_two_node_cluster_tags_every_image_once(tiny_model, many):
    from ray.cluster_utils import Cluster

    ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        cluster.add_node(num_cpus=1)
        ray.init(address=cluster.address, log_to_driver=False)
        cluster.wait_for_nodes()
        assert len([n for n in ray.nodes() if n["Alive"]]) == 2
        ds = ray.data.from_items([{"path": p} for p in many], override_num_blocks=8)
        rows = tag_dataset(ds, tiny_model, actors=2, batch_size=4).take_all()
        assert sorted(r["path"] for r in rows) == sorted(many)
        assert all(r["error"] == "" for r in rows)
    finally:
        ray.shutdown()
        cluster.shutdown()
        ray.init(**RAY_ARGS)


# ---- the CLI: `imgtag tag --engine ray` behaves as the local engine ----------------------------------------

def tag(*args):
    return CliRunner().invoke(app, ["tag", *map(str, args)])


def records(text):
    return {r["path"]: r for r in map(json.loads, text.splitlines())}


def test_cli_ray_matches_local_jsonl_parquet_and_sidecars(tiny_model, many, bad, tmp_path):
    import pyarrow.parquet as pq

    root = str(Path(many[0]).parents[1])
    local = tag(root, "-m", tiny_model, "-t", "0.3", "--runtime", "torch")
    r = tag(root, "-m", tiny_model, "-t", "0.3", "--engine", "ray", "--actors", "2")
    assert local.exit_code == 0 and r.exit_code == 0, r.stderr
    assert list(records(r.stdout)) == list(records(local.stdout))  # same images, same (input) order
    for path, rec in records(r.stdout).items():
        want = records(local.stdout)[path]["labels"]
        assert [x["label"] for x in rec["labels"]] == [x["label"] for x in want]
        assert all(abs(a["score"] - b["score"]) <= 1e-4 for a, b in zip(rec["labels"], want))
    assert "ray engine" in r.stderr and "24 tagged" in r.stderr

    out = tmp_path / "tags.parquet"  # parquet, with the bad files as error rows; then resume skips them all
    r = tag(root, bad["good.jpg"], bad["text.jpg"], "-m", tiny_model, "--engine", "ray", "-f", "parquet", "-o", out)
    assert r.exit_code == 1 and "1 failed" in r.stderr and "text.jpg" in r.stderr
    t = pq.read_table(out).to_pylist()
    assert len(t) == 26 and sum(bool(x["error"]) for x in t) == 1
    r = tag(root, "-m", tiny_model, "--engine", "ray", "-f", "parquet", "-o", out, "--on-existing", "skip")
    assert r.exit_code == 0 and "24 skipped" in r.stderr
    assert sorted(x["path"] for x in pq.read_table(out).to_pylist()) == sorted([*many, bad["good.jpg"]])

    r = tag(root, "-m", tiny_model, "--engine", "ray", "-f", "xmp", "-t", "0")  # sidecars by the workers
    assert r.exit_code == 0, r.stderr
    assert all(sorted(read_sidecar_labels(p)) == ["cat", "dog", "person"] for p in many)
    assert not [p for p in Path(root).rglob(".*")], "temp files left behind"


def test_cli_uri_input_read_by_ray_and_resumed(tiny_model, photos, tmp_path):
    src = tmp_path / "bucket"
    src.mkdir()
    for p in photos:
        (src / p.name).write_bytes(p.read_bytes())
    (src / "bad.jpg").write_bytes(b"nope")
    out = tmp_path / "tags.jsonl"
    r = tag(f"file://{src}", "-m", tiny_model, "--engine", "ray", "--actors", "1", "-o", out)
    assert r.exit_code == 1 and "1 failed" in r.stderr
    recs = records(out.read_text())
    assert sorted(recs) == sorted(f"file://{src}/{n}" for n in [*(p.name for p in photos), "bad.jpg"])
    assert recs[f"file://{src}/bad.jpg"]["error"].startswith(f"file://{src}/bad.jpg: ")
    r = tag(f"file://{src}", "-m", tiny_model, "--engine", "ray", "--actors", "1", "-o", out, "--on-existing", "skip")
    assert f"{len(photos)} skipped" in r.stderr and "0 tagged" in r.stderr
    assert sorted(records(out.read_text())) == sorted(recs)  # each once: kept or re-tried (the bad one)


def test_cli_usage_errors_and_missing_ray(tiny_model, photos, monkeypatch, tmp_path):
    import pyarrow.parquet as pq

    r = tag(photos[0], "-m", tiny_model, "-f", "parquet", "-o", tmp_path / "x.parquet", "-t", "0")  # a writer: any engine
    assert r.exit_code == 0, r.stderr
    rows = pq.read_table(tmp_path / "x.parquet").to_pylist()
    assert [r["path"] for r in rows] == [str(photos[0])] and len(rows[0]["labels"]) == 3 and rows[0]["error"] == ""
    r = tag(photos[0], "-m", tiny_model, "-f", "parquet")
    assert r.exit_code == 2 and "-o" in r.stderr
    r = tag(photos[0], "-m", tiny_model, "--engine", "ray", "-f", "parquet")
    assert r.exit_code == 2 and "-o" in r.stderr
    r = tag(photos[0], "-m", tiny_model, "--engine", "ray", "-x", "unicorn")
    assert r.exit_code == 2 and "unicorn" in r.stderr
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    r = tag(photos[0], "-m", tiny_model, "--engine", "ray")
    assert r.exit_code == 2 and "pip install 'imgtag[ray]'" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_cli_ray_walk_problems_and_bad_outputs_are_one_line(tiny_model, photos, tmp_path):
    """Issue 16 with --engine ray: a symlink loop stopped the walk with a traceback; a bad -o failed after Ray
    started; a foreign existing output gave "Expecting value" without the file's name."""
    d = tmp_path / "two"
    d.mkdir()
    (d / "a.jpg").write_bytes(photos[0].read_bytes())
    os.symlink("self.jpg", d / "self.jpg")
    r = tag(d, "-m", tiny_model, "--engine", "ray", "--actors", "1")
    assert r.exit_code == 1, r.stderr
    assert [Path(x).name for x in records(r.stdout)] == ["a.jpg"]
    assert f"imgtag: {d / 'self.jpg'}: cannot read: too many levels of symbolic links" in r.stderr
    assert "1 tagged, 0 skipped, 1 failed of 2" in r.stderr and "Traceback" not in r.output
    out = tmp_path / "nodir" / "o.jsonl"
    r = tag(d, "-m", tiny_model, "--engine", "ray", "-o", out)
    assert r.exit_code == 1 and r.stderr.strip() == f"imgtag: error: cannot write {out}: no such directory: {out.parent}"
    foreign = tmp_path / "o.jsonl"
    foreign.write_text("path,labels\na.jpg,dog\n")
    r = tag(d, "-m", tiny_model, "--engine", "ray", "-o", foreign)
    assert r.exit_code == 2 and r.stderr.startswith(f"imgtag: error: {foreign}: line 1 is not a JSON record")


@pytest.mark.slow
def test_cli_ray_sigterm_keeps_results(tiny_model, photos, tmp_path):
    """F2 with --engine ray: ray.init replaced imgtag's SIGTERM handler with sys.exit, so SIGTERM gave exit 1 with no
    'interrupted' line. A real process, its own local Ray (this module's Ray is not shared across processes)."""
    import signal
    import subprocess
    import time

    d = tmp_path / "many"
    d.mkdir()
    for i in range(400):
        (d / f"p{i:03d}.jpg").write_bytes(photos[i % len(photos)].read_bytes())
    out = tmp_path / "o.jsonl"
    root = Path(__file__).resolve().parents[1]
    p = subprocess.Popen([sys.executable, "-m", "imgtag", "tag", d, "-o", out, "-m", tiny_model, "--engine", "ray",
                          "--actors", "1", "-b", "2", "-q"], cwd=root, stderr=subprocess.PIPE)
    deadline = time.time() + 300
    while time.time() < deadline and p.poll() is None:  # wait until records are being written
        tmps = [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]
        if tmps and os.path.getsize(tmp_path / tmps[0]) > 300:
            break
        time.sleep(0.1)
    assert p.poll() is None, "the run ended before it could be signalled"
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 143, err.decode()
    kept = [json.loads(line) for line in out.read_text().splitlines()]
    assert 0 < len(kept) < 400 and all("labels" in r for r in kept)
    assert not [f for f in os.listdir(tmp_path) if f.endswith((".tmp", ".lock"))]
    assert "interrupted" in err.decode() and "Traceback" not in err.decode()
