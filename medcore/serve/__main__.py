"""Run one model server in the foreground, OpenAI-compatible, until Ctrl-C or SIGTERM.

    python -m medcore.serve --model tiny-llama --adapter qa=workspace/runs/RUN_ID/adapter [--port 8000]
    python -m medcore.serve --config configs/serving.yaml                 # every field from the file
    python -m medcore.serve --engine vllm --config configs/serving.yaml   # becomes `vllm serve ...` (CUDA hosts)
    medcore serve ... --detach --name NAME                                # the same, managed in servers/NAME/

The API key may come from $MEDCORE_SERVE_API_KEY instead of --api-key (it then stays out of the process list).
Reads top to bottom: parse -> validate (ServingConfig) -> load the model -> serve -> shut down.
"""

from __future__ import annotations

import argparse
import sys

from medcore.errors import MedcoreError
from medcore.serve.options import add_server_arguments, config_from_args
from medcore.serve.server import describe_launch, run_server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m medcore.serve", description=__doc__.splitlines()[0])
    add_server_arguments(parser)
    args = parser.parse_args(argv)
    try:
        config = config_from_args(args)
        if args.dry_run:
            print(describe_launch(config))
            return 0
        run_server(config)
    except MedcoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
