"""How long `--on-existing skip -f xmp` takes to decide what is left to tag (issue 16: 98k paths took 13.8 s).

    python benchmarks/bench_skip_sidecars.py [N_FILES] [N_FOLDERS] [TAGGED_FRACTION]   # default 98400 1000 0.5

Makes N empty image files in folders under a temp dir (no pixels are read), writes an imgtag sidecar beside a
fraction of them and a foreign (darktable-style) sidecar beside another tenth, then times the skip check
(`XmpWriter.done`, as plan_run calls it) and, in the same process, the plain check it replaced (every image's
sidecar resolved and, where it exists, parsed: `io.xmp.is_tagged`).
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's imgtag


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 98400
    folders = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
    frac = float(sys.argv[3]) if len(sys.argv) > 3 else 0.5
    from imgtag.io.writers import make_writer
    from imgtag.io.xmp import SidecarNamer, XmpError, is_tagged, write_sidecar

    with tempfile.TemporaryDirectory() as d:
        paths = []
        for i in range(n):
            f = Path(d) / f"f{i % folders:04d}" / f"IMG_{i:06d}.jpg"
            f.parent.mkdir(exist_ok=True)
            f.touch()
            paths.append(str(f))
        tagged = paths[: int(n * frac)]
        mine = write_sidecar(tagged[0], [("dog", 0.9)], model_name="bench").read_bytes()
        for p in tagged:
            Path(p + ".xmp").write_bytes(mine)
        foreign = (b"<x:xmpmeta xmlns:x='adobe:ns:meta/'><rdf:RDF "
                   b"xmlns:rdf='http://www.w3.org/1999/02/22-rdf-syntax-ns#'/></x:xmpmeta>")
        for p in paths[int(n * frac): int(n * frac) + n // 10]:
            Path(p + ".xmp").write_bytes(foreign)
        writer = make_writer("xmp", "-", on_existing="skip")
        t = time.time()
        todo = [p for p in paths if not writer.done(p, {})]
        fast = time.time() - t
        namer = SidecarNamer("auto")

        def plain(p):
            try:
                return is_tagged(p, namer)
            except (XmpError, OSError):
                return False
        t = time.time()
        todo_plain = [p for p in paths if not plain(p)]
        slow = time.time() - t
        assert todo == todo_plain, "the fast check disagrees with the plain one"
        print(f"{n} paths in {folders} folders, {len(tagged)} tagged by imgtag, {n // 10} foreign sidecars: "
              f"{len(todo)} to tag; decided in {fast:.2f} s (plain check: {slow:.2f} s)")


if __name__ == "__main__":
    main()
