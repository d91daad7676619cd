"""The package's layers, read from the source (ast): imports run one way, there are no cycles, and each
floor holds what it should. Module-level and function-level imports both count."""
from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "imgtag"

# lower number = lower layer; a module may import its own layer and the ones below
LAYERS = [("imgtag.io", 0), ("imgtag.card", 1), ("imgtag.vocab", 1), ("imgtag.data", 2), ("imgtag.models", 2), ("imgtag.runtime", 3),
          ("imgtag.engine", 4), ("imgtag.api", 5), ("imgtag.ray", 5), ("imgtag.cli", 5), ("imgtag.__main__", 5)]
ENGINE_MODULES = {"__init__", "pipeline", "tag", "tag_ray", "train", "config", "evaluate", "features", "metrics",
                  "learn", "untag", "report", "review"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PKG.rglob("*.py"))}


def imports(path: Path, name: str, known: dict[str, Path]) -> set[str]:
    """The imgtag modules ``path`` imports, anywhere in the file."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(up + ([base] if base else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        out |= {t for t in targets if t == "imgtag" or t.startswith("imgtag.")}
    return out - {name}


def layer(mod: str) -> int:
    for prefix, n in LAYERS:
        if mod == prefix or mod.startswith(prefix + "."):
            return n
    raise AssertionError(f"{mod}: not in any layer; add it to LAYERS")


def graph() -> dict[str, set[str]]:
    known = modules()
    return {m: imports(p, m, known) for m, p in known.items()}


def test_no_module_imports_a_higher_layer():
    bad = []
    for mod, deps in graph().items():
        if mod == "imgtag":
            assert not deps, f"imgtag/__init__.py must import nothing of imgtag eagerly, imports {deps}"
            continue
        for dep in deps:
            if dep != "imgtag" and layer(dep) > layer(mod):  # bare "imgtag": only __version__
                bad.append(f"{mod} (layer {layer(mod)}) imports {dep} (layer {layer(dep)})")
    assert not bad, "\n".join(bad)


def test_no_import_cycles():
    g = graph()
    index, low, stack, on, cycles = {}, {}, [], set(), []

    def visit(v):  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in g.get(v, ()):
            if w not in g:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            # a package's __init__ re-exporting its own submodules is not a cycle of code
            if len(comp) > 1 and not all(c.startswith(min(comp, key=len) + ".") or c == min(comp, key=len) for c in comp):
                cycles.append(sorted(comp))

    for v in g:
        if v not in index:
            visit(v)
    assert not cycles, cycles


def test_engine_holds_only_commands():
    engine = {p.stem for p in (PKG / "engine").glob("*.py")}
    assert engine <= ENGINE_MODULES, f"runtime code in engine/: {sorted(engine - ENGINE_MODULES)} (put it in runtime/)"
    for p in (PKG / "engine").glob("*.py"):
        text = p.read_text(encoding="utf-8")
        assert "register_runner" not in text and "(Dataset)" not in text, f"{p.name}: runners and datasets live in runtime/"


def test_the_layer_test_sees_upward_imports(tmp_path):
    """The checker itself: a function-level upward import is found."""
    f = tmp_path / "imgtag" / "io" / "x.py"
    f.parent.mkdir(parents=True)
    f.write_text("def f():\n    from imgtag.engine.tag import run_tag\n    from ..runtime import tagger\n")
    known = {"imgtag.runtime.tagger": f, "imgtag.engine.tag": f}
    global PKG
    saved, PKG = PKG, tmp_path / "imgtag"
    try:
        deps = imports(f, "imgtag.io.x", known)
    finally:
        PKG = saved
    assert deps == {"imgtag.engine.tag", "imgtag.runtime.tagger"}
    assert max(layer(d) for d in deps) > layer("imgtag.io.x")
