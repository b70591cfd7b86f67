"""Reading the examples of a dataset run from a TSV or JSON-lines file.

- ``.tsv``: tab-separated; the first line names the columns, unless ``columns`` names them
  (then every line is data, e.g. the agreement files of ``../shared/data/sva/``);
- ``.jsonl``: one JSON object per line; values are strings or numbers (``input_ids``, a list of
  token ids, is passed through for graph files without a tokenizer).

An example's id is its ``id`` column when there is one, else its 0-based position among the
data lines; ids must be unique. ``limit`` keeps the first N examples.

>>> import tempfile, os
>>> p = os.path.join(tempfile.mkdtemp(), "d.tsv")
>>> _ = open(p, "w").write("text\\tlabel\\nthe cat\\t1\\nthe dogs\\t0\\n")
>>> [(e.id, e.fields["text"]) for e in read_examples(p)]
[('0', 'the cat'), ('1', 'the dogs')]
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence

from ..errors import GraphEngineError

__all__ = ["Example", "read_examples", "DataError"]


class DataError(GraphEngineError):
    """A data file cannot be read: missing, not UTF-8, malformed line, repeated id."""


@dataclass
class Example:
    index: int
    id: str
    fields: Dict[str, Any]

    def payload(self) -> Dict[str, Any]:
        return {"index": self.index, "id": self.id, "fields": self.fields}


def read_examples(path: str, columns: Optional[Sequence[str]] = None, limit: Optional[int] = None,
                  id_column: str = "id") -> List[Example]:
    """The examples of ``path`` (see the module docstring); problems are one :class:`DataError`
    line naming the file and line."""
    ext = os.path.splitext(path)[1].lower()
    if ext not in (".tsv", ".jsonl"):
        raise DataError(f"{path}: expected a .tsv or .jsonl file")
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text (byte {e.start})") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e})") from None
    rows: List[Dict[str, Any]] = []
    numbers: List[int] = []
    if ext == ".tsv":
        header = list(columns) if columns else None
        for k, line in enumerate(lines, 1):
            if not line.strip():
                continue
            cells = line.split("\t")
            if header is None:
                header = cells
                if len(set(header)) != len(header):
                    raise DataError(f"{path}:{k}: a column name appears twice in the header")
                continue
            if len(cells) != len(header):
                raise DataError(f"{path}:{k}: {len(cells)} tab-separated columns, expected {len(header)} "
                                f"({', '.join(header)})")
            rows.append(dict(zip(header, cells)))
            numbers.append(k)
    else:
        for k, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except ValueError as e:
                raise DataError(f"{path}:{k}: not a JSON object ({e.msg})") from None
            if not isinstance(obj, dict):
                raise DataError(f"{path}:{k}: not a JSON object")
            rows.append(obj)
            numbers.append(k)
    if limit is not None:
        rows, numbers = rows[:limit], numbers[:limit]
    out: List[Example] = []
    seen: Dict[str, int] = {}
    for i, (row, k) in enumerate(zip(rows, numbers)):
        rid = str(row[id_column]) if id_column in row else str(i)
        if rid in seen:
            raise DataError(f"{path}:{k}: id {rid!r} also on line {seen[rid]}; ids must be unique")
        seen[rid] = k
        out.append(Example(i, rid, row))
    if not out:
        raise DataError(f"{path}: no examples")
    return out
