"""`python -m medcore ...` is the same as the `medcore` command."""

from medcore.cli import main

raise SystemExit(main())
