r"""Output writers for tagging results: one registry (:data:`WRITERS`), the CLI's ``--format`` choices.

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

File names that are not valid UTF-8 (e.g. `caf\xe9.jpg` from a Latin-1 disk; Python holds each undecodable byte
as a lone surrogate U+DC80..U+DCFF, as os.listdir does) are written losslessly, never refused: JSON/JSONL escape
them as `\udcNN` (valid JSON and UTF-8; `os.fsencode(json.loads(line)["path"])` gives the exact bytes back, and
resuming from such output matches the files again), TXT writes `\xNN`, CSV the raw bytes, Parquet `\udcNN`.

Destination: a path, written atomically (io/atomic.py: temp file + fsync + os.replace at close(); an exception
or KeyboardInterrupt inside `with make_writer(...)`, or abort(), removes the temp file and leaves an existing
output untouched), or "-" for stdout. A failure to write the output itself (full disk, closed or full stdout,
missing or read-only directory) raises :class:`OutputError`, one line naming the output and the reason; the
writer is aborted first, so no temp file is left.

A new format is one class here with ``@register_writer``: ``fmt``, ``help`` and ``_write`` (plus ``_begin`` /
``_end``, ``previous`` when its files can be resumed from).
"""
from __future__ import annotations

import contextlib
import csv
import errno
import json
import os
import re
import stat
import sys
import tempfile
from pathlib import Path
from typing import IO, ClassVar

from .atomic import AtomicFile
from .records import Label, record_labels

Record = dict


class WriteFailed(Exception):
    """One record could not be written (e.g. a sidecar); str() is one line naming the file. The run goes on."""


class OutputError(Exception):
    """The results cannot be written at all (full disk, closed stdout, bad -o); str() is one line:
    "cannot write OUTPUT: reason". The run stops (exit 1); records written so far elsewhere stay."""

    def __init__(self, dest: str, reason: str):
        self.dest, self.reason = str(dest), reason
        super().__init__(f"cannot write {'standard output' if self.dest == '-' else self.dest}: {reason}")


# a sidecar write failing with one of these stops the run: every later sidecar would fail the same way
OUTPUT_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)


def reason_of(e: BaseException) -> str:
    """An exception as the reason part of one line ("no space left on device")."""
    if isinstance(e, OSError) and e.strerror:
        return e.strerror[:1].lower() + e.strerror[1:]
    return " ".join(str(e).split()) or type(e).__name__


def _closed_file(e: BaseException) -> bool:
    return isinstance(e, ValueError) and "closed file" in str(e)


def is_special(dest: str | Path) -> bool:
    """``-o`` names an existing device or FIFO (``/dev/null``, ``/dev/stdout``, a named pipe): written to directly,
    never replaced by a temp file, never locked or read back (reading a FIFO would block)."""
    dest = str(dest)
    if dest == "-" or is_uri(dest):
        return False
    try:
        mode = os.stat(dest).st_mode
    except OSError:
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


def check_output(dest: str | Path) -> None:
    """Raise :class:`OutputError` unless ``dest`` ("-" = stdout) can be written: its directory exists and takes
    a new file, and it is not a directory. Cheap (one empty temp file made and removed); called before slow work
    such as loading a model, so a typo in -o fails at once and names the user's path, not a temp file."""
    dest = str(dest)
    if dest == "-":
        if sys.stdout is None:
            raise OutputError(dest, "it is closed")
        return
    if is_uri(dest):
        return
    parent = os.path.dirname(dest) or "."
    if is_special(dest):
        if not os.access(dest, os.W_OK):
            raise OutputError(dest, "permission denied")
        return
    if os.path.isdir(dest):
        raise OutputError(dest, "is a directory")
    if not os.path.isdir(parent):
        raise OutputError(dest, f"no such directory: {parent}")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(dest)}.", suffix=".tmp", dir=parent)
    except OSError as e:
        raise OutputError(dest, reason_of(e)) from None
    os.close(fd)
    os.unlink(tmp)


_SURROGATE = re.compile("[\ud800-\udfff]")


def _json_text(obj, **kw) -> str:
    """JSON with non-ASCII kept readable, except lone surrogates (undecodable bytes of a file name), escaped as
    \\udcNN so the text encodes as UTF-8 and json.loads gives the same string back."""
    return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", json.dumps(obj, ensure_ascii=False, **kw))


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


def read_existing(dest: str | Path, fmt: str, warn=None) -> dict[str, Record]:
    """The records with labels of an earlier jsonl/json output ``dest``, by path ({} for "-" or no file), for
    ``--on-existing skip`` (resume) and ``merge``.

    Tolerant of what a crash or a person leaves: a cut-off last JSONL line (what a killed writer leaves) is
    ignored and a record without a "path" skipped, each told to ``warn(one line naming the file)``. Anything else
    that is not imgtag output (a foreign file, a bad line in the middle, unreadable) raises ValueError, one line
    naming the file, so it is found before the model loads."""
    dest = str(dest)
    if dest == "-" or is_uri(dest) or not os.path.lexists(dest) or is_special(dest):
        return {}
    warn = warn or (lambda msg: None)
    try:
        with open(dest, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ValueError(f"cannot read the existing output {dest}: {reason_of(e)}") from None
    text = data.decode("utf-8", "surrogateescape")  # a stray byte fails only its own record
    hint = "not imgtag output? use --on-existing overwrite or another -o"
    recs = []
    if fmt == "jsonl":
        lines = text.split("\n")
        for n, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                if _SURROGATE.search(line):
                    raise ValueError("not UTF-8")
                recs.append((n, json.loads(line)))
            except ValueError as e:
                if n == len(lines) and line.startswith("{"):  # the last line, no newline after it: cut short by a crash
                    warn(f"{dest}: line {n} is incomplete (an interrupted run?); ignored")
                    continue
                raise ValueError(f"{dest}: line {n} is not a JSON record ({e}); {hint}") from None
    else:
        try:
            if _SURROGATE.search(text):
                raise ValueError("not UTF-8")
            doc = json.loads(text) if text.strip() else []
            if not isinstance(doc, list):
                raise ValueError(f"a JSON {type(doc).__name__}")
        except ValueError as e:
            raise ValueError(f"{dest}: not a JSON array of records ({e}); {hint}") from None
        recs = list(enumerate(doc, 1))
    out = {}
    for n, r in recs:
        if not isinstance(r, dict) or not isinstance(r.get("path"), str):
            warn(f"{dest}: {'line' if fmt == 'jsonl' else 'record'} {n} has no path; ignored")
            continue
        if isinstance(r.get("labels"), list):
            out[r["path"]] = r
    return out


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
    def previous(self, warn=None) -> dict[str, Record]:
        """Records of an earlier run at the destination, by path (those with labels; failures are retried).
        Formats that cannot be resumed from give {}. ValueError (one line naming the file) when the file there
        is not this format's output; ``warn(line)`` hears about what is tolerated (a cut-off last line)."""
        return {}

    def done(self, path: str, previous: dict[str, Record]) -> bool:
        """Whether ``path`` already has a result from an earlier run (``--on-existing skip``)."""
        return path in previous

    # ---- writing -----------------------------------------------------------------------------------------
    errors = "strict"  # how the text encoding treats lone surrogates (non-UTF-8 names; see the module docstring)

    def open(self) -> "Writer":
        """Open the destination; :class:`OutputError` (one line naming it) when it cannot be written."""
        try:
            self._open()
        except OSError as e:
            self.abort()
            parent = os.path.dirname(self.dest) or "."
            if isinstance(e, FileNotFoundError) and self.dest != "-" and not os.path.isdir(parent):
                raise OutputError(self.dest, f"no such directory: {parent}") from None
            raise OutputError(self.dest, reason_of(e)) from None
        except ValueError as e:
            if not _closed_file(e):
                raise
            self.abort()
            raise OutputError(self.dest, "it is closed") from None
        return self

    def _open(self) -> None:
        if self.dest == "-":
            if sys.stdout is None:  # started with stdout closed (>&-)
                raise OutputError(self.dest, "it is closed")
            self.f = sys.stdout
            if hasattr(self.f, "reconfigure"):  # results are UTF-8 on stdout too, whatever the locale (LANG=C)
                enc = (getattr(self.f, "encoding", "") or "").lower().replace("-", "")
                self.f.reconfigure(**({} if enc == "utf8" else {"encoding": "utf-8"}),
                                   **({} if self.errors == "strict" else {"errors": self.errors}))
        elif is_special(self.dest):  # /dev/null, a FIFO: written to directly (replacing /dev/null would be a disaster)
            self.f = open(self.dest, "w", encoding="utf-8", newline=self.newline, errors=self.errors)  # noqa: SIM115
            self._special = True
        else:
            self._atomic = AtomicFile(self.dest, "w", encoding="utf-8", newline=self.newline)
            self.f = self._atomic.file
            if self.errors != "strict":
                self.f.reconfigure(errors=self.errors)
        self._begin()

    def write(self, record: Record) -> None:
        """Write one record; raises :class:`WriteFailed` when this record (only) could not be written, and
        :class:`OutputError` (after aborting: no temp file left) when the output itself fails (full disk)."""
        if self.f is None:
            raise RuntimeError("writer is not open")  # a bug: open() failing raised OutputError already
        try:
            self._write(record)
        except (OSError, ValueError) as e:
            if isinstance(e, ValueError) and not _closed_file(e):
                raise
            self.abort()
            raise OutputError(self.dest, reason_of(e) if isinstance(e, OSError) else "it is closed") from None

    def close(self) -> None:
        """Finish the output; for a file destination, atomically move it into place. :class:`OutputError`
        (after aborting) when that fails."""
        if self.f is None:
            return
        try:
            self._end()
            self.f.flush()
            if self._atomic:
                self._atomic.commit()
            elif getattr(self, "_special", False):
                self.f.close()
        except (OSError, ValueError) as e:
            self.abort()
            if isinstance(e, ValueError) and not _closed_file(e):
                raise
            raise OutputError(self.dest, reason_of(e) if isinstance(e, OSError) else "it is closed") from None
        except BaseException:
            self.abort()
            raise
        self.f = None

    def abort(self) -> None:
        """Stop without producing the output file (stdout output already written stays written)."""
        if self._atomic:
            self._atomic.abort()
        elif getattr(self, "_special", False) and self.f is not None:
            with contextlib.suppress(OSError, ValueError):
                self.f.close()
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

    def previous(self, warn=None):
        return read_existing(self.dest, self.fmt, warn)

    def _write(self, record):
        self.f.write(_json_text(_clean(record)) + "\n")
        self.f.flush()


@register_writer
class JsonWriter(Writer):
    fmt, help = "json", "one JSON array"

    def previous(self, warn=None):
        return read_existing(self.dest, self.fmt, warn)

    def _begin(self):
        self.records: list[Record] = []

    def _write(self, record):
        self.records.append(_clean(record))

    def _end(self):
        self.f.write(_json_text(self.records, indent=1) + "\n")


@register_writer
class CsvWriter(Writer):
    fmt, help = "csv", "path,labels,scores,label_paths ('|'-joined)"
    newline = ""
    errors = "surrogateescape"  # a non-UTF-8 name is written as its raw bytes

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
        if self.dest == "-":
            self.f.flush()  # a full or closed stdout fails here, on this record, not at exit


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
        if self.dest == "-":
            self.f.flush()


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


def _unescape(path: str) -> str:
    """A Parquet path back to the name: ``\\udcNN`` → the lone surrogate it stands for (see parquet_row)."""
    return re.sub(r"\\u(dc[89a-f][0-9a-f])", lambda m: chr(int(m.group(1), 16)), path) if "\\u" in path else path


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
    path = _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", str(record["path"]))  # Arrow strings are UTF-8
    return {"path": path, "labels": [lab.label for lab in labels],
            "scores": [float(lab.score) for lab in labels],
            "error": _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", str(record.get("error") or "")),
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

    def previous(self, warn=None):
        if is_uri(self.dest) or not Path(self.dest).exists() or is_special(self.dest):
            return {}
        import pyarrow.parquet as pq

        from .records import make_record

        try:
            rows = pq.read_table(self.dest).to_pylist()
            return {_unescape(r["path"]): make_record(_unescape(r["path"]), parquet_labels(r))
                    for r in rows if not r["error"]}
        except ImportError as e:
            raise ValueError(PARQUET_HINT) from e
        except Exception as e:  # noqa: BLE001 - pyarrow's errors: ArrowInvalid, OSError, KeyError for a foreign table
            raise ValueError(f"{self.dest}: not an imgtag Parquet file ({reason_of(e)}); "
                             "use --on-existing overwrite or another -o") from None

    def _open(self):
        try:
            import pyarrow.fs as pafs
            import pyarrow.parquet as pq
        except ImportError as e:
            raise ValueError(PARQUET_HINT) from e
        self.schema, self.rows = parquet_schema(), []
        if is_uri(self.dest):
            fs, path = pafs.FileSystem.from_uri(self.dest)
            self.f = fs.open_output_stream(path)
        elif is_special(self.dest):  # /dev/null, a FIFO: written to directly
            self.f = open(self.dest, "wb")  # noqa: SIM115
        else:
            self._atomic = AtomicFile(self.dest, "wb", encoding=None)
            self.f = self._atomic.file
        self.pq = pq.ParquetWriter(self.f, self.schema)

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
            if self._atomic:
                self._atomic.commit()
            else:
                self.f.close()
        except OSError as e:
            self.abort()
            raise OutputError(self.dest, reason_of(e)) from None
        except BaseException:
            self.abort()
            raise
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
        self._listed: dict[str, frozenset[str]] = {}

    def done(self, path, previous):
        """Whether imgtag already tagged the image (its sidecar has imgtag:Model or imgtag:Scores, even with no
        label). Fast for big collections (issue 16: 98k paths took 13.8 s): each folder is listed once, an image
        with no ``.xmp`` beside it under its name or stem is not looked at further, a UTF-8 sidecar without the
        bytes "imgtag" cannot be imgtag's and one with ``imgtag:Model``/``imgtag:Scores`` is; only the rest are
        parsed. An unreadable or broken sidecar counts as not done: tagging it reports it on one line."""
        from .xmp import XmpError, is_tagged

        folder, name = os.path.split(str(path))
        names = self._sidecars(folder or ".")
        if (name + ".xmp").lower() not in names and (os.path.splitext(name)[0] + ".xmp").lower() not in names:
            return False
        try:
            side = self.namer(path)
            data = side.read_bytes()
            if b"\0" not in data:  # UTF-8, not UTF-16: the bytes tell without parsing
                if b"imgtag" not in data:
                    return False
                if re.search(rb"<imgtag:(Model|Scores)>|\simgtag:(Model|Scores)=", data):
                    return True
            return is_tagged(side, self.namer)
        except (XmpError, OSError):  # unreadable sidecar: tag again; writing it then reports the problem
            return False

    def _sidecars(self, folder: str) -> frozenset[str]:
        """The folder's ``*.xmp`` names, lower-cased (listed once per run)."""
        names = self._listed.get(folder)
        if names is None:
            try:
                names = frozenset(n.lower() for n in os.listdir(folder) if n[-4:].lower() == ".xmp")
            except OSError:
                names = frozenset()
            self._listed[folder] = names
        return names

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
            self._listed.pop(os.path.dirname(str(record["path"])) or ".", None)  # a new sidecar there
        except OSError as e:
            if e.errno in OUTPUT_FULL:  # a full or read-only disk: every later sidecar would fail too
                raise OutputError(str(self.namer(record["path"])), reason_of(e)) from None
            raise WriteFailed(f"{record['path']}: sidecar not written: {reason_of(e)}") from e
        except (XmpError, ValueError) as e:
            if isinstance(e.__cause__, OSError) and e.__cause__.errno in OUTPUT_FULL:
                raise OutputError(record["path"], reason_of(e.__cause__)) from None
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
