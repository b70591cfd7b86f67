"""An output directory that many runs may share safely: a lock, a manifest, append-only records.

Layout of ``OUTDIR``:

``.lock``
    held with ``fcntl.flock(LOCK_EX | LOCK_NB)`` for the whole run; it holds the pid of the run
    that holds it (for the refusal message only: the kernel releases a ``flock`` when its holder
    dies, even after ``kill -9``, so a stale lock never blocks a later run). A second run on the
    same directory fails at once with one line (:class:`RunLockedError`); it never joins or
    writes.
``manifest.json``
    the run's identity and settings, written atomically (:func:`graphengine.io.write_json`).
    A rerun must present the same ``identity`` (model hash, data hash, options) or is refused
    with one line naming the settings that differ.
``records.jsonl`` (the name is the caller's)
    one JSON object per line, each with an ``id``. A record is appended with one ``write`` of the
    whole line followed by ``fsync``, so after a crash the file holds whole records and at most
    one cut-off last line. Opening the store cuts that line off and reads the ids already done;
    the caller computes only the rest. Only the lock holder appends, and it skips ids already
    present, so every id appears exactly once.

>>> import tempfile
>>> d = tempfile.mkdtemp()
>>> with RunStore(d, "records.jsonl") as st:
...     st.append({"id": "a", "x": 1}); st.append({"id": "a", "x": 2}); sorted(st.done)
True
False
['a']
>>> [r["x"] for r in read_records(d + "/records.jsonl")]
[1]
"""

from __future__ import annotations

import json
import os
from typing import Any, Dict, Iterable, List, Optional, Set

from .. import io as files
from ..errors import GraphEngineError

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None

__all__ = ["RunStoreError", "RunLockedError", "RunStore", "read_records", "read_manifest", "check_identity"]

LOCK_NAME = ".lock"
MANIFEST_NAME = "manifest.json"


class RunStoreError(GraphEngineError):
    """An output directory cannot be used: unreadable records, another run's settings."""


class RunLockedError(RunStoreError):
    """Another run holds the output directory."""


def read_records(path: str, repair: bool = False) -> List[Dict[str, Any]]:
    """The records of a JSON-lines file, in file order. A last line without its newline (a
    write cut short by a crash) or that does not parse is ignored, and cut from the file when
    ``repair``; an unparsable earlier line is a :class:`RunStoreError` naming its line number."""
    if not os.path.exists(path):
        return []
    with open(path, "rb") as f:
        data = f.read()
    rows: List[Dict[str, Any]] = []
    pos = good_end = 0
    k = 0
    while pos < len(data):
        k += 1
        nl = data.find(b"\n", pos)
        if nl < 0:  # every record is written with its newline: a last line without one was cut short
            break
        line = data[pos:nl]
        if line.strip():
            try:
                row = json.loads(line.decode("utf-8"))
                if not isinstance(row, dict) or "id" not in row:
                    raise ValueError("not a record object")
            except ValueError:
                if data[nl + 1:].strip():
                    raise RunStoreError(f"{path}: line {k} is not a JSON row; delete the file (or the line) "
                                        f"to recompute it") from None
                break
            rows.append(row)
        pos = good_end = nl + 1
    if repair and good_end < len(data):
        with open(path, "r+b") as f:
            f.truncate(good_end)
            f.flush()
            os.fsync(f.fileno())
    return rows


def read_manifest(outdir: str) -> Optional[Dict[str, Any]]:
    """``OUTDIR/manifest.json`` as a dict (None when there is none); one-line errors."""
    path = os.path.join(outdir, MANIFEST_NAME)
    if not os.path.exists(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except (OSError, ValueError) as e:
        raise RunStoreError(f"{path}: cannot read ({' '.join(str(e).split())})") from None
    if not isinstance(doc, dict):
        raise RunStoreError(f"{path}: not a JSON object")
    return doc


def check_identity(path: str, old: Dict[str, Any], new: Dict[str, Any]) -> None:
    """Refuse (one line) when a stored identity differs from the requested one."""
    diff = [k for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
    if diff:
        shown = ", ".join(f"{k}: {old.get(k)!r} (now {new.get(k)!r})" for k in diff[:4])
        raise RunStoreError(f"{path} holds a run with other settings ({shown}); use another output directory")


class RunStore:
    """The output directory of one run: lock it, check or write its manifest, append records.

    Use as a context manager (or call :meth:`open` / :meth:`close`): entering creates the
    directory, takes the lock, repairs and reads the records. ``done`` is the set of ids
    already written (this run's appends included).
    """

    def __init__(self, outdir: str, records: str = "records.jsonl"):
        self.outdir = os.fspath(outdir)
        self.records_path = os.path.join(self.outdir, records)
        self.manifest_path = os.path.join(self.outdir, MANIFEST_NAME)
        self.done: Set[Any] = set()
        self.appended = 0
        self._lock_fd: Optional[int] = None
        self._fd: Optional[int] = None

    # ------------------------------------------------------------------ lock
    def _lock(self) -> None:
        path = os.path.join(self.outdir, LOCK_NAME)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o666)
        except OSError as e:
            raise RunStoreError(f"{path}: cannot open the lock file ({e.strerror or e})") from None
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                try:
                    holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip() or "?"
                except OSError:
                    holder = "?"
                os.close(fd)
                raise RunLockedError(f"{self.outdir} is in use by another run (pid {holder}); wait for it to "
                                     f"finish or choose another output directory") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        self._lock_fd = fd

    # ------------------------------------------------------------------ open / close
    def open(self) -> "RunStore":
        try:
            os.makedirs(self.outdir, exist_ok=True)
        except OSError as e:
            raise RunStoreError(f"{self.outdir}: cannot create the output directory ({e.strerror or e})") from None
        if not os.path.isdir(self.outdir):
            raise RunStoreError(f"{self.outdir}: not a directory")
        self._lock()
        try:
            self.done = {r["id"] for r in read_records(self.records_path, repair=True)}
            self._fd = os.open(self.records_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT
                               | getattr(os, "O_CLOEXEC", 0), 0o666)
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None

    def __enter__(self) -> "RunStore":
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ manifest
    def read_manifest(self) -> Optional[Dict[str, Any]]:
        return read_manifest(self.outdir)

    def write_manifest(self, doc: Dict[str, Any]) -> None:
        files.write_json(self.manifest_path, doc, allow_nan=False)

    # ------------------------------------------------------------------ records
    def append(self, record: Dict[str, Any]) -> bool:
        """Append ``record`` durably unless its id is already done; whether it was written."""
        if self._fd is None:
            raise RunStoreError(f"{self.outdir}: the store is not open")
        rid = record["id"]
        if rid in self.done:
            return False
        line = (json.dumps(record, allow_nan=False, separators=(",", ":")) + "\n").encode("utf-8")
        view = memoryview(line)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]
        os.fsync(self._fd)
        self.done.add(rid)
        self.appended += 1
        return True

    def extend(self, records: Iterable[Dict[str, Any]]) -> int:
        return sum(self.append(r) for r in records)

    def records(self) -> List[Dict[str, Any]]:
        """Every record on disk (the first of any repeated id, for files written by hand)."""
        seen: Set[Any] = set()
        out = []
        for r in read_records(self.records_path):
            if r["id"] not in seen:
                seen.add(r["id"])
                out.append(r)
        return out
