"""A minimal reader of the WordNet 3.0 noun database files (``data.noun``), for the build step only.

Only what the vocabulary build needs: per synset its lemmas, gloss and hypernym pointers (``@`` and instance
``@i``). Synsets are keyed by their wnid, ``"n%08d" % offset`` (the ImageNet class ids).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Synset:
    wnid: str
    lemmas: list[str]
    hypernyms: list[str] = field(default_factory=list)
    gloss: str = ""

    @property
    def name(self) -> str:
        return self.lemmas[0].replace("_", " ")


def parse_data_noun(text: str) -> dict[str, Synset]:
    """Parse the text of a WordNet ``data.noun`` file (license header lines start with two spaces)."""
    out: dict[str, Synset] = {}
    for line in text.splitlines():
        if not line or line.startswith(" "):
            continue
        data, _, gloss = line.partition(" | ")
        f = data.split()
        offset, n_words = f[0], int(f[3], 16)
        lemmas = [f[4 + 2 * i] for i in range(n_words)]
        i = 4 + 2 * n_words
        n_ptr = int(f[i])
        hyper = []
        for j in range(n_ptr):
            sym, target, pos = f[i + 1 + 4 * j: i + 4 + 4 * j]
            if sym in ("@", "@i") and pos == "n":
                hyper.append("n" + target)
        # strip the adjective-marker suffixes some lemmas carry, e.g. "(a)"
        lemmas = [lm.split("(")[0] for lm in lemmas]
        out["n" + offset] = Synset("n" + offset, lemmas, hyper, gloss.strip())
    return out


def read_wordnet(directory: str | Path) -> dict[str, Synset]:
    return parse_data_noun((Path(directory) / "data.noun").read_text(encoding="utf-8"))


def hypernym_path(synsets: dict[str, Synset], wnid: str) -> list[str]:
    """Root-first chain of wnids ending at ``wnid``, always following the FIRST hypernym (deterministic)."""
    chain, seen = [wnid], {wnid}
    while synsets[chain[-1]].hypernyms:
        h = synsets[chain[-1]].hypernyms[0]
        if h in seen:
            break
        chain.append(h)
        seen.add(h)
    return chain[::-1]


def ancestors(synsets: dict[str, Synset], wnid: str) -> set[str]:
    """All hypernyms (every path), for membership tests."""
    out, todo = set(), [wnid]
    while todo:
        for h in synsets[todo.pop()].hypernyms:
            if h not in out:
                out.add(h)
                todo.append(h)
    return out
