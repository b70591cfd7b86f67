"""Exceptions raised by graphengine.

Every error that bad input can cause derives from :class:`GraphEngineError` and carries a
one-line message naming what is wrong and where (the node, its scope, the file), so the CLI can
print it as-is and exit with code 2.
"""


class GraphEngineError(Exception):
    """Base class for errors caused by bad input (files, graphs, arguments)."""


class GraphValidationError(GraphEngineError):
    """A graph is structurally wrong: cycle, dangling input, bad shape/dtype/attributes."""


class UnknownOpError(GraphValidationError):
    """A node names an op that is not in the registry."""


class GraphFormatError(GraphEngineError):
    """A graph file cannot be read: not a zip, truncated, missing members, wrong version."""


class FeedError(GraphEngineError):
    """An input fed to :func:`graphengine.forward` is missing or has the wrong shape/dtype."""


class QoIError(GraphEngineError):
    """A quantity of interest names a missing node or an out-of-range element."""


class ResourceLimitError(GraphEngineError):
    """A computation would need more than a configured limit allows (the memory budget, the
    largest k of a k-best semiring): refused before anything is allocated. The limits are the
    fields of :data:`graphengine.io.LIMITS`."""


class WriteError(GraphEngineError):
    """A file cannot be written: a missing directory, a read-only or full file system, no
    permission, or an output path that is also an input."""


def name_some(items, first: int = 5, sep: str = ", ") -> str:
    """The first ``first`` items joined by ``sep``, then how many more: keeps error lines short.

    >>> name_some(["a", "b"]), name_some(range(200000), first=3)
    ('a, b', '0, 1, 2 ... and 199,997 more')
    """
    items = [str(i) for i in items]
    shown = sep.join(items[:first])
    return shown if len(items) <= first else f"{shown} ... and {len(items) - first:,} more"


class ModelError(GraphEngineError):
    """A model cannot be built or found: missing weights, a graph without the expected node,
    a packaged checkpoint that is not installed."""
