"""Exact path sampling: χ² against brute-force enumeration, and sampled branch shares converge
to the exact ones."""

from collections import Counter

import numpy as np
import pytest
from scipy.stats import chisquare

from graphengine.analysis.kqv import path_crossings
from graphengine.analysis.shares import branch_points, branch_shares
from graphengine.engine import forward, select, weighted
from graphengine.models import BertConfig, bert_feeds, build_bert, random_bert_weights
from graphengine.paths import PathSampler, SamplingError

from oracle import enumerate_paths, scalar_graph
from test_oracle import random_program

N = 3000
ALPHA = 1e-4   # generous: the seeds are fixed, so a pass is deterministic; a real bias gives p ≈ 0


def _vertices(graph, path):
    return tuple((st.node, int(np.ravel_multi_index(st.element, graph.nodes[st.node].shape)) if st.element else 0)
                 for st in path.steps)


def _chi2(observed: Counter, expected: dict, n: int) -> float:
    """p-value of the sampled vertex sequences against the expected probabilities (bins with
    fewer than 5 expected draws pooled into one)."""
    assert set(observed) <= set(expected), "sampled a sequence that is not an enumerated path"
    keys = sorted(expected, key=lambda k: -expected[k])
    big = [k for k in keys if expected[k] * n >= 5]
    small = [k for k in keys if expected[k] * n < 5]
    f_obs = [observed[k] for k in big] + ([sum(observed[k] for k in small)] if small else [])
    f_exp = [expected[k] * n for k in big] + ([sum(expected[k] for k in small) * n] if small else [])
    if len(f_obs) < 2:
        return 1.0
    f_exp = np.array(f_exp) * (sum(f_obs) / sum(f_exp))
    return float(chisquare(f_obs, f_exp).pvalue)


def _program(seed):
    rng = np.random.default_rng(seed)
    g, feeds, out = random_program(rng)
    acts = forward(g, feeds)
    coef = np.zeros(g[out].shape)
    coef.flat[rng.choice(coef.size, size=min(3, coef.size), replace=False)] = rng.normal(size=min(3, coef.size))
    sg = scalar_graph(g, acts)
    q = g[out]
    paths = enumerate_paths(sg, {(q.id, int(i)): float(coef.flat[i]) for i in np.nonzero(coef.reshape(-1))[0]})
    return g, acts, weighted(out, coef), paths


@pytest.mark.parametrize("seed", [1, 3, 8])
@pytest.mark.parametrize("semiring,component,keep,mass", [
    ("absolute", 0, lambda p: p != 0, abs),
    ("signedmass", "Z+", lambda p: p > 0, lambda p: p),
    ("signedmass", "Z-", lambda p: p < 0, lambda p: -p),
    ("count", 0, lambda p: True, lambda p: 1.0),
])
def test_samples_follow_the_enumerated_distribution(seed, semiring, component, keep, mass):
    g, acts, qoi, paths = _program(seed)
    sampler = PathSampler(g, acts, qoi, semiring=semiring)
    x = g["x"]
    for e in range(x.size):
        ps = [(p, seq) for p, seq in paths[(x.id, e)] if keep(p)]
        if len({seq for _, seq in ps}) < 2:
            continue
        expected = Counter()
        for p, seq in ps:
            expected[seq] += mass(p)
        total = sum(expected.values())
        expected = {k: v / total for k, v in expected.items()}
        drawn = sampler.sample("x", np.unravel_index(e, x.shape), N, seed=seed * 100 + e, component=component)
        observed = Counter(_vertices(g, d) for d in drawn)
        assert _chi2(observed, expected, N) > ALPHA, f"x[{e}]: samples do not follow the {semiring} distribution"
        products = {seq: p for p, seq in ps}
        for d in drawn[:50]:   # the recorded weight is the path's product (one of the parallel edges')
            assert keep(d.weight)
            if semiring == "absolute":
                assert any(abs(d.weight - p) <= 1e-9 * max(1, abs(p)) for p, s in ps if s == _vertices(g, d)), \
                    (d.weight, products[_vertices(g, d)])
        return
    pytest.skip("no element with two distinct paths of this kind")


def test_sampled_branch_shares_converge_to_the_exact_shares():
    cfg = BertConfig.mini(num_layers=2, hidden_size=4, num_heads=2, intermediate_size=4)
    g = build_bert(cfg, random_bert_weights(cfg, 1, head="classification", std=0.7), 1, 3, head="classification")
    acts = forward(g, bert_feeds(np.array([[5, 2, 7]])))
    qoi = select("logits", (0, 1))
    exact = branch_shares(g, acts, qoi)
    points = branch_points(g)
    sampler = PathSampler(g, acts, qoi)
    n = 1000
    for t in (0, 2):
        drawn = sampler.sample(points[0].node, (0, t), n, seed=t)
        crossings = [path_crossings(d, points) for d in drawn]
        for j, col in enumerate(exact.columns):
            layer, branch = col[1:].split(".", 1)
            k = next(i for i, p in enumerate(points) if p.layer == int(layer) and branch in p.branches.values())
            freq = np.mean([c[k] is not None and c[k][0] == branch for c in crossings])
            p = exact.share[0, t, j]
            assert abs(freq - p) <= 5 * np.sqrt(p * (1 - p) / n) + 1e-3, (t, col, freq, p)
        lengths = np.array([len(d.steps) - 1 for d in drawn])
        assert abs(lengths.mean() - exact.length_mean[0, t]) <= 5 * np.sqrt(exact.length_var[0, t] / n) + 1e-3


def test_bad_requests_are_refused():
    g, acts, qoi, _ = _program(0)
    for bad in ("real", "max", "log"):
        with pytest.raises(SamplingError, match="not a sum of non-negative"):
            PathSampler(g, acts, qoi, semiring=bad)
    s = PathSampler(g, acts, qoi)
    with pytest.raises(SamplingError, match="out of range"):
        s.sample("x", (7, 0))
    with pytest.raises(SamplingError, match="component"):
        s.sample("x", (0, 0), component="Z+")
