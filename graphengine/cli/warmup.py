"""``graphengine warmup``: compile every CPU kernel family once, ahead of the first analysis.

One backward pass per semiring on a tiny BERT-style block (token embedding lookup, layer norm,
attention with softmax, GELU feed-forward: every Jacobian structure the kernels handle), on the
``cpu`` device; each line gives the semiring, its kernel family and the seconds it took.
Every operation runs its kernel, however small (:func:`graphengine.kernels.dispatch.kernels_for_all`;
an analysis sends operations below ``min_work`` to the numpy reference, which needs no
compiling). Compiled kernels land in the on-disk cache (:mod:`graphengine.kernels.cache`), so
later processes load them instead of compiling; a second ``warmup`` only loads them and is fast.
The float32 specialisations of the linear families' kernels compile only when asked for
(``--semiring real:float32,entropy:float32``), as they do in an analysis.

>>> import io
>>> times = warmup(io.StringIO(), semirings=["real"])
>>> list(times)
['real']
"""

from __future__ import annotations

import time
from typing import Dict, Optional, Sequence

HELP = "compile every CPU kernel family now (cached on disk for later runs)"
PARAMETRIC_EXAMPLES = ("kbest:2", "kbestabs:2")


def _block():
    import numpy as np

    from ..models import BertConfig, bert_feeds, build_bert, random_bert_weights
    cfg = BertConfig(vocab_size=11, hidden_size=8, num_layers=1, num_heads=2, intermediate_size=16, max_position=8)
    graph = build_bert(cfg, random_bert_weights(cfg, seed=0, head=None), batch=1, seq_len=3, head=None)
    return graph, bert_feeds(np.array([[1, 5, 2]]))


def warmup(out, semirings: Optional[Sequence[str]] = None) -> Dict[str, float]:
    """Run one backward per semiring (default: every registered one, parametric ones with K=2)
    on the cpu device, printing a line per semiring to ``out``; seconds per semiring."""
    from ..engine import backward, forward
    from ..kernels.cache import cache_dir
    from ..kernels.dispatch import kernels_for_all
    from ..semirings import SEMIRINGS, get_semiring
    names = list(semirings) if semirings else list(SEMIRINGS) + list(PARAMETRIC_EXAMPLES)
    graph, feeds = _block()
    acts = forward(graph, feeds)
    out.write(f"kernel cache: {cache_dir() or 'numba default locations'}\n")
    times = {}
    start = time.perf_counter()
    for name in names:
        t = time.perf_counter()
        with kernels_for_all("cpu"):
            backward(graph, acts, "last_hidden_state[0,1,2]", semirings=[name], retain="all", device="cpu")
        times[name] = time.perf_counter() - t
        out.write(f"  {name:<12} ({get_semiring(name).kernel or 'reference'} kernels)  {times[name]:.2f} s\n")
    out.write(f"warm: {len(names)} semirings in {time.perf_counter() - start:.2f} s\n")
    return times


def add_parser(sub) -> None:
    p = sub.add_parser("warmup", help=HELP, description=HELP + ".")
    p.add_argument("--semiring", metavar="LIST", help="comma-separated semirings (default: all)")


def run(args, out) -> int:
    names = [s.strip() for s in args.semiring.split(",") if s.strip()] if args.semiring else None
    if names:
        from ..errors import GraphEngineError
        from ..semirings import get_semiring
        for n in names:
            try:
                get_semiring(n)
            except ValueError as e:
                raise GraphEngineError(f"--semiring: {e}") from None
    warmup(out, names)
    return 0
