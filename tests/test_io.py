"""graphengine.io: the atomic writer (temp files, permissions, symlinks, signals, OS errors) and
the readers with limits (regular files only, bounded decompression, defensive .npy headers,
memory budget, capped error lines), through the library and through the CLI."""

import errno
import io
import json
import os
import re
import signal
import stat
import subprocess
import sys
import textwrap
import threading
import time
import zipfile

import numpy as np
import pytest

from graphengine import io as files
from graphengine.cli import main
from graphengine.errors import FeedError, GraphEngineError, GraphFormatError, GraphValidationError, WriteError
from graphengine.ir import Graph, load, save

TEMP = re.compile(r"^\..+\.graphengine-[A-Za-z0-9_]+\.tmp$")


def _graph(n=4) -> Graph:
    g = Graph(meta={"model": "io"})
    x = g.input("x", (2, n))
    w = g.parameter("w", np.arange(2.0 * n).reshape(2, n))
    g.mark_output(g.call("add", x, w, name="y"))
    return g


def _one_line(e, *needles):
    msg = str(e)
    assert "\n" not in msg and len(msg) < 1000, msg
    for n in needles:
        assert n in msg, msg
    return msg


def _refused(path, *needles, cls=GraphFormatError):
    with pytest.raises(cls) as info:
        load(str(path))
    return _one_line(info.value, str(path), *needles)


def _cli(capsys, *args):
    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


def _cli_error(capsys, *args, match=()):
    rc, out, err = _cli(capsys, *args)
    assert rc == 2, (rc, out, err)
    assert err.startswith("graphengine: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    for m in (match if isinstance(match, tuple) else (match,)):
        assert m in err, err
    return err


def _pack(path, content):
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for name, data in content.items():
            z.writestr(name, data)
    return str(path)


def _members(path):
    with zipfile.ZipFile(path) as z:
        return {n: z.read(n) for n in z.namelist()}


def _npy(header: str, data: bytes = b"") -> bytes:
    raw = header.encode("latin1")
    return b"\x93NUMPY\x01\x00" + len(raw).to_bytes(2, "little") + raw + data


def _npz(members) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


@pytest.fixture
def saved(tmp_path):
    path = tmp_path / "g.ge"
    save(_graph(), str(path))
    return path


def _edit_doc(src, dst, edit):
    """Copy a graph file with graph.json rewritten as raw text by ``edit(text)``."""
    content = _members(src)
    content["graph.json"] = edit(content["graph.json"].decode()).encode()
    return _pack(dst, content)


# ============================================================================ the writer
def test_atomic_write_replaces_and_leaves_nothing_behind(tmp_path):
    p = tmp_path / "a.txt"
    p.write_text("old")
    files.write_text(str(p), "new")
    assert p.read_text() == "new" and os.listdir(tmp_path) == ["a.txt"]


def test_temp_file_is_hidden_recognisable_and_unpredictable(tmp_path):
    p = str(tmp_path / "out.json")
    names = []
    for _ in range(2):
        with files.atomic_write(p) as f:
            f.write(b"{}")
            names.append([n for n in os.listdir(tmp_path) if n != "out.json"])
    assert all(len(n) == 1 and TEMP.match(n[0]) and n[0].startswith(".out.json.graphengine-") for n in names)
    assert names[0] != names[1]
    assert os.listdir(tmp_path) == ["out.json"]


def test_exception_while_writing_keeps_old_file_and_removes_temp(tmp_path):
    p = tmp_path / "a.txt"
    p.write_text("old")
    with pytest.raises(ZeroDivisionError):
        with files.atomic_write(str(p), "w") as f:
            f.write("partial")
            1 / 0
    assert p.read_text() == "old" and os.listdir(tmp_path) == ["a.txt"]


def test_new_files_get_umask_permissions_existing_files_keep_theirs(tmp_path):
    old = os.umask(0o027)
    try:
        save(_graph(), str(tmp_path / "g.ge"))
        files.write_npz(str(tmp_path / "o.npz"), {"a": np.zeros(2)})
        files.write_json(str(tmp_path / "r.json"), {})
    finally:
        os.umask(old)
    for name in ("g.ge", "o.npz", "r.json"):
        assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == 0o640, name
    os.chmod(tmp_path / "r.json", 0o600)
    files.write_json(str(tmp_path / "r.json"), {"a": 1})
    assert stat.S_IMODE(os.stat(tmp_path / "r.json").st_mode) == 0o600


def test_symlinks_are_never_followed(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("precious")
    out = tmp_path / "g.ge"
    # the old writer's predictable temp name, planted as a link to the victim
    os.symlink(victim, f"{out}.tmp{os.getpid()}")
    save(_graph(), str(out))
    assert victim.read_text() == "precious"
    # a target that is a link is replaced by a regular file; the link's target is untouched
    link = tmp_path / "link.json"
    os.symlink(victim, link)
    files.write_json(str(link), {"a": 1})
    assert victim.read_text() == "precious"
    assert not os.path.islink(link) and json.loads(link.read_text()) == {"a": 1}


def test_handlers_are_restored_and_threads_can_write(tmp_path):
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    save(_graph(), str(tmp_path / "a.ge"))
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before
    errors = []

    def write():
        try:
            save(_graph(), str(tmp_path / "b.ge"))
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)
    t = threading.Thread(target=write)
    t.start()
    t.join()
    assert not errors and load(str(tmp_path / "b.ge")).summary()["nodes"] == 3


@pytest.mark.parametrize("where, err, reason", [
    ("tempfile.mkstemp", errno.EROFS, "Read-only file system"),
    ("os.fsync", errno.ENOSPC, "No space left on device"),
    ("os.replace", errno.EACCES, "Permission denied"),
])
def test_os_errors_become_one_write_error_line(tmp_path, monkeypatch, where, err, reason):
    p = tmp_path / "g.ge"
    p.write_bytes(b"old")
    module, name = where.split(".")

    def fail(*a, **k):
        raise OSError(err, os.strerror(err))
    monkeypatch.setattr(sys.modules[module], name, fail)
    with pytest.raises(WriteError) as info:
        save(_graph(), str(p))
    _one_line(info.value, str(p), reason)
    monkeypatch.undo()
    assert p.read_bytes() == b"old" and os.listdir(tmp_path) == ["g.ge"]


def test_unwritable_places(tmp_path):
    for path, reason in [(tmp_path / "no" / "such" / "g.ge", "does not exist"), ("/proc/x.ge", "/proc/x.ge"),
                         (tmp_path, "is a directory")]:
        with pytest.raises(WriteError) as info:
            save(_graph(), str(path))
        _one_line(info.value, str(path), reason)


_CHILD = textwrap.dedent("""
    import sys, numpy as np
    from graphengine.ir import Graph, save
    g = Graph(); g.parameter("w", np.random.default_rng(1).normal(size=%d))
    print("ready", flush=True)
    while True:
        save(g, sys.argv[1])
""")


def _kill_during_save(tmp_path, sig, delay):
    path = tmp_path / "m.ge"
    save(_graph(), str(path))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    child = subprocess.Popen([sys.executable, "-c", _CHILD % 2_000_000, str(path)], stdout=subprocess.PIPE,
                             env=env)
    try:
        assert child.stdout.readline().strip() == b"ready"
        time.sleep(delay)
        child.send_signal(sig)
        rc = child.wait(timeout=60)
    finally:
        child.kill()
        child.wait()
    g = load(str(path))  # the old graph or the new one, never a broken file
    assert g.summary()["nodes"] in (1, 3)
    return rc, sorted(set(os.listdir(tmp_path)) - {"m.ge"})


@pytest.mark.parametrize("delay", [0.3, 0.9])
def test_sigterm_during_save_keeps_the_file_and_removes_the_temp(tmp_path, delay):
    rc, left = _kill_during_save(tmp_path, signal.SIGTERM, delay)
    assert rc == -signal.SIGTERM  # the signal still ends the process as it would have
    assert left == []


def test_sigint_during_save_keeps_the_file_and_removes_the_temp(tmp_path):
    rc, left = _kill_during_save(tmp_path, signal.SIGINT, 0.5)
    assert rc == -signal.SIGINT  # an uncaught KeyboardInterrupt, as without the writer's handler
    assert left == []


def test_kill_9_during_save_keeps_the_file(tmp_path):
    rc, left = _kill_during_save(tmp_path, signal.SIGKILL, 0.6)
    assert rc == -signal.SIGKILL
    assert all(TEMP.match(n) for n in left), left  # a leftover temp file is recognisable


# ============================================================================ output paths
def test_output_equal_to_an_input_is_refused(capsys, saved, tmp_path):
    before = saved.read_bytes()
    _cli_error(capsys, "run", saved, "--input", "x=[[0,0,0,0],[0,0,0,0]]", "-o", saved, match="is also an input")
    link = tmp_path / "link.ge"
    os.symlink(saved, link)
    _cli_error(capsys, "grad", saved, "--input", "x=[[0,0,0,0],[0,0,0,0]]", "--qoi", "y[0,0]", "-o", link,
               match="is also an input")
    feeds = tmp_path / "f.npz"
    np.savez(feeds, x=np.zeros((2, 4)))
    _cli_error(capsys, "analyze", saved, "--inputs", feeds, "--qoi", "y[0,0]", "-o", tmp_path / "." / "f.npz",
               match="is also an input")
    assert saved.read_bytes() == before
    with pytest.raises(WriteError, match="is also an input"):
        files.check_output(str(tmp_path / "sub" / ".." / "g.ge"), inputs=[str(saved)])


def test_cli_write_failures_are_one_line(capsys, saved, monkeypatch):
    _cli_error(capsys, "run", saved, "--input", "x=[[0,0,0,0],[0,0,0,0]]", "-o", "/proc/out.npz",
               match="/proc/out.npz")

    def full(*a, **k):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(os, "fsync", full)
    _cli_error(capsys, "analyze", saved, "--input", "x=[[0,0,0,0],[0,0,0,0]]", "--qoi", "y[0,0]",
               "-o", saved.parent / "r.json", match="No space left on device")


@pytest.mark.parametrize("exc, needle", [
    (PermissionError(errno.EACCES, "Permission denied", "secret.ge"), "secret.ge: Permission denied"),
    (OSError(errno.EROFS, "Read-only file system", "/ro/x"), "/ro/x: Read-only file system"),
    (FileNotFoundError(errno.ENOENT, "No such file or directory", "gone"), "gone: No such file"),
    (MemoryError(), "out of memory"),
])
def test_cli_maps_os_and_memory_errors_to_one_line(capsys, saved, monkeypatch, exc, needle):
    cli_main = sys.modules["graphengine.cli.main"]

    def boom(path):
        raise exc
    monkeypatch.setattr(cli_main, "_load_graph", boom)
    _cli_error(capsys, "info", saved, match=needle)


def test_cli_error_lines_are_capped(capsys, tmp_path):
    p = tmp_path / "long.ge"
    g = Graph()
    g.input("x", (2,))
    save(g, str(p))
    err = _cli_error(capsys, "grad", p, "--qoi", "x[0]", "--input", "x=[1, 2]", "--wrt", "n" * 5000)
    assert len(err) < 1100 and "more characters" in err


# ============================================================================ what may be read
@pytest.fixture
def fifo(tmp_path):
    path = tmp_path / "fifo"
    os.mkfifo(path)
    return path


def test_devices_fifos_directories_are_refused_without_blocking(capsys, saved, fifo, tmp_path):
    start = time.monotonic()
    _refused("/dev/zero", "not a regular file")
    _refused(fifo, "not a regular file")
    _refused(tmp_path, "is a directory")
    _cli_error(capsys, "info", "/dev/zero", match="not a regular file")
    _cli_error(capsys, "info", fifo, match="not a regular file")
    _cli_error(capsys, "run", saved, "--inputs", "/dev/zero", match=("--inputs /dev/zero", "not a regular file"))
    _cli_error(capsys, "run", saved, "--inputs", fifo, match="not a regular file")
    assert time.monotonic() - start < 10


def test_graph_json_bomb_is_stopped_while_streaming(saved, tmp_path):
    content = _members(saved)
    bomb = _pack(tmp_path / "bomb.ge", {**content, "graph.json": b" " * (3 << 20)})
    assert os.path.getsize(bomb) < 100_000
    with files.limits(max_json_bytes=1 << 20):
        _refused(bomb, "graph.json", "max_json_bytes")
        # a member whose header understates its size still cannot inflate past what it declares
        lying = tmp_path / "lying.ge"
        data = bytearray(open(bomb, "rb").read())
        for sig, off in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):  # uncompressed size fields
            i = data.index(sig)
            data[i + off:i + off + 4] = (1000).to_bytes(4, "little")
        lying.write_bytes(bytes(data))
        _refused(lying)
    assert load(str(saved)).summary()["nodes"] == 3  # limits restored


def test_arrays_bomb_and_huge_declared_array(saved, tmp_path):
    content = _members(saved)
    bomb = _pack(tmp_path / "b.ge", {**content, "arrays.npz": b"\0" * (3 << 20)})
    with files.limits(max_member_bytes=1 << 20):
        _refused(bomb, "arrays.npz", "max_member_bytes")
    huge = _npy("{'descr': '<f8', 'fortran_order': False, 'shape': (1000000000000, 4), }", b"\0" * 64)
    p = _pack(tmp_path / "h.ge", {**content, "arrays.npz": _npz({"n1.npy": huge})})
    _refused(p, "member 'n1.npy'", "[1000000000000, 4] float64", "29.1 TiB", "max_member_bytes")
    # two arrays each under the member limit, together over the memory budget
    two = _npz({"n1.npy": _npy("{'descr': '<f8', 'fortran_order': False, 'shape': (100, ), }", bytes(800)),
                "n9.npy": _npy("{'descr': '<f8', 'fortran_order': False, 'shape': (100, ), }", bytes(800))})
    with files.limits(memory_budget=1000):
        _refused(_pack(tmp_path / "t.ge", {**content, "arrays.npz": two}), "memory budget")


@pytest.mark.parametrize("header, needle", [
    ("{'descr': '<f8', 'fortran_order': False, 'shape': (16, 4", "malformed .npy header"),
    ("{'descr': '<f8', 'fortran_order': False, 'shape': (-1, 4), }", "non-negative integers"),
    ("{'descr': '<f8', 'fortran_order': False, 'shape': (2.5,), }", "non-negative integers"),
    ("{'descr': 'nonsense', 'fortran_order': False, 'shape': (2,), }", "unknown dtype"),
    ("{'descr': '<f8', 'fortran_order': 'yes', 'shape': (2,), }", "fortran_order"),
    ("{'descr': '<f8', 'shape': (2,), }", "descr, fortran_order and shape"),
    ("__import__('os').system('false')", "malformed .npy header"),
    ("{'descr': '|O', 'fortran_order': False, 'shape': (1,), }", "allow_pickle=False"),
])
def test_hostile_npy_headers(capsys, saved, tmp_path, header, needle):
    content = _members(saved)
    member = _npy(header, bytes(64))
    p = _pack(tmp_path / "h.ge", {**content, "arrays.npz": _npz({"n1.npy": member})})
    _refused(p, "arrays.npz", "member 'n1.npy'", needle)
    feeds = tmp_path / "f.npz"
    feeds.write_bytes(_npz({"x.npy": member}))
    err = _cli_error(capsys, "run", saved, "--inputs", feeds, match=(f"--inputs {feeds}", "member 'x.npy'", needle))
    with pytest.raises(FeedError):
        with files.open_regular(str(feeds), "f", FeedError) as f:
            files.read_npz(f, "f", FeedError)
    assert err


def test_npz_structure_errors(capsys, saved, tmp_path):
    content = _members(saved)
    plain = io.BytesIO()
    np.save(plain, np.zeros((16, 4)))
    _refused(_pack(tmp_path / "p.ge", {**content, "arrays.npz": plain.getvalue()}), "arrays.npz", "single array")
    _refused(_pack(tmp_path / "m.ge", {**content, "arrays.npz": _npz({"n1": b"raw bytes"})}),
             "member 'n1' is not a .npy array")
    trunc = _npz({"n1.npy": _npy("{'descr': '<f8', 'fortran_order': False, 'shape': (8,), }", bytes(10))})
    _refused(_pack(tmp_path / "t.ge", {**content, "arrays.npz": trunc}), "truncated array data")
    extra = _npz({"n1.npy": _npy("{'descr': '<f8', 'fortran_order': False, 'shape': (1,), }", bytes(16))})
    _refused(_pack(tmp_path / "e.ge", {**content, "arrays.npz": extra}), "trailing bytes")
    feeds = tmp_path / "f.npz"
    feeds.write_bytes(_npz({"x.npy": _npy("{'descr': '<f8', 'fortran_order': False, 'shape': (16, 4")}))
    _cli_error(capsys, "run", saved, "--inputs", feeds, match="malformed .npy header")


def test_npz_reader_matches_numpy(tmp_path):
    arrays = {"f": np.arange(12.0).reshape(3, 4), "fortran": np.asfortranarray(np.arange(6).reshape(2, 3)),
              "b": np.array([True, False]), "scalar": np.array(2.5, np.float32), "empty": np.zeros((0, 3)),
              "big_endian": np.arange(3, dtype=">i4"), "c": np.array([1 + 2j])}
    p = tmp_path / "a.npz"
    np.savez(p, **arrays)
    with files.open_regular(str(p), "a", ValueError) as f:
        got = files.read_npz(f, "a", ValueError)
    assert sorted(got) == sorted(arrays)
    for k, v in arrays.items():
        assert got[k].dtype == v.dtype and got[k].shape == v.shape and np.array_equal(got[k], v), k
    assert got["fortran"].flags.f_contiguous and got["f"].flags.writeable


@pytest.mark.parametrize("raw, needle", [
    ('"id": Infinity', "id must be a non-negative integer"),
    ('"id": NaN', "id must be a non-negative integer"),
    ('"id": 1e400', "id must be a non-negative integer"),
    ('"id": 1.0', "id must be a non-negative integer"),
    ('"shape": [Infinity, 4]', "shape entry"),
    ('"shape": [NaN, 4]', "shape entry"),
    ('"shape": [1e400, 4]', "shape entry"),
    ('"shape": [-2, 4]', "shape entry"),
    ('"shape": [2.5, 4]', "shape entry"),
    ('"shape": 7', "shape must be a list"),
])
def test_non_finite_and_non_integer_ids_and_shapes(saved, tmp_path, raw, needle):
    key, value = raw.split(": ")

    def edit(text):
        doc = json.loads(text)
        doc["nodes"][0][key.strip('"')] = "@@"
        return json.dumps(doc).replace('"@@"', value)
    _refused(_edit_doc(saved, tmp_path / "b.ge", edit), "node entry 0", needle)


def test_declared_shapes_over_the_memory_budget_are_refused_before_allocating(capsys, tmp_path):
    g = Graph()
    x = g.input("x", (10 ** 12, 4))
    g.mark_output(g.call("exp", x, name="y"))
    p = tmp_path / "huge.ge"
    save(g, str(p))  # writing declares nothing: fine
    msg = _refused(p, "node 0 'x' (op input)", "[1000000000000, 4] float64", "29.1 TiB", "memory budget")
    assert "memory_budget" in msg
    _cli_error(capsys, "grad", p, "--qoi", "y[0,0]", match="memory budget")
    _cli_error(capsys, "analyze", p, "--qoi", "y[0,0]", match="memory budget")
    # many tensors that each fit but together do not
    g = Graph()
    v = g.input("v", (1000,))
    for i in range(20):
        v = g.call("exp", v)
    save(g, str(p))
    with files.limits(memory_budget=100_000):
        _refused(p, "tensors declare", "memory budget")
    assert load(str(p)).summary()["nodes"] == 21


def test_long_cycles_give_short_lines(tmp_path):
    n = 200_000
    nodes = [{"id": 0, "op": "exp", "inputs": [n - 1], "attrs": {}, "shape": [1], "dtype": "float64", "name": "c0"}]
    nodes += [{"id": i, "op": "exp", "inputs": [i - 1], "attrs": {}, "shape": [1], "dtype": "float64",
               "name": f"c{i}"} for i in range(1, n)]
    doc = {"format": "graphengine.graph", "version": 1, "meta": {}, "outputs": [], "nodes": nodes}
    p = _pack(tmp_path / "cycle.ge", {"graph.json": json.dumps(doc), "arrays.npz": _npz({})})
    msg = _refused(p, "cycle of 200,000 nodes", "c0 -> c1", "more", cls=GraphValidationError)
    assert len(msg) < 400


def test_library_errors_are_graphengine_errors():
    assert issubclass(WriteError, GraphEngineError) and issubclass(GraphFormatError, GraphEngineError)
    with pytest.raises(TypeError, match="no limit named"):
        with files.limits(max_bytes=1):
            pass


def test_cycle_search_agrees_with_networkx():
    import networkx as nx
    rng = np.random.default_rng(0)
    for _ in range(200):
        n = int(rng.integers(2, 9))
        g = Graph()
        for i in range(n):
            g.input(f"v{i}", (1,))
        for node in g.nodes:
            node.inputs = tuple(int(j) for j in rng.integers(0, n, size=int(rng.integers(0, 3))))
        start = int(rng.integers(n))
        cycle = g._cycle_from(start)
        G = nx.DiGraph()
        G.add_nodes_from(range(n))
        G.add_edges_from((i, node.id) for node in g.nodes for i in node.inputs)
        try:
            nx.find_cycle(G, source=start)
            has = True
        except nx.NetworkXNoCycle:
            has = False
        assert (cycle is not None) == has
        if cycle:
            assert all(G.has_edge(a, b) for a, b in zip(cycle, cycle[1:] + cycle[:1])), cycle
