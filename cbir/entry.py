"""Console-script entry points: `cbir`, `ingest`, `search`.

The commands' modules are imported inside a guard, so a Ctrl-C in the first moments (while
Python is still importing) is the same one line and exit 130 as later, not a traceback.
"""

from __future__ import annotations

import importlib
import sys


def _run(module: str) -> None:
    try:
        main = importlib.import_module(module).main
    except KeyboardInterrupt:
        try:
            sys.stderr.write("error: interrupted\n")
        finally:
            sys.exit(130)
    main()


def cbir() -> None:
    _run("cbir.cli")


def ingest() -> None:
    _run("ingest.cli")


def search() -> None:
    _run("search.cli")
