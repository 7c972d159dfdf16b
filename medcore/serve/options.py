"""The command-line options of a server, shared by `python -m medcore.serve` and `medcore serve` (help texts are
ServingConfig's field descriptions)."""

from __future__ import annotations

import argparse
from pathlib import Path

from medcore.serve.config import ServingConfig, load_serving_config, parse_adapter_args

FIELDS = ServingConfig.model_fields


def add_server_arguments(parser: argparse.ArgumentParser) -> None:
    """--config and one option per commonly set ServingConfig field (the file holds the rest)."""
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        help="Serving config file (e.g. configs/serving.yaml); options override it.",
    )
    parser.add_argument("--engine", choices=("embedded", "vllm"), default=None, help=FIELDS["engine"].description)
    parser.add_argument("--model", default=None, metavar="NAME_OR_DIR", help=FIELDS["model"].description)
    parser.add_argument(
        "--adapter", action="append", default=None, metavar="NAME=DIR", help=FIELDS["adapters"].description
    )
    parser.add_argument("--host", default=None, help=FIELDS["host"].description)
    parser.add_argument("--port", type=int, default=None, help=FIELDS["port"].description)
    parser.add_argument("--api-key", default=None, metavar="KEY", help=FIELDS["api_key"].description)
    parser.add_argument("--max-model-len", type=int, default=None, help=FIELDS["max_model_len"].description)
    parser.add_argument("--max-tokens-cap", type=int, default=None, help=FIELDS["max_tokens_cap"].description)
    parser.add_argument("--queue-size", type=int, default=None, help=FIELDS["queue_size"].description)
    parser.add_argument("--request-timeout", type=float, default=None, help=FIELDS["request_timeout_s"].description)
    parser.add_argument("--log-prompts", action="store_true", default=None, help=FIELDS["log_prompts"].description)
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="Validate and print what would start (vLLM: its command line; embedded: the resolved config); start nothing.",
    )


def config_from_args(args: argparse.Namespace) -> ServingConfig:
    """The ServingConfig of parsed options: the --config file with every given option applied over it."""
    return load_serving_config(
        args.config,
        engine=args.engine,
        model=args.model,
        adapters=parse_adapter_args(args.adapter) or None,
        host=args.host,
        port=args.port,
        api_key=args.api_key,
        max_model_len=args.max_model_len,
        max_tokens_cap=args.max_tokens_cap,
        queue_size=args.queue_size,
        request_timeout_s=args.request_timeout,
        log_prompts=args.log_prompts,
    )
