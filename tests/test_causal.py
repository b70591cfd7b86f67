"""Causal checks of a path on a planted heavy path, against numpy re-computation of the linear
layers with the path's units replaced."""

import numpy as np
import pytest

from graphengine.analysis.causal import CausalError, causal_check, path_effect
from graphengine.engine import backward, forward
from graphengine.errors import GraphEngineError
from graphengine.models.synthetic import output_qoi, planted_path
from graphengine.paths import best_input_path


def _numpy_qoi(weights, x, replace):
    """Σ of the outputs of the linear layers, with ``replace[k](h_k)`` applied to layer k."""
    h = replace[0](x.reshape(-1).copy())
    for k, w in enumerate(weights, 1):
        h = replace[k](w @ h)
    return float(h.sum())


@pytest.fixture(scope="module", params=[0, 1])
def planted(request):
    p = planted_path(3, 4, np.random.default_rng(request.param))
    q = output_qoi(p.graph, p.output)
    acts = forward(p.graph, p.feeds)
    best = best_input_path(backward(p.graph, acts, q, ["maxabs"]), "maxabs")
    assert tuple(st.element[1] for st in best.steps) == p.path   # the planted path is found
    return p, q, best


def _setter(unit, value):
    def f(h):
        h[unit] = value(h) if callable(value) else value
        return h
    return f


def test_effects_equal_numpy_recomputation(planted):
    p, q, best = planted
    x = p.feeds["x"]
    ident = [lambda h: h] * len(p.path)
    keep = ident[-1]   # the last step is the QoI (a sum over h3): never replaced
    clean = _numpy_qoi(p.weights, x, ident)
    # every element the path visits is replaced, the QoI (the sum) excepted
    zero = [_setter(u, 0.0) for u in p.path[:-1]] + [keep]
    assert abs(path_effect(p.graph, p.feeds, q, best, "zero") - (_numpy_qoi(p.weights, x, zero) - clean)) \
        <= 1e-9 * abs(clean)
    acts = forward(p.graph, p.feeds)
    names = ["x", "h1", "h2", "h3"]
    mean = [_setter(u, float(np.mean(acts[p.graph[n].id]))) for u, n in zip(p.path[:-1], names)] + [keep]
    assert abs(path_effect(p.graph, p.feeds, q, best, "mean") - (_numpy_qoi(p.weights, x, mean) - clean)) \
        <= 1e-9 * abs(clean)
    x2 = np.random.default_rng(5).normal(size=x.shape)
    cf_acts = forward(p.graph, {"x": x2})
    cf = [_setter(u, float(cf_acts[p.graph[n].id].reshape(-1)[u])) for u, n in zip(p.path[:-1], names)] + [keep]
    got = path_effect(p.graph, p.feeds, q, best, "counterfactual", counterfactual={"x": x2})
    assert abs(got - (_numpy_qoi(p.weights, x, cf) - clean)) <= 1e-9 * abs(clean)


def test_the_planted_path_beats_disjoint_random_paths_and_tops_the_kbest(planted):
    p, q, best = planted
    check = causal_check(p.graph, p.feeds, q, best, n_random=60, k=4, seed=3)
    assert check.kbest_rank == 1 and len(check.kbest_effects) == 4
    assert len(check.random_effects) == 60
    # random paths sharing no unit with the planted one cannot switch off its heavy edges
    from graphengine.paths import PathSampler
    sampler = PathSampler(p.graph, forward(p.graph, p.feeds), q, semiring="count")
    rng = np.random.default_rng(3)
    disjoint = [r for r in sampler.sample("x", (), 200, rng=rng)
                if all(st.element[1] != u for st, u in zip(r.steps, p.path))]
    assert disjoint
    for r in disjoint[:20]:
        assert abs(path_effect(p.graph, p.feeds, q, r)) < abs(check.effect) / 5
    assert check.percentile >= np.mean([abs(e) <= abs(check.effect) for e in check.random_effects]) - 1e-12
    assert 0.5 < check.percentile <= 1.0
    assert set(check.to_dict()) >= {"effect", "percentile_among_random", "rank_among_kbest"}


def test_bad_modes_and_interventions_are_one_line_errors(planted):
    p, q, best = planted
    with pytest.raises(CausalError, match="unknown intervention mode"):
        path_effect(p.graph, p.feeds, q, best, "shuffle")
    with pytest.raises(CausalError, match="counterfactual"):
        path_effect(p.graph, p.feeds, q, best, "counterfactual")
    with pytest.raises(GraphEngineError, match="shape"):
        forward(p.graph, p.feeds, {"h1": lambda v: v[:, :2]})
    with pytest.raises(GraphEngineError, match="nope"):
        forward(p.graph, p.feeds, {"nope": lambda v: v})
