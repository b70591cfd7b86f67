"""Files in and out: the one atomic writer, and readers with limits.

**Writing.** Every file graphengine writes (graph files, ``-o`` outputs, experiment results,
``run.json``, data-set cards, benchmark results) goes through :func:`atomic_write`:

* the data goes to a temporary file created with ``O_EXCL | O_NOFOLLOW`` and an unpredictable
  name, ``.NAME.graphengine-XXXXXXXX.tmp``, in the target's directory (so a planted symlink is
  never followed and the rename stays on one file system);
* the temporary file is flushed and ``fsync``-ed, renamed over the target with ``os.replace``
  (atomic: readers see the old file or the new one, never a mix), and the directory is
  ``fsync``-ed (best effort: some file systems refuse it);
* on an exception, and on SIGTERM or SIGINT arriving while writing, the temporary file is
  removed and the old file is left as it was; the signal is then delivered as before (handlers
  are installed only for the duration of the write, only in the main thread, and only where
  the signal still has its default disposition). After ``kill -9`` a temporary file can remain:
  its name starts with ``.NAME.graphengine-`` and ends with ``.tmp`` and it may be deleted;
* a target that is a symlink is replaced by a regular file (the link's target is untouched);
  a new file gets the permissions ``0666 & ~umask`` like any other file; an existing regular
  file keeps its permission bits;
* any ``OSError`` (a missing directory, ``/proc``, a read-only file system, a full disk, no
  permission) becomes one :class:`~graphengine.errors.WriteError` line naming the path and the
  reason.

**Reading.** :func:`open_regular` opens regular files only (devices, FIFOs and sockets are
refused without blocking); :func:`read_json_member` and :func:`read_npz` stream zip members with
the limits in :data:`LIMITS`, parse ``.npy`` headers themselves (never unpickling, never
trusting a declared size before checking it) and raise the caller's error type with one line
naming the file and the member.

>>> import os, tempfile, numpy as np
>>> d = tempfile.mkdtemp(); p = os.path.join(d, "a.npz")
>>> write_npz(p, {"x": np.arange(3.0)})
>>> with open_regular(p, p, ValueError) as f:
...     read_npz(f, p, ValueError)["x"]
array([0., 1., 2.])
>>> with limits(max_member_bytes=16), open_regular(p, p, ValueError) as f:
...     read_npz(f, p, ValueError)
Traceback (most recent call last):
ValueError: .../a.npz: member 'x.npy': declares shape [3] float64 of 24 B, over the limit of 16 B (graphengine.io.LIMITS.max_member_bytes)
>>> os.listdir(d)
['a.npz']
"""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import io
import json
import math
import os
import signal
import stat
import struct
import tempfile
import threading
import zipfile
import zlib
from typing import IO, Any, BinaryIO, Dict, Iterator, Optional, Type

import numpy as np

from .errors import GraphEngineError, WriteError

__all__ = ["Limits", "LIMITS", "limits", "atomic_write", "write_bytes", "write_text", "write_json", "write_npz",
           "same_file", "check_output", "open_regular", "read_json_member", "read_npz", "spool_member",
           "zip_errors", "format_bytes", "TEMP_MARKER"]

MiB = 1 << 20
GiB = 1 << 30
TEMP_MARKER = ".graphengine-"   # every temporary file's name holds it: ``.NAME.graphengine-XXXXXXXX.tmp``
_CHUNK = 1 << 20
_MAX_NPY_HEADER = 1 << 16       # numpy itself writes headers of a few hundred bytes


@dataclasses.dataclass
class Limits:
    """Resource limits (the one place for them); change :data:`LIMITS` (or use :func:`limits`)
    for more.

    ``max_json_bytes``: decompressed size of a graph file's ``graph.json``.
    ``max_member_bytes``: decompressed size of any other archive member: one array of an
    ``.npz``, and a graph file's whole ``arrays.npz`` (which is spooled to a temporary file
    beyond 32 MiB, so memory holds the arrays once).
    ``memory_budget``: bytes of the arrays one file may make the reader allocate, and of the
    tensors a loaded graph declares (the sum of every node's shape × item size, a lower bound
    of what ``forward`` holds); checked before anything is allocated: by the readers, by
    ``forward`` against the graph's declared shapes, and by ``backward`` against its estimate of
    the semiring values it will hold (:mod:`graphengine.engine.budget`).
    ``max_k``: the largest K of ``kbest:K`` / ``kbestabs:K`` (each element then carries up to 2K
    float64 values and their backpointers).
    """

    max_json_bytes: int = 64 * MiB
    max_member_bytes: int = 4 * GiB
    memory_budget: int = 8 * GiB
    max_k: int = 4096


LIMITS = Limits()


@contextlib.contextmanager
def limits(**changes: int) -> Iterator[Limits]:
    """Change :data:`LIMITS` for the duration of a ``with`` block.

    >>> with limits(max_json_bytes=1024) as lim:
    ...     lim.max_json_bytes
    1024
    >>> LIMITS.max_json_bytes == 64 * MiB
    True
    """
    old = dataclasses.asdict(LIMITS)
    for k, v in changes.items():
        if k not in old:
            raise TypeError(f"no limit named {k!r} (have {', '.join(old)})")
        setattr(LIMITS, k, int(v))
    try:
        yield LIMITS
    finally:
        for k, v in old.items():
            setattr(LIMITS, k, v)


def format_bytes(n: int) -> str:
    """``1536`` → ``'1.5 KiB'``.

    >>> format_bytes(10), format_bytes(8 << 30), format_bytes(32 * 10**12), format_bytes(1000 << 20)
    ('10 B', '8 GiB', '29.1 TiB', '1000 MiB')
    """
    if n < 1024:
        return f"{n} B"
    for unit in ("KiB", "MiB", "GiB", "TiB", "PiB", "EiB"):
        n /= 1024
        if n < 1024 or unit == "EiB":
            break
    return f"{n:.3g} {unit}" if n < 1000 else f"{n:.0f} {unit}"


# ============================================================================ writing
class _Interrupted(BaseException):
    """SIGTERM/SIGINT during a write (a BaseException, so ``except Exception`` cannot swallow it)."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


@contextlib.contextmanager
def _signals_abort_write() -> Iterator[None]:
    """While writing, turn SIGTERM/SIGINT (default dispositions only) into an exception, so the
    temporary file is removed; then deliver the signal as it would have been."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    installed = {}

    def handler(signum, frame):
        raise _Interrupted(signum)

    for sig in (signal.SIGTERM, signal.SIGINT):
        previous = signal.getsignal(sig)
        if previous in (signal.SIG_DFL, signal.default_int_handler):
            try:
                signal.signal(sig, handler)
            except (ValueError, OSError):  # e.g. a sub-interpreter: rely on the finally clauses
                continue
            installed[sig] = previous
    caught = None
    try:
        yield
    except _Interrupted as e:
        caught = e.signum
    finally:
        for sig, previous in installed.items():
            signal.signal(sig, previous)
    if caught is not None:
        if installed.get(caught) is signal.default_int_handler:
            raise KeyboardInterrupt
        os.kill(os.getpid(), caught)
        raise WriteError(f"write interrupted by signal {caught}")  # only if the signal did not end the process


def _umask() -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # no other portable way to read it
    os.umask(mask)
    return mask


def _reason(e: OSError) -> str:
    return e.strerror or str(e) or type(e).__name__


def _fsync_dir(directory: str) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # best effort: the rename is done; some file systems cannot fsync a directory
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_write(path: str, mode: str = "wb", encoding: Optional[str] = None) -> Iterator[IO]:
    """A file object (binary, or text in ``encoding``, default UTF-8) whose contents replace
    ``path`` atomically when the block ends without an exception (see the module docstring).

    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "a.txt")
    >>> with atomic_write(p, "w") as f:
    ...     _ = f.write("hello")
    >>> open(p).read()
    'hello'
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_write mode must be 'wb' or 'w', not {mode!r}")
    path = os.fspath(path)
    parent = os.path.dirname(os.path.abspath(path))
    base = os.path.basename(path)[:120]
    tmp = None
    with _signals_abort_write():
        try:
            try:
                if not os.path.isdir(parent):
                    raise WriteError(f"cannot write {path}: directory {parent} does not exist")
                if os.path.isdir(path) and not os.path.islink(path):
                    raise WriteError(f"cannot write {path}: is a directory")
                fd, tmp = tempfile.mkstemp(prefix=f".{base}{TEMP_MARKER}", suffix=".tmp", dir=parent)
                try:
                    old = os.lstat(path)
                    perms = stat.S_IMODE(old.st_mode) if stat.S_ISREG(old.st_mode) else None
                except OSError:
                    perms = None
                os.fchmod(fd, perms if perms is not None else 0o666 & ~_umask())
                with os.fdopen(fd, mode, encoding=None if "b" in mode else encoding or "utf-8") as f:
                    yield f
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, path)
                tmp = None
            except OSError as e:
                raise WriteError(f"cannot write {path}: {_reason(e)}") from None
            _fsync_dir(parent)
        finally:
            if tmp is not None:
                with contextlib.suppress(OSError):
                    os.remove(tmp)


def write_bytes(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_write(path) as f:
        f.write(data)


def write_text(path: str, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str, doc: Any, **dumps_kwargs) -> None:
    """Write ``json.dumps(doc, indent=1, **dumps_kwargs)`` and a newline to ``path`` atomically.

    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "a.json"); write_json(p, {"a": [1, 2]})
    >>> json.load(open(p))
    {'a': [1, 2]}
    """
    dumps_kwargs.setdefault("indent", 1)
    write_text(path, json.dumps(doc, **dumps_kwargs) + "\n")


def write_npz(path: str, arrays: Dict[str, np.ndarray]) -> None:
    """Write ``arrays`` to ``path`` as an uncompressed ``.npz`` atomically."""
    with atomic_write(path) as f:
        np.savez(f, **arrays)


def marked_section(text: str, begin: str, end: str, label: str = "text",
                   error: Type[Exception] = WriteError) -> str:
    r"""The part of ``text`` between the marker lines ``begin`` and ``end`` (a generated section
    of a README or doc); one ``error`` line unless each marker occurs once, in that order.

    >>> marked_section("a\n<b>\nbody\n<e>\nz", "<b>", "<e>")
    '\nbody\n'
    """
    if text.count(begin) != 1 or text.count(end) != 1 or text.index(begin) > text.index(end):
        raise error(f"{label}: needs exactly one '{begin}' line followed by one '{end}' line")
    return text.split(begin, 1)[1].split(end, 1)[0]


def replace_marked_section(text: str, begin: str, end: str, body: str, label: str = "text",
                           error: Type[Exception] = WriteError) -> str:
    r"""``text`` with the part between the markers replaced by ``body`` (which should end in a
    newline); the markers themselves stay.

    >>> replace_marked_section("a\n<b>\nold\n<e>\nz", "<b>", "<e>", "new\n")
    'a\n<b>\nnew\n<e>\nz'
    """
    marked_section(text, begin, end, label, error)
    head, rest = text.split(begin, 1)
    return f"{head}{begin}\n{body}{end}{rest.split(end, 1)[1]}"


def same_file(a: str, b: str) -> bool:
    """Whether ``a`` and ``b`` name one file (through links, ``..`` or hard links).

    >>> import tempfile, os
    >>> d = tempfile.mkdtemp(); p = os.path.join(d, "x"); _ = open(p, "w").close()
    >>> same_file(p, os.path.join(d, ".", "x")), same_file(p, os.path.join(d, "y"))
    (True, False)
    """
    try:
        if os.path.exists(a) and os.path.exists(b):
            return os.path.samefile(a, b)
    except OSError:
        pass
    return os.path.realpath(a) == os.path.realpath(b)


def check_output(path: Optional[str], inputs=(), label: str = "-o", error: Type[Exception] = WriteError) -> None:
    """Fail before any work if ``path`` cannot be an output: a directory, a missing parent
    directory, or one of the ``inputs`` (which writing would destroy).

    >>> check_output("g.ge", inputs=["./g.ge"])
    Traceback (most recent call last):
    graphengine.errors.WriteError: -o g.ge: is also an input (./g.ge); writing it would replace that input
    """
    if path is None:
        return
    path = os.fspath(path)
    for inp in inputs:
        if inp is not None and same_file(path, os.fspath(inp)):
            raise error(f"{label} {path}: is also an input ({inp}); writing it would replace that input")
    if os.path.isdir(path):
        raise error(f"{label} {path}: is a directory")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise error(f"{label} {path}: directory {parent} does not exist")
    # Probe with the same operation the atomic writer starts with (a temporary file beside the
    # target): permission bits alone say nothing for root or for read-only file systems.
    try:
        fd, probe = tempfile.mkstemp(dir=parent, prefix=".ge-probe-")
    except OSError as e:
        raise error(f"{label} {path}: cannot write in directory {parent} ({e.strerror or e})") from None
    os.close(fd)
    os.unlink(probe)


# ============================================================================ reading
# What reading a damaged or hostile zip can raise (zlib.error for corrupt deflate data,
# NotImplementedError for unknown compression methods, RuntimeError for encrypted members,
# ValueError for bad headers, OverflowError/struct.error for absurd header fields).
_READ_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, OSError, NotImplementedError,
                RuntimeError, ValueError, KeyError, OverflowError, struct.error, MemoryError)


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text if len(text) <= 200 else text[:200] + "..."


@contextlib.contextmanager
def zip_errors(label: str, error: Type[Exception], what: str) -> Iterator[None]:
    """Turn what a damaged zip raises into ``error("LABEL: WHAT (reason)")``; errors of the
    library pass unchanged."""
    try:
        yield
    except GraphEngineError:
        raise
    except _READ_ERRORS as e:
        if isinstance(e, error):
            raise
        raise error(f"{label}: {what} ({_one_line(e)})") from None


def open_regular(path: str, label: str, error: Type[Exception]) -> BinaryIO:
    """Open ``path`` for binary reading if it is a regular file; otherwise raise ``error`` with one
    line (no such file, a directory, a device, FIFO or socket). Never blocks on a FIFO.

    >>> open_regular("/dev/zero", "/dev/zero", ValueError)
    Traceback (most recent call last):
    ValueError: /dev/zero: not a regular file (a device, FIFO or socket)
    """
    try:
        fd = os.open(os.fspath(path), os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise error(f"{label}: no such file") from None
    except IsADirectoryError:
        raise error(f"{label}: is a directory") from None
    except OSError as e:
        raise error(f"{label}: cannot open ({_reason(e)})") from None
    try:
        mode = os.fstat(fd).st_mode
    except OSError as e:
        os.close(fd)
        raise error(f"{label}: cannot open ({_reason(e)})") from None
    if not stat.S_ISREG(mode):
        os.close(fd)
        kind = "is a directory" if stat.S_ISDIR(mode) else "not a regular file (a device, FIFO or socket)"
        raise error(f"{label}: {kind}")
    if hasattr(os, "set_blocking"):
        os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def _over(what: str, size: int, limit: int, setting: str) -> str:
    """``WHAT SIZE, over the limit of LIMIT (graphengine.io.LIMITS.SETTING)``."""
    a, b = format_bytes(size), format_bytes(limit)
    if a == b:
        a, b = f"{size:,} bytes", f"{limit:,} bytes"
    return f"{what} {a}, over the limit of {b} (graphengine.io.LIMITS.{setting})"


def _member_info(z: zipfile.ZipFile, name: str, label: str, error: Type[Exception], limit: int,
                 setting: str) -> zipfile.ZipInfo:
    info = z.getinfo(name)
    if info.file_size > limit:
        raise error(f"{label}: {_over(f'{name} is declared to inflate to', info.file_size, limit, setting)}")
    return info


def _copy_limited(src: IO[bytes], dst: IO[bytes], limit: int, message) -> int:
    total = 0
    while True:
        chunk = src.read(_CHUNK)
        if not chunk:
            return total
        total += len(chunk)
        if total > limit:
            raise message(total)
        dst.write(chunk)


def read_json_member(z: zipfile.ZipFile, name: str, label: str, error: Type[Exception]) -> Any:
    """Parse the JSON member ``name`` of ``z``, reading at most ``LIMITS.max_json_bytes``."""
    limit = LIMITS.max_json_bytes
    with zip_errors(label, error, f"{name} is unreadable"):
        info = _member_info(z, name, label, error, limit, "max_json_bytes")
        buf = io.BytesIO()
        with z.open(info) as m:
            _copy_limited(m, buf, limit, lambda n: error(
                f"{label}: {_over(f'{name} inflates to at least', n, limit, 'max_json_bytes')}"))
    try:
        return json.loads(str(buf.getbuffer(), "utf-8"))  # no copy of the bytes on the way
    except (ValueError, RecursionError, MemoryError) as e:  # JSONDecodeError, UnicodeDecodeError, huge ints
        raise error(f"{label}: {name} is not valid JSON ({_one_line(e)})") from None


def spool_member(z: zipfile.ZipFile, name: str, label: str, error: Type[Exception]) -> IO[bytes]:
    """Member ``name`` of ``z`` decompressed into a seekable temporary file (in memory up to
    32 MiB, on disk beyond, deleted when closed), at most ``LIMITS.max_member_bytes``."""
    limit = LIMITS.max_member_bytes
    spool = tempfile.SpooledTemporaryFile(max_size=32 * MiB)
    try:
        with zip_errors(label, error, f"{name} is unreadable"):
            info = _member_info(z, name, label, error, limit, "max_member_bytes")
            with z.open(info) as m:
                _copy_limited(m, spool, limit, lambda n: error(
                    f"{label}: {_over(f'{name} inflates to at least', n, limit, 'max_member_bytes')}"))
        spool.seek(0)
        return spool
    except BaseException:
        spool.close()
        raise


def read_npz(f: BinaryIO, label: str, error: Type[Exception]) -> Dict[str, np.ndarray]:
    """Every array of the ``.npz`` in the seekable binary file ``f``, keyed by name.

    Each member must be a ``.npy`` file of a non-object dtype whose declared size fits
    ``LIMITS.max_member_bytes``; all of them together must fit ``LIMITS.memory_budget``. Nothing
    is unpickled; every problem is one ``error`` line starting with ``label``.
    """
    magic = f.read(6)
    f.seek(0)
    if magic == b"\x93NUMPY":
        raise error(f"{label}: holds a single array (.npy); expected an .npz of arrays keyed by name")
    if not magic.startswith(b"PK"):
        raise error(f"{label}: not an .npz file (not a zip archive)")
    out: Dict[str, np.ndarray] = {}
    budget = LIMITS.memory_budget
    with zip_errors(label, error, "not a readable .npz file"):
        with zipfile.ZipFile(f) as z:
            infos = z.infolist()
            seen = set()
            for info in infos:
                name = info.filename
                if name in seen:
                    raise error(f"{label}: member {name!r} appears twice")
                seen.add(name)
                if not name.endswith(".npy"):
                    raise error(f"{label}: member {name!r} is not a .npy array; expected an .npz of arrays")
            for info in infos:
                where = f"{label}: member {info.filename!r}"
                with z.open(info) as m:
                    array = read_npy(m, where, error, budget)
                budget -= array.nbytes
                out[info.filename[:-4]] = array
    return out


def _read_exact(f: IO[bytes], n: int, where: str, what: str, error: Type[Exception]) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise error(f"{where}: truncated {what}")
    return data


def _parse_npy_header(text: str, where: str, error: Type[Exception]):
    try:
        d = ast.literal_eval(text)
    except (SyntaxError, ValueError, TypeError, MemoryError, RecursionError):
        raise error(f"{where}: malformed .npy header {_one_line(text)!r}") from None
    if not isinstance(d, dict) or set(d) != {"descr", "fortran_order", "shape"}:
        raise error(f"{where}: .npy header is not a dict of descr, fortran_order and shape")
    shape, descr = d["shape"], d["descr"]
    if not (isinstance(shape, tuple) and all(type(s) is int and s >= 0 for s in shape)):
        raise error(f"{where}: .npy header shape {_one_line(repr(shape))} is not a tuple of non-negative integers")
    if not isinstance(d["fortran_order"], bool):
        raise error(f"{where}: .npy header fortran_order is not a boolean")
    if not isinstance(descr, str):
        raise error(f"{where}: structured dtype {_one_line(repr(descr))} is not supported")
    try:
        dtype = np.dtype(descr)
    except (TypeError, ValueError, SyntaxError):
        raise error(f"{where}: unknown dtype {descr!r} in the .npy header") from None
    if dtype.hasobject:
        raise error(f"{where}: holds Python objects (dtype {dtype}), which would need unpickling; "
                    "refused (files are read with allow_pickle=False)")
    return shape, dtype, d["fortran_order"]


def read_npy(f: IO[bytes], where: str, error: Type[Exception], budget: Optional[int] = None) -> np.ndarray:
    """One array from the ``.npy`` stream ``f`` (e.g. an open zip member), checking the header
    before allocating: at most ``LIMITS.max_member_bytes`` and ``budget`` bytes (default
    ``LIMITS.memory_budget``)."""
    head = _read_exact(f, 8, where, ".npy header", error)
    if head[:6] != b"\x93NUMPY":
        raise error(f"{where}: not a .npy array (no NUMPY magic)")
    major = head[6]
    if major not in (1, 2, 3):
        raise error(f"{where}: unsupported .npy format version {major}.{head[7]}")
    size_bytes = 2 if major == 1 else 4
    (hlen,) = struct.unpack("<H" if major == 1 else "<I", _read_exact(f, size_bytes, where, ".npy header", error))
    if hlen > _MAX_NPY_HEADER:
        raise error(f"{where}: .npy header of {hlen} bytes is implausibly long")
    raw = _read_exact(f, hlen, where, ".npy header", error)
    try:
        text = raw.decode("utf-8" if major == 3 else "latin1")
    except UnicodeDecodeError:
        raise error(f"{where}: .npy header is not text") from None
    shape, dtype, fortran = _parse_npy_header(text, where, error)
    nbytes = math.prod(shape) * dtype.itemsize
    desc = f"declares shape {list(shape)} {dtype}"
    if nbytes > LIMITS.max_member_bytes:
        raise error(f"{where}: {_over(desc + ' of', nbytes, LIMITS.max_member_bytes, 'max_member_bytes')}")
    budget = LIMITS.memory_budget if budget is None else budget
    if nbytes > budget:
        raise error(f"{where}: {desc} ({format_bytes(nbytes)}), over what is left of the memory budget "
                    f"of {format_bytes(LIMITS.memory_budget)} (graphengine.io.LIMITS.memory_budget)")
    if nbytes == 0:
        array = np.empty(shape, dtype, order="F" if fortran else "C")
    else:
        data = bytearray(nbytes)
        view = memoryview(data)
        pos = 0
        while pos < nbytes:
            chunk = f.read(min(_CHUNK, nbytes - pos))
            if not chunk:
                raise error(f"{where}: truncated array data ({pos} of {nbytes} bytes)")
            view[pos:pos + len(chunk)] = chunk
            pos += len(chunk)
        array = np.frombuffer(data, dtype=dtype).reshape(shape, order="F" if fortran else "C")
    if f.read(1):
        raise error(f"{where}: trailing bytes after the array data")
    return array
