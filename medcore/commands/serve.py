"""`medcore serve`: serve a base model and its LoRA adapters over the OpenAI protocol; list and stop managed servers.

medcore serve --model tiny-llama --adapter qa=workspace/runs/RUN_ID/adapter [--port 8000] [--api-key KEY]
medcore serve --model tiny-llama --adapter qa=RUN_ID --detach [--name qa]   # managed, state in servers/qa/
medcore serve --engine vllm --config configs/serving.yaml --detach        # vLLM, on a CUDA host
medcore serve list [--json]
medcore serve stop NAME
"""

from __future__ import annotations

import argparse
import json
import time

from medcore.errors import MedcoreError
from medcore.serve.manage import ServerInfo, list_servers, start_server, stop_server
from medcore.serve.options import add_server_arguments, config_from_args
from medcore.serve.server import describe_launch, run_server


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "action",
        nargs="?",
        choices=("list", "stop"),
        help="list: the managed servers; stop NAME: stop one. Leave out to start a server.",
    )
    parser.add_argument("target", nargs="?", metavar="NAME", help="The managed server to stop.")
    add_server_arguments(parser)
    parser.add_argument(
        "--detach",
        action="store_true",
        help="Start in the background, managed like a job (state in servers/NAME/); waits for /health.",
    )
    parser.add_argument("--name", default=None, help="Managed server name (default: the base model's name).")
    parser.add_argument("--json", action="store_true", help="list: one JSON object per server.")


def print_table(infos: list[ServerInfo]) -> None:
    if not infos:
        print("No managed servers. Start one with `medcore serve --model NAME --detach`.")
        return
    rows = [("NAME", "STATE", "URL", "ENGINE", "STARTED", "MODELS")]
    for info in infos:
        started = time.strftime("%Y-%m-%d %H:%M", time.localtime(info.started)) if info.started else "-"
        rows.append((info.name, info.state, info.url, info.engine, started, ", ".join(info.models)))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row[:5], widths, strict=True)) + "  " + row[5])


def run(args: argparse.Namespace) -> int:
    if args.action == "list":
        infos = list_servers()
        if args.json:
            for info in infos:
                print(json.dumps(info.to_dict()))
        else:
            print_table(infos)
    elif args.action == "stop":
        name = args.target or args.name
        if not name:
            raise MedcoreError("Name the server to stop: `medcore serve stop NAME` (`medcore serve list` shows them).")
        info = stop_server(name)
        print(f"Server {info.name} stopped (log: {info.log}).")
    elif args.dry_run:
        print(describe_launch(config_from_args(args)))
    elif args.detach:
        info = start_server(config_from_args(args), name=args.name)
        key = " (API key required)" if info.api_key_required else ""
        print(f"Server {info.name} is up at {info.url}{key}, serving: {', '.join(info.models)}.")
        print(f"OpenAI base URL: {info.url}/v1   log: {info.log}   stop: medcore serve stop {info.name}")
    else:
        if args.name:
            raise MedcoreError("--name names a managed server: add --detach, or leave --name out.")
        run_server(config_from_args(args))
    return 0
