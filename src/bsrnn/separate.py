"""``python -m bsrnn.separate``: the ``bsrnn-separate`` command (:mod:`bsrnn.separate_cli`)."""

from __future__ import annotations

import sys

from bsrnn.separate_cli import main, track_names

__all__ = ["main", "track_names"]

if __name__ == "__main__":
    sys.exit(main())
