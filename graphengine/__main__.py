"""``python -m graphengine ...`` runs the ``graphengine`` command (see :mod:`graphengine.cli`)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
