"""`medcore card RUN_ID [--print]`: write a completed run's model card to runs/RUN_ID/MODEL_CARD.md.

medcore card 20261130-051910-notes-800b            # writes runs/<run_id>/MODEL_CARD.md, prints its path
medcore card 20261130-051910-notes-800b --print    # also prints the card (Markdown)

`add_arguments` and `run` are the whole command, so `medcore runs` can offer it as `runs card` too.
"""

from __future__ import annotations

import argparse

from medcore.evaluate.model_card import write_model_card


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_id", metavar="RUN_ID", help="Run id of a completed run (see `medcore runs list`).")
    parser.add_argument("--print", dest="show", action="store_true", help="Also print the card to stdout.")


def run(args: argparse.Namespace) -> int:
    path = write_model_card(args.run_id)
    if args.show:
        print(path.read_text())
    print(f"Wrote the model card of run {args.run_id} to {path}.")
    return 0
