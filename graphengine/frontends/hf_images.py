"""Image inputs for :func:`graphengine.frontends.hf.from_hf_dir`: the ``pixel_values`` a vision
model (ViT, or any ``AutoModel`` / ``AutoModelForImageClassification`` directory transformers
can build) is exported at, and the label QoI of a classifier.

Two ways to give the picture, which never mix:

- ``image``: a picture to preprocess — a PNG/JPEG/... file read with Pillow, a ``.npy`` file of
  raw pixels (``[H, W, C]`` or ``[C, H, W]``, read without pickle), or such an array / a PIL
  image from Python. It goes through the directory's own image processor
  (``preprocessor_config.json``, ``AutoImageProcessor.from_pretrained(dir,
  local_files_only=True)``: resizing, rescaling, normalization as the checkpoint was trained).
  A directory without a processor is refused: there is no way to know its preprocessing.
- ``pixels``: ``pixel_values`` already preprocessed, ``[N, C, H, W]`` (a ``.npy`` file or an
  array), fed as they are (converted to the model's float type), processor or not.

Either way the result is checked against the config (``num_channels``) and becomes the graph's
``pixel_values`` input.

:func:`label_qoi` turns a class label into ``logits[0,i]`` (minus ``logits[0,j]`` for a foil):
by name as in ``config.json``'s ``id2label``, or by index.

>>> label_qoi({"id2label": {"0": "cat", "1": "dog", "2": "bird"}}, "dog", "0")
'logits[0,1] - logits[0,0]'
>>> label_qoi({"id2label": {"0": "cat", "1": "dog"}}, "fish")
Traceback (most recent call last):
graphengine.errors.GraphEngineError: label 'fish' is neither a name in the config's id2label (cat, dog) nor an index in [0, 2)
"""

from __future__ import annotations

import os
from typing import Any, Dict, Optional

import numpy as np

from ..errors import GraphEngineError

__all__ = ["PROCESSOR_FILE", "pixel_values", "label_qoi"]

PROCESSOR_FILE = "preprocessor_config.json"


def _read_npy(path: str, what: str) -> np.ndarray:
    from ..io import open_regular, read_npy

    with open_regular(path, what, GraphEngineError) as f:
        return read_npy(f, what, GraphEngineError)


def _read_picture(image, what: str):
    """A PIL image or a numpy array of raw pixels from a path, an array or a PIL image."""
    if not isinstance(image, (str, os.PathLike)):
        return image
    path = os.fspath(image)
    if path.endswith(".npy"):
        return _read_npy(path, what)
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError:
        raise GraphEngineError(f"{what}: reading an image file needs Pillow (pip install pillow), "
                               "or give the pixels as a .npy array") from None
    from ..io import open_regular

    with open_regular(path, what, GraphEngineError) as f:
        try:
            picture = Image.open(f)
            picture.load()
        except (UnidentifiedImageError, OSError, ValueError) as e:
            raise GraphEngineError(f"{what}: not an image Pillow can read ({type(e).__name__})") from None
    return picture


def _preprocess(path: str, picture, channels: Optional[int], what: str) -> np.ndarray:
    if not os.path.exists(os.path.join(path, PROCESSOR_FILE)):
        raise GraphEngineError(f"{path}: no {PROCESSOR_FILE} to preprocess {what} with; give the preprocessed "
                               "pixel_values instead (a .npy shaped [1, C, H, W]: --pixels FILE.npy)")
    import transformers

    if hasattr(picture, "mode"):  # a PIL image: the channel layout the model expects
        wanted = {1: "L", 3: "RGB", 4: "RGBA"}.get(channels or 3)
        if wanted and picture.mode != wanted:
            picture = picture.convert(wanted)
    else:
        picture = np.asarray(picture)
        if picture.ndim not in (2, 3) or picture.dtype.kind not in "uif" or picture.size == 0:
            raise GraphEngineError(f"{what}: raw pixels must be a non-empty numeric [H, W], [H, W, C] or [C, H, W] "
                                   f"array, got shape {list(picture.shape)} {picture.dtype}")
    from .torch import quiet

    with quiet():
        try:
            processor = transformers.AutoImageProcessor.from_pretrained(path, local_files_only=True)
            out = processor(images=picture, return_tensors="np")
        except Exception as e:  # noqa: BLE001 - transformers and Pillow raise many types
            raise GraphEngineError(f"{path}: the image processor cannot process {what}: {type(e).__name__}: "
                                   f"{str(e).strip().splitlines()[0] if str(e).strip() else ''}") from None
    return np.asarray(out["pixel_values"])


def pixel_values(path: str, config: Dict[str, Any], dtype: str, image=None, pixels=None) -> np.ndarray:
    """The ``pixel_values`` array ``[N, C, H, W]`` of ``dtype`` for the model in ``path`` (see the
    module docstring); exactly one of ``image`` and ``pixels``."""
    if (image is None) == (pixels is None):
        raise GraphEngineError("give exactly one of image and pixels")
    channels = config.get("num_channels")
    if image is not None:
        what = f"image {os.fspath(image)}" if isinstance(image, (str, os.PathLike)) else "the image"
        values = _preprocess(path, _read_picture(image, what), channels, what)
    else:
        what = f"pixels {os.fspath(pixels)}" if isinstance(pixels, (str, os.PathLike)) else "pixel_values"
        values = _read_npy(os.fspath(pixels), what) if isinstance(pixels, (str, os.PathLike)) else np.asarray(pixels)
        if values.dtype.kind not in "uif":
            raise GraphEngineError(f"{what}: expected numbers, got {values.dtype}")
    if values.ndim != 4 or 0 in values.shape or (isinstance(channels, int) and values.shape[1] != channels):
        want = f"[N, {channels}, H, W]" if isinstance(channels, int) else "[N, C, H, W]"
        raise GraphEngineError(f"{what}: pixel_values must be shaped {want} for this model, "
                               f"got {list(values.shape)}")
    return np.ascontiguousarray(values, dtype=dtype)


def label_qoi(config: Dict[str, Any], target, foil=None, output: str = "logits") -> str:
    """``logits[0,i]`` for the class ``target`` (a name in ``id2label`` or an index), minus
    ``logits[0,j]`` for ``foil``."""
    raw = config.get("id2label") or {}
    labels = {int(k): str(v) for k, v in raw.items()} if isinstance(raw, dict) else {}
    n = len(labels) or int(config.get("num_labels", 0) or 0)

    def index(label) -> int:
        by_name = [i for i, name in labels.items() if name == str(label)]
        if by_name:
            return by_name[0]
        text = str(label).strip()
        if text.lstrip("-").isdigit() and 0 <= int(text) < n:
            return int(text)
        names = ", ".join(labels[i] for i in sorted(labels)[:8]) + (", ..." if len(labels) > 8 else "")
        raise GraphEngineError(f"label {label!r} is neither a name in the config's id2label ({names}) "
                               f"nor an index in [0, {n})")
    qoi = f"{output}[0,{index(target)}]"
    if foil is not None:
        qoi += f" - {output}[0,{index(foil)}]"
    return qoi
