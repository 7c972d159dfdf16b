"""`medcore phi train-tagger | tagger-info`: rebuild the learned PHI tagger, or show how it was trained and measured."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from medcore.phi.config import DEFAULT_TAGGER


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True)
    train = sub.add_parser("train-tagger", help="Train the PHI tagger with MedCore's trainer and package it.")
    train.add_argument("options", nargs=argparse.REMAINDER, help="See `python -m medcore.train.phi_tagger --help`.")
    info = sub.add_parser("tagger-info", help="Print the tagger's record: corpus, seed, metrics, threshold.")
    info.add_argument("--tagger", type=Path, default=DEFAULT_TAGGER, help="Tagger folder.")


def run(args: argparse.Namespace) -> int:
    if args.action == "train-tagger":
        from medcore.train.phi_tagger import main

        return main(args.options)
    from medcore.phi.tagger import tagger_record

    record = tagger_record(args.tagger)
    if not record:
        print(f"No tagger record in {args.tagger}; build one with `medcore phi train-tagger`.")
        return 1
    print(json.dumps(record, indent=2, sort_keys=True))
    return 0
