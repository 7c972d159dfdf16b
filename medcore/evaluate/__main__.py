"""`python -m medcore.evaluate run|metrics ...`: the eval command without the dispatcher (same options)."""

import sys

from medcore.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["eval", *sys.argv[1:]]))
