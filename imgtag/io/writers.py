"""Output writers for tagging results.

A record is `{"path": str, "labels": [{"label": str, "score": float}, ...]}` or, for a file that failed,
`{"path": str, "error": str}`. Writers sort labels by score (descending, stable) and round scores to 4
decimals. Formats:

* `jsonl`: one JSON object per line, flushed after every record so a pipeline sees results as they come.
* `json`:  one JSON array of all records, written at close().
* `csv`:   header `path,labels,scores`, one row per image; labels joined by '|' and scores (4 decimals)
           joined by '|' in the same order. Wide rather than long (path,label,score) so one row is one
           image, like the other formats.
* `txt`:   `path<TAB>label1,label2` (labels only).

Error records are written by jsonl/json only; csv/txt skip them (the CLI reports errors on stderr).

Destination: a path, written atomically (temp file + fsync + os.replace at close(); an exception or
KeyboardInterrupt inside `with make_writer(...)`, or abort(), removes the temp file and leaves an existing
output untouched), or "-" for stdout.
"""
from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from typing import IO

from .atomic import AtomicFile

Record = dict


def _labels(record: Record) -> list[tuple[str, float]]:
    pairs = [(str(d["label"]), round(float(d["score"]), 4)) for d in record.get("labels", ())]
    return sorted(pairs, key=lambda p: -p[1])


def _clean(record: Record) -> Record:
    """The record as written to JSON outputs: rounded, sorted, plain Python types."""
    if "error" in record:
        return {"path": str(record["path"]), "error": str(record["error"])}
    return {"path": str(record["path"]),
            "labels": [{"label": lab, "score": s} for lab, s in _labels(record)]}


class Writer:
    """Base writer: `open()`, `write(record)` per image, `close()`; or use it as a context manager.

    Subclasses implement `_begin`, `_write` and `_end`. A writer is single-use.
    """

    fmt = ""
    newline: str | None = None  # passed to open(); csv needs "" to control its own line endings

    def __init__(self, dest: str | Path):
        self.dest = str(dest)
        self.f: IO | None = None
        self._atomic: AtomicFile | None = None

    def open(self) -> "Writer":
        if self.dest == "-":
            self.f = sys.stdout
        else:
            self._atomic = AtomicFile(self.dest, "w", encoding="utf-8", newline=self.newline)
            self.f = self._atomic.file
        self._begin()
        return self

    def write(self, record: Record) -> None:
        if self.f is None:
            raise RuntimeError("writer is not open")
        self._write(record)

    def close(self) -> None:
        """Finish the output; for a file destination, atomically move it into place."""
        if self.f is None:
            return
        try:
            self._end()
            self.f.flush()
        except BaseException:
            self.abort()
            raise
        if self._atomic:
            self._atomic.commit()
        self.f = None

    def abort(self) -> None:
        """Stop without producing the output file (stdout output already written stays written)."""
        if self._atomic:
            self._atomic.abort()
        self.f = None

    def __enter__(self) -> "Writer":
        return self.open() if self.f is None else self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def _begin(self) -> None:
        pass

    def _write(self, record: Record) -> None:
        raise NotImplementedError

    def _end(self) -> None:
        pass


class JsonlWriter(Writer):
    fmt = "jsonl"

    def _write(self, record):
        self.f.write(json.dumps(_clean(record), ensure_ascii=False) + "\n")
        self.f.flush()


class JsonWriter(Writer):
    fmt = "json"

    def _begin(self):
        self.records: list[Record] = []

    def _write(self, record):
        self.records.append(_clean(record))

    def _end(self):
        json.dump(self.records, self.f, ensure_ascii=False, indent=1)
        self.f.write("\n")


class CsvWriter(Writer):
    fmt = "csv"
    newline = ""

    def _begin(self):
        self.csv = csv.writer(self.f, lineterminator="\n")
        self.csv.writerow(["path", "labels", "scores"])

    def _write(self, record):
        if "error" in record:
            return
        pairs = _labels(record)
        self.csv.writerow([record["path"], "|".join(lab for lab, _ in pairs),
                           "|".join(f"{s:.4f}" for _, s in pairs)])


class TxtWriter(Writer):
    fmt = "txt"

    def _write(self, record):
        if "error" in record:
            return
        self.f.write(f"{record['path']}\t{','.join(lab for lab, _ in _labels(record))}\n")


WRITERS: dict[str, type[Writer]] = {w.fmt: w for w in (JsonlWriter, JsonWriter, CsvWriter, TxtWriter)}


def make_writer(fmt: str, dest: str | Path = "-") -> Writer:
    """A writer for `fmt` ("jsonl", "json", "csv", "txt", or "auto": from dest's extension, jsonl for
    stdout or an unknown extension) to `dest` (a path, or "-" for stdout). Not yet opened: use
    `with make_writer(...) as w:` or call open()."""
    fmt = fmt.lower()
    if fmt == "auto":
        fmt = Path(str(dest)).suffix.lower().lstrip(".") if str(dest) != "-" else "jsonl"
        fmt = fmt if fmt in WRITERS else "jsonl"
    if fmt not in WRITERS:
        raise ValueError(f"unknown output format {fmt!r}; choose from {', '.join(WRITERS)}")
    return WRITERS[fmt](dest)
