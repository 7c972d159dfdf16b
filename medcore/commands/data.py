"""`medcore data`: import, list, show and delete datasets in the workspace.

  medcore data import notes.csv --name notes --text-column text --label-column specialty \
      --subgroups sex,age_band --patient-id-column patient_id
  medcore data import pairs.csv --name qpairs --text-column question1 --text-pair-column question2 --label-column label
  medcore data list
  medcore data show notes
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import get_args

from medcore.commands.redact import add_tagger_arguments
from medcore.data.manifest import ColumnMapping
from medcore.errors import MedcoreError
from medcore.models import Task


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True)
    imp = sub.add_parser("import", help="Validate, split and store a CSV/JSON/JSONL/Parquet file or datasets folder.")
    imp.add_argument("file", help="Upload file or folder (Hugging Face save_to_disk or a folder of data files).")
    imp.add_argument("--name", required=True, help="Dataset name: lower-case letters, digits, '_', '-', '.'.")
    imp.add_argument("--text-column", help="Column holding the note; guessed from names and values when omitted.")
    imp.add_argument("--text-pair-column", help=ColumnMapping.model_fields["text_pair"].description)
    imp.add_argument("--label-column", help="Classification label column.")
    imp.add_argument("--id-column", help="Unique record id column (row numbers are used when absent).")
    imp.add_argument("--patient-id-column", help="Patient id column: keeps each patient's notes in one split.")
    imp.add_argument("--subgroups", default="", help="Comma-separated subgroup columns, e.g. sex,age_band.")
    imp.add_argument("--prompt-column", help="Instruction/question column for causal-LM fine-tuning.")
    imp.add_argument("--response-column", help="Answer column for causal-LM fine-tuning.")
    imp.add_argument("--spans-column", help=ColumnMapping.model_fields["spans"].description)
    imp.add_argument("--task", choices=list(get_args(Task)), help="Inferred from the mapping if omitted.")
    imp.add_argument("--split", default="0.8,0.1,0.1", help="train,validation,test fractions (default 0.8,0.1,0.1).")
    imp.add_argument("--seed", type=int, default=0, help="Seed of the split (default 0).")
    imp.add_argument("--overwrite", action="store_true", help="Replace an existing dataset of that name.")
    sub.add_parser("list", help="List the datasets in the workspace.")
    show = sub.add_parser("show", help="Show one dataset's manifest.")
    show.add_argument("name")
    delete = sub.add_parser("delete", help="Delete a dataset.")
    delete.add_argument("name")
    redact = sub.add_parser("redact", help="Redact a dataset's PHI into a new dataset (<name>-redacted), audited.")
    redact.add_argument("name")
    redact.add_argument(
        "--mode",
        choices=["safe-harbor", "research"],
        default="safe-harbor",
        help="safe-harbor removes all 18 identifiers; research keeps surrogates with shifted dates.",
    )
    redact.add_argument(
        "--method",
        choices=["mask", "surrogate", "remove"],
        default=None,
        help="Default: mask in safe-harbor, surrogate in research.",
    )
    redact.add_argument("--out-name", default=None, help="Name of the new dataset (default: <name>-redacted).")
    redact.add_argument("--overwrite", action="store_true", help="Replace an existing output dataset.")
    redact.add_argument(
        "--keep",
        action="append",
        default=[],
        metavar="COL",
        help="Copy this column unchanged whatever it holds (audited); repeat for more.",
    )
    redact.add_argument(
        "--drop",
        action="append",
        default=[],
        metavar="COL",
        help="Remove this column from the redacted dataset; repeat for more.",
    )
    redact.add_argument(
        "--not-phi",
        action="append",
        default=[],
        metavar="COL",
        help=ColumnMapping.model_fields["not_phi"].description + " Repeat for more.",
    )
    redact.add_argument(
        "--dry-run", action="store_true", help="Print what would happen to each column, and why; redact nothing."
    )
    add_tagger_arguments(redact)


def _parse_split(text: str) -> tuple[float, float, float]:
    try:
        parts = tuple(float(x) for x in text.split(","))
    except ValueError:
        parts = ()
    if len(parts) != 3:
        raise MedcoreError(f"--split '{text}' must be three comma-separated fractions, e.g. 0.8,0.1,0.1.")
    return parts


def _run_import(args: argparse.Namespace) -> int:
    from medcore.access.actor import local_admin  # audited as the OS user, who acts as admin on the server's shell
    from medcore.data.importer import import_dataset
    from medcore.data.manifest import ColumnMapping
    from medcore.data.readers import read_upload
    from medcore.data.validate import suggest_mapping
    from medcore.workspace import get_workspace

    split = _parse_split(args.split)
    frame = read_upload(args.file)
    roles = dict(
        text_pair=args.text_pair_column,
        label=args.label_column,
        id=args.id_column,
        patient_id=args.patient_id_column,
        subgroups=[c.strip() for c in args.subgroups.split(",") if c.strip()],
        prompt=args.prompt_column,
        response=args.response_column,
        spans=args.spans_column,
    )
    given = {role: value for role, value in roles.items() if value}
    if args.text_column:
        mapping = ColumnMapping(text=args.text_column, **roles)
    else:  # guess the roles not given; a role given on the command line always wins over the guess
        mapping = suggest_mapping(frame).model_copy(update=given)
        print(f"mapping (guessed where not given; pass --text-column etc. to change it): "
              f"{mapping.model_dump(exclude_defaults=True)}")  # fmt: skip
    manifest = import_dataset(
        get_workspace(), frame, args.name, mapping, task=args.task, split=split, seed=args.seed,
        source_file=Path(args.file).name, overwrite=args.overwrite, actor=local_admin(),
    )  # fmt: skip
    rows = ", ".join(f"{k} {v}" for k, v in manifest.rows.items())
    print(f"imported '{manifest.name}': {rows}; labels: {', '.join(manifest.label_set) or '-'}")
    print(f"content hash {manifest.content_hash[:16]}; redaction: {manifest.redaction.status}")
    return 0


def _run_list() -> int:
    from medcore.data.importer import list_datasets
    from medcore.workspace import get_workspace

    manifests = list_datasets(get_workspace())
    if not manifests:
        print("no datasets yet: run `medcore data import FILE --name NAME --text-column COL`")
        return 0
    width = max(len(m.name) for m in manifests)
    print(f"{'name':<{width}}  {'rows':>8}  {'task':<14}  {'redaction':<9}  source")
    for m in manifests:
        print(
            f"{m.name:<{width}}  {m.total_rows:>8}  {m.task or '-':<14}  {m.redaction.status:<9}  {m.source_file or '-'}"
        )
    return 0


def _run_redact(args: argparse.Namespace) -> int:
    from medcore.phi import preview_column_decisions, redact_dataset
    from medcore.phi.config import build_config
    from medcore.phi.tagger import require_tagger
    from medcore.workspace import get_workspace

    overrides = dict(keep=args.keep, drop=args.drop, not_phi=args.not_phi)
    detector = build_config(mode=args.mode, method=args.method, tagger=args.tagger, threshold=args.threshold)
    require_tagger(detector.tagger)  # before any dataset is read
    if args.dry_run:
        decisions = preview_column_decisions(get_workspace(), args.name, args.mode, config=detector, **overrides)
        width = max(len(d.column) for d in decisions)
        for d in decisions:
            print(f"{d.column:<{width}}  {d.action:<12}  {d.reason}")
        return 0
    manifest = redact_dataset(get_workspace(), args.name, args.mode, args.method, out_name=args.out_name,
                              overwrite=args.overwrite, tagger=args.tagger, threshold=args.threshold,
                              **overrides)  # fmt: skip
    print(f"redacted '{args.name}' -> '{manifest.name}' ({manifest.redaction.mode}, {manifest.redaction.method}); "
          f"audit record {manifest.redaction.audit_hash[:16]}")  # fmt: skip
    print(f"columns and actions: {manifest.name}/redaction_report.json")
    return 0


def run(args: argparse.Namespace) -> int:
    from medcore.workspace import get_workspace

    if args.action == "import":
        return _run_import(args)
    if args.action == "list":
        return _run_list()
    if args.action == "redact":
        return _run_redact(args)
    if args.action == "show":
        from medcore.data.manifest import read_manifest

        print(json.dumps(read_manifest(get_workspace(), args.name).model_dump(mode="json"), indent=2))
        return 0
    from medcore.data.importer import delete_dataset

    delete_dataset(get_workspace(), args.name)
    print(f"deleted dataset '{args.name}'")
    return 0
