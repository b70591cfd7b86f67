"""Tiny random-weight Hugging Face checkpoints of each named family, written with
``save_pretrained`` next to a word-level ``tokenizer.json`` built with ``tokenizers``.

Every family shares one vocabulary (``<s> <pad> </s> <unk> <mask>`` then words); encoders wrap
a sentence in ``<s> ... </s>``, decoders take it as is. Weights are redrawn from N(0, 0.3²) so
that attention is far from uniform and every path carries weight.
"""

import numpy as np
import torch
import transformers
from tokenizers import Tokenizer, models, pre_tokenizers, processors

SPECIAL = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
WORDS = ["the", "cat", "dog", "sat", "is", "on", "table", "a", "keys", "are", "here", "to", "cabinet", "."]
VOCAB = 40
COMMON = dict(vocab_size=VOCAB, bos_token_id=0, pad_token_id=1, eos_token_id=2)
LM = dict(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32)

# family -> (config, LM head, text, target, foil)
FAMILIES = {
    "bert": (lambda: transformers.BertConfig(**COMMON, **LM, max_position_embeddings=16), "mlm",
             "the cat <mask> on the table", "sat", "is"),
    "distilbert": (lambda: transformers.DistilBertConfig(**COMMON, dim=16, n_layers=2, n_heads=2, hidden_dim=32,
                                                         max_position_embeddings=16), "mlm",
                   "the cat <mask> on the table", "sat", "is"),
    "roberta": (lambda: transformers.RobertaConfig(**COMMON, **LM, max_position_embeddings=20), "mlm",
                "the cat <mask> on the table", "sat", "is"),
    "gpt2": (lambda: transformers.GPT2Config(**COMMON, n_embd=16, n_layer=2, n_head=2, n_positions=16), "causal_lm",
             "the cat sat on the", "table", "dog"),
    "gpt_neox": (lambda: transformers.GPTNeoXConfig(**COMMON, **LM, max_position_embeddings=16, rotary_pct=0.5),
                 "causal_lm", "the cat sat on the", "table", "dog"),
    "llama": (lambda: transformers.LlamaConfig(**COMMON, **dict(LM, num_attention_heads=4), num_key_value_heads=2,
                                               max_position_embeddings=16), "causal_lm",
              "the cat sat on the", "table", "dog"),
}
DECODERS = ("gpt2", "gpt_neox", "llama")


def tokenizer(encoder: bool) -> Tokenizer:
    vocab = {w: i for i, w in enumerate(SPECIAL + WORDS)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    if encoder:
        tok.post_processor = processors.TemplateProcessing(single="<s> $A </s>", special_tokens=[("<s>", 0),
                                                                                              ("</s>", 2)])
    return tok


def auto_class(head):
    return {"mlm": transformers.AutoModelForMaskedLM, "causal_lm": transformers.AutoModelForCausalLM,
            None: transformers.AutoModel}[head]


def write_family(family: str, path, seed: int = 0, safetensors: bool = True) -> str:
    """Write a random ``family`` checkpoint with its LM head and the tokenizer into ``path``."""
    make_config, head, *_ = FAMILIES[family]
    torch.manual_seed(seed)
    config = make_config()
    model = auto_class(head).from_config(config)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.3)
    if safetensors:
        model.save_pretrained(str(path))
    else:  # the legacy layout: config.json + a torch.save'd state dict
        config.save_pretrained(str(path))
        torch.save(model.state_dict(), str(path / "pytorch_model.bin"))
    tokenizer(family not in DECODERS).save(str(path / "tokenizer.json"))
    return str(path)


def reference(path, head, dtype=torch.float32):
    """transformers' own loader: the model graphengine is compared with."""
    model = auto_class(head).from_pretrained(path, attn_implementation="eager")
    if hasattr(model.config, "use_cache"):
        model.config.use_cache = False
    return model.to(dtype).eval()


def token_embedding(model):
    return model.get_input_embeddings()


class Float64Everywhere(torch.overrides.TorchFunctionMode):
    """Run a float64 model with its float32 islands (``.to(torch.float32)``, ``dtype=torch.float32``)
    computed in float64: the torch oracle for graphs exported with ``promote_float32``."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func is torch.Tensor.float:
            func = torch.Tensor.double
        kwargs = {k: (torch.float64 if v is torch.float32 else v) for k, v in (kwargs or {}).items()}
        args = tuple(torch.float64 if a is torch.float32 else a for a in args)
        return func(*args, **kwargs)


def export_in_float64(model, kwargs):
    """An independent float64 oracle: ``torch.export`` the float64 ``model`` called with
    ``kwargs`` and rewrite its FX graph so that every ``torch.float32`` argument (``.to(float32)``,
    ``softmax(..., dtype=float32)``, ``zeros(dtype=float32)``, the export's dtype assertions) is
    ``torch.float64``. Returns ``(module, rewritten)``: the program as a callable module (which
    torch.autograd differentiates) and the number of arguments changed."""
    ep = torch.export.export(model.eval(), (), kwargs=kwargs)
    rewritten = 0

    def widen(value):
        nonlocal rewritten
        if value is torch.float32:
            rewritten += 1
            return torch.float64
        return value
    for node in ep.graph_module.graph.nodes:
        node.args = tuple(widen(a) for a in node.args)
        node.kwargs = {k: widen(v) for k, v in node.kwargs.items()}
    ep.graph_module.recompile()
    return ep.module(), rewritten


def rel_err(got, want) -> float:
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    return float(np.max(np.abs(got - want)) / np.max(np.abs(want)))
