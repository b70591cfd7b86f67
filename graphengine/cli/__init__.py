"""The ``graphengine`` command: one package, one parser, every subcommand (see :mod:`.main`)."""

from .main import CLIError, build_parser, main, scope_tree

__all__ = ["CLIError", "build_parser", "main", "scope_tree"]
