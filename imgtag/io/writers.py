"""Output writers for tagging results: one registry (:data:`WRITERS`), the CLI's ``--format`` choices.

A record is built by :func:`imgtag.io.records.make_record`: ``{"path": str, "labels": [{"label": str,
"score": float}, ...]}`` or, for a file that failed, ``{"path": str, "error": str}``. Writers sort labels by
score (descending, stable) and round scores to 4 decimals. Formats:

* `jsonl`:   one JSON object per line, flushed after every record so a pipeline sees results as they come.
* `json`:    one JSON array of all records, written at close().
* `csv`:     header `path,labels,scores,label_paths`, one row per image; labels joined by '|', scores (4
             decimals) and the labels' hierarchy paths ("animal|dog", a flat label: itself) joined by '|' in the
             same order (a '|' or '\\' inside a label or path is escaped: '\\|', '\\\\'). Wide rather than long
             (path,label,score) so one row is one image, like the other formats.
* `txt`:     `path<TAB>label1,label2` (labels only).
* `parquet`: one Parquet file, columns path, labels (list), scores (list), error ("" when fine), label_paths
             (list: each label's hierarchy path, a flat label itself); a path or a
             URI (s3://..., through pyarrow's filesystems). Needs pyarrow.
* `xmp`:     no output file: an XMP sidecar beside each image (imgtag.io.xmp), merged into what is there.

Error records are written by jsonl/json/parquet only; csv/txt/xmp skip them (the CLI reports errors on stderr).

Destination: a path, written atomically (io/atomic.py: temp file + fsync + os.replace at close(); an exception
or KeyboardInterrupt inside `with make_writer(...)`, or abort(), removes the temp file and leaves an existing
output untouched), or "-" for stdout.

A new format is one class here with ``@register_writer``: ``fmt``, ``help`` and ``_write`` (plus ``_begin`` /
``_end``, ``previous`` when its files can be resumed from).
"""
from __future__ import annotations

import contextlib
import csv
import json
import sys
from pathlib import Path
from typing import IO, ClassVar

from .atomic import AtomicFile
from .records import Label, record_labels

Record = dict


class WriteFailed(Exception):
    """One record could not be written (e.g. a sidecar); str() is one line naming the file. The run goes on."""


def is_uri(dest) -> bool:
    return "://" in str(dest)


def _labels(record: Record) -> list[Label]:
    labels = [lab._replace(score=round(lab.score, 4)) for lab in record_labels(record)]
    return sorted(labels, key=lambda lab: -lab.score)


def _clean(record: Record) -> Record:
    """The record as written to JSON outputs: rounded, sorted, plain Python types."""
    from .records import make_record

    if "error" in record:
        return make_record(record["path"], error=record["error"])
    return make_record(record["path"], _labels(record))


def _read_records(dest: str, fmt: str) -> dict[str, Record]:
    """Records with labels of an earlier jsonl/json run in ``dest`` ({} when there is none)."""
    p = Path(dest)
    if dest == "-" or not p.exists():
        return {}
    text = p.read_text(encoding="utf-8")
    recs = [json.loads(line) for line in text.splitlines() if line.strip()] if fmt == "jsonl" else json.loads(text or "[]")
    return {r["path"]: r for r in recs if "labels" in r}


class Writer:
    """Base writer: `open()`, `write(record)` per image, `close()`; or use it as a context manager.

    Subclasses set ``fmt`` and ``help`` and implement `_write` (and `_begin`, `_end`). A writer is single-use.
    Options a format does not use are ignored (``make_writer(fmt, dest, **options)`` passes the same to all).
    """

    fmt: ClassVar[str] = ""
    help: ClassVar[str] = ""
    to_stdout: ClassVar[bool] = True  # "-" is a valid destination
    beside_images: ClassVar[bool] = False  # writes one file beside each image; no destination
    uris: ClassVar[bool] = False  # the destination may be a URI (s3://...)
    newline: str | None = None  # passed to open(); csv needs "" to control its own line endings

    def __init__(self, dest: str | Path = "-", **options):
        self.dest = str(dest)
        self.options = options
        self.f: IO | None = None
        self._atomic: AtomicFile | None = None

    # ---- resume ------------------------------------------------------------------------------------------
    def previous(self) -> dict[str, Record]:
        """Records of an earlier run at the destination, by path (those with labels; failures are retried).
        Formats that cannot be resumed from give {}."""
        return {}

    def done(self, path: str, previous: dict[str, Record]) -> bool:
        """Whether ``path`` already has a result from an earlier run (``--on-existing skip``)."""
        return path in previous

    # ---- writing -----------------------------------------------------------------------------------------
    def open(self) -> "Writer":
        if self.dest == "-":
            self.f = sys.stdout
        else:
            self._atomic = AtomicFile(self.dest, "w", encoding="utf-8", newline=self.newline)
            self.f = self._atomic.file
        self._begin()
        return self

    def write(self, record: Record) -> None:
        """Write one record; raises :class:`WriteFailed` when this record (only) could not be written."""
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


WRITERS: dict[str, type[Writer]] = {}


def register_writer(cls: type[Writer]) -> type[Writer]:
    """Class decorator: add a writer to :data:`WRITERS` under its ``fmt``."""
    if not cls.fmt or cls.fmt in WRITERS:
        raise ValueError(f"writer format {cls.fmt!r} is empty or already registered")
    WRITERS[cls.fmt] = cls
    return cls


@register_writer
class JsonlWriter(Writer):
    fmt, help = "jsonl", "JSON Lines, one record per image as it completes"

    def previous(self):
        return _read_records(self.dest, self.fmt)

    def _write(self, record):
        self.f.write(json.dumps(_clean(record), ensure_ascii=False) + "\n")
        self.f.flush()


@register_writer
class JsonWriter(Writer):
    fmt, help = "json", "one JSON array"

    def previous(self):
        return _read_records(self.dest, self.fmt)

    def _begin(self):
        self.records: list[Record] = []

    def _write(self, record):
        self.records.append(_clean(record))

    def _end(self):
        json.dump(self.records, self.f, ensure_ascii=False, indent=1)
        self.f.write("\n")


@register_writer
class CsvWriter(Writer):
    fmt, help = "csv", "path,labels,scores,label_paths ('|'-joined)"
    newline = ""

    def _begin(self):
        self.csv = csv.writer(self.f, lineterminator="\n")
        self.csv_quoted = csv.writer(self.f, lineterminator="\n", quoting=csv.QUOTE_ALL)
        self.csv.writerow(["path", "labels", "scores", "label_paths"])

    def _write(self, record):
        if "error" in record:
            return
        labels = _labels(record)
        row = [str(record["path"]), "|".join(_csv_escape(lab.label) for lab in labels),
               "|".join(f"{lab.score:.4f}" for lab in labels), "|".join(_csv_escape(lab.path or lab.label) for lab in labels)]
        # csv quotes a field with "\n" but not one with a lone "\r" when the terminator is "\n"; a reader would end
        # the row there, so such rows are written fully quoted. A '|' or '\\' inside a label is escaped ('\\|', '\\\\').
        (self.csv_quoted if any("\r" in f for f in row) else self.csv).writerow(row)


def _csv_escape(s: str) -> str:
    return s.replace("\\", "\\\\").replace("|", "\\|")


@register_writer
class TxtWriter(Writer):
    fmt, help = "txt", "path<TAB>label,label"

    def _write(self, record):
        if "error" in record:
            return
        labels = ",".join(_txt_escape(lab.label, label=True) for lab in _labels(record))
        self.f.write(f"{_txt_escape(str(record['path']))}\t{labels}\n")


_TXT_ESCAPES = {"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r", ",": "\\,"}


def _txt_escape(s: str, label: bool = False) -> str:
    """TXT keeps one line per image: backslash escapes for '\\', TAB, newline and CR (and ',' in labels); a byte of a
    non-UTF-8 file name (held by Python as a lone surrogate) is written as \\xNN."""
    out = []
    for ch in s:
        if ch in _TXT_ESCAPES and (ch != "," or label):
            out.append(_TXT_ESCAPES[ch])
        elif "\udc80" <= ch <= "\udcff":
            out.append(f"\\x{ord(ch) - 0xDC00:02x}")
        else:
            out.append(ch)
    return "".join(out)


PARQUET_HINT = "--format parquet needs pyarrow: pip install pyarrow (or 'imgtag[ray]')"


def parquet_schema():
    """The Parquet/Arrow row schema of results: path, labels (list of str, best first), scores, error ("" if fine),
    label_paths (each label's hierarchy path; a flat label: the label)."""
    import pyarrow as pa

    return pa.schema([("path", pa.string()), ("labels", pa.list_(pa.string())),
                      ("scores", pa.list_(pa.float64())), ("error", pa.string()), ("label_paths", pa.list_(pa.string()))])


def parquet_row(record: Record) -> dict:
    """A record as a Parquet row: labels sorted by score (scores kept at full precision)."""
    labels = sorted(record_labels(record), key=lambda lab: -lab.score)
    return {"path": str(record["path"]), "labels": [lab.label for lab in labels],
            "scores": [float(lab.score) for lab in labels], "error": str(record.get("error") or ""),
            "label_paths": [lab.path or lab.label for lab in labels]}


def parquet_labels(row: dict) -> list[Label]:
    """The labels of a Parquet row (:func:`parquet_row`), their paths kept (a file written before label_paths existed,
    or a path equal to its label: flat)."""
    paths = row.get("label_paths") or [None] * len(row["labels"])
    return [Label(lab, float(s), p if p and p != lab else None) for lab, s, p in zip(row["labels"], row["scores"], paths)]


@register_writer
class ParquetWriter(Writer):
    """Rows → one Parquet file: local paths atomically, URIs through pyarrow's filesystems. Rows are buffered
    and written ``row_group`` at a time (and at close, so an interrupted run keeps every record so far)."""

    fmt, help = "parquet", "one Parquet file (path, labels, scores, error); -o may be a URI"
    to_stdout, uris = False, True
    row_group = 1024

    def previous(self):
        if is_uri(self.dest) or not Path(self.dest).exists():
            return {}
        import pyarrow.parquet as pq

        from .records import make_record

        return {r["path"]: make_record(r["path"], parquet_labels(r))
                for r in pq.read_table(self.dest).to_pylist() if not r["error"]}

    def open(self):
        try:
            import pyarrow.fs as pafs
            import pyarrow.parquet as pq
        except ImportError as e:
            raise ValueError(PARQUET_HINT) from e
        self.schema, self.rows = parquet_schema(), []
        if is_uri(self.dest):
            fs, path = pafs.FileSystem.from_uri(self.dest)
            self.f = fs.open_output_stream(path)
        else:
            self._atomic = AtomicFile(self.dest, "wb", encoding=None)
            self.f = self._atomic.file
        self.pq = pq.ParquetWriter(self.f, self.schema)
        return self

    def _write(self, record):
        self.rows.append(parquet_row(record))
        if len(self.rows) >= self.row_group:
            self._flush()

    def _flush(self):
        import pyarrow as pa

        if self.rows:
            self.pq.write_table(pa.Table.from_pylist(self.rows, schema=self.schema))
            self.rows = []

    def close(self):
        if self.f is None:
            return
        try:
            self._flush()
            self.pq.close()
        except BaseException:
            self.abort()
            raise
        if self._atomic:
            self._atomic.commit()
        else:
            self.f.close()
        self.f = None

    def abort(self):
        if getattr(self, "pq", None) is not None:
            with contextlib.suppress(Exception):  # else its __del__ writes to a closed file later
                self.pq.close()
            self.pq = None
        if not self._atomic and self.f is not None:
            self.f.close()  # a URI: what the filesystem made of the partial stream is its own
        super().abort()


@register_writer
class XmpWriter(Writer):
    """An XMP sidecar beside each image (imgtag.io.xmp), written atomically; options ``on_existing``
    ("overwrite" replaces the sidecar, else merge), ``model_name``, ``sidecar_naming`` (auto/ext/stem) and
    ``keyword_root``. Labels keep their hierarchy path (``Label.path``)."""

    fmt, help = "xmp", "an XMP sidecar beside each image (no -o)"
    to_stdout, beside_images = False, True

    def __init__(self, dest="-", on_existing: str = "merge", model_name: str | None = None,
                 sidecar_naming: str = "auto", keyword_root: str | None = None, **options):
        from .xmp import SidecarNamer

        super().__init__(dest, **options)
        self.mode = "overwrite" if on_existing == "overwrite" else "merge"
        self.model_name, self.keyword_root = model_name, keyword_root
        self.namer = SidecarNamer(sidecar_naming)  # one per run: caches each folder's images by stem

    def done(self, path, previous):
        from .xmp import XmpError, is_tagged

        try:
            return is_tagged(path, self.namer)
        except (XmpError, OSError):  # unreadable sidecar: tag again; writing it then reports the problem
            return False

    def open(self):
        self.f = sys.stderr  # nothing is written here; marks the writer open
        return self

    def _write(self, record):
        if "error" in record:
            return
        from .xmp import XmpError, write_sidecar

        try:
            write_sidecar(record["path"], record_labels(record), mode=self.mode, keyword_root=self.keyword_root,
                          model_name=self.model_name, naming=self.namer)
        except (XmpError, OSError, ValueError) as e:
            raise WriteFailed(f"{record['path']}: sidecar not written: {e}") from e

    def close(self):
        self.f = None


def make_writer(fmt: str, dest: str | Path = "-", **options) -> Writer:
    """A writer for `fmt` (a :data:`WRITERS` name, or "auto": from dest's extension, jsonl for stdout or an
    unknown extension) to `dest` (a path, "-" for stdout, a URI where the format allows). Not yet opened: use
    `with make_writer(...) as w:` or call open(). Raises ValueError for a format/destination that do not fit."""
    fmt, dest = fmt.lower(), str(dest)
    if fmt == "auto":
        fmt = Path(dest).suffix.lower().lstrip(".") if dest != "-" else "jsonl"
        fmt = fmt if fmt in WRITERS and not WRITERS[fmt].beside_images else "jsonl"
    if fmt not in WRITERS:
        raise ValueError(f"unknown output format {fmt!r}; choose from {', '.join(WRITERS)}")
    cls = WRITERS[fmt]
    if cls.beside_images and dest != "-":
        raise ValueError(f"--format {fmt} writes a file beside each image; -o does not apply")
    if dest == "-" and not cls.to_stdout and not cls.beside_images:
        raise ValueError(f"--format {fmt} needs -o FILE" + (" (a path or a URI)" if cls.uris else ""))
    if is_uri(dest) and not cls.uris:
        raise ValueError(f"-o URI is for --format {', '.join(f for f, w in WRITERS.items() if w.uris)} only")
    return cls(dest, **options)
