"""The CLI's command modules: each parses its arguments, calls the engine and prints (see medcore/cli.py)."""
