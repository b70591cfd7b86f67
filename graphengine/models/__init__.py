"""Models built directly in the IR, and where to find packaged checkpoints.

- :mod:`graphengine.models.bert`: BERT from Hugging Face-named numpy weights (every head), from a
  checkpoint directory or from an in-memory ``transformers`` model.
- :mod:`graphengine.models.mlp`: a multi-layer perceptron.
- :mod:`graphengine.models.synthetic`: layered DAGs with known path statistics.
- :mod:`graphengine.models.minilm`: the locator of the packaged all-MiniLM-L6-v2 checkpoint.

>>> from graphengine.models import BertConfig, MLPConfig
>>> BertConfig.mini().hidden_size, MLPConfig().sizes
(32, (4, 16, 16, 3))
"""

from .bert import (BERT_HEADS, BertConfig, bert_feeds, bert_weight_shapes, build_bert, build_bert_from_hf,
                   mask_fill_value, random_bert_weights, read_hf_checkpoint, word_embedding_lookup)
from .minilm import minilm_path, minilm_unavailable
from .mlp import MLPConfig, build_mlp, random_mlp_weights

__all__ = ["BERT_HEADS", "BertConfig", "bert_feeds", "bert_weight_shapes", "build_bert", "build_bert_from_hf",
           "mask_fill_value", "random_bert_weights", "read_hf_checkpoint", "word_embedding_lookup",
           "minilm_path", "minilm_unavailable", "MLPConfig", "build_mlp", "random_mlp_weights"]
