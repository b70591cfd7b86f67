"""Frontends: models from other frameworks → IR :class:`~graphengine.ir.Graph`.

=================  ===============================================================  ==========
module             entry point                                                      extra
=================  ===============================================================  ==========
``torch``          :func:`graphengine.frontends.torch.from_torch`: ``torch.export``  ``torch``
                   → core ATen → IR
``hf``             :func:`graphengine.frontends.hf.from_hf_dir`: a local Hugging     ``hf``
                   Face directory of any architecture, through ``from_torch``
``onnx``           :func:`graphengine.frontends.onnx.from_onnx`: an ``.onnx`` file   ``onnx``
=================  ===============================================================  ==========

Each takes a ``decompose`` policy (``fused``, ``primitive``, ``paper``; see docs/granularity.md),
records it and its source in ``graph.meta``, and builds the graph only through
:class:`~graphengine.ir.Graph`'s public methods. The modules import their framework when
imported, so this package imports none of them. ``support`` renders what they support (the
README's list).
"""
