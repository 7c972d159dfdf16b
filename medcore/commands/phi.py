"""`medcore phi train-tagger | train-student | tagger-info`: rebuild the learned PHI taggers (the encoder tagger
and the fast student distilled from it), distil a student from an existing encoder tagger, or show how a tagger
was trained and measured."""

from __future__ import annotations

import argparse
import json

from medcore.phi.config import DEFAULT_TAGGER, SHIPPED_TAGGERS, tagger_folder


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True)
    from medcore.train import phi_student, phi_tagger

    train = sub.add_parser(
        "train-tagger", help="Train the PHI tagger with MedCore's trainer, then distil the fast one."
    )
    phi_tagger.add_arguments(train)
    student = sub.add_parser("train-student", help="Distil the fast student tagger from an encoder tagger.")
    phi_student.add_arguments(student)
    info = sub.add_parser("tagger-info", help="Print the tagger's record: corpus, seed, metrics, threshold.")
    info.add_argument(
        "--tagger",
        type=tagger_folder,
        default=DEFAULT_TAGGER,
        metavar="NAME|DIR",
        help=f"A shipped tagger ({', '.join(SHIPPED_TAGGERS)}) or a tagger folder; default: the default tagger.",
    )


def run(args: argparse.Namespace) -> int:
    if args.action == "train-tagger":
        from medcore.train import phi_tagger

        return phi_tagger.run(*phi_tagger.configs_from(args))
    if args.action == "train-student":
        from medcore.train import phi_student

        return phi_student.run(phi_student.config_from(args))
    from medcore.phi.tagger import tagger_record

    if args.tagger is None:
        print("--tagger none is the rules alone: name a tagger (encoder, fast) or a tagger folder.")
        return 1
    record = tagger_record(args.tagger)
    if not record:
        print(f"No tagger record in {args.tagger}; build one with `medcore phi train-tagger`.")
        return 1
    print(json.dumps(record, indent=2, sort_keys=True))
    return 0
