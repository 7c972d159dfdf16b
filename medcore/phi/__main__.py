"""`python -m medcore.phi IN OUT [options]`: the redact command without the dispatcher."""

import sys

from medcore.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["redact", *sys.argv[1:]]))
