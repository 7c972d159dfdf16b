"""`medcore redact`: detect and redact PHI in a JSONL, CSV or Parquet file.

medcore redact notes.jsonl notes.redacted.jsonl --text-field text --mode safe-harbor --method mask
medcore redact notes.csv notes.research.parquet --mode research --patient-field patient_id --report report.json
python -m medcore.phi IN OUT ...           # the same, without the dispatcher
"""

from __future__ import annotations

import argparse
from pathlib import Path

from medcore.phi.config import DEFAULT_ALLOWLIST, RedactionConfig, build_config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    fields = RedactionConfig.model_fields
    parser.add_argument("input", type=Path, help="Input file: .jsonl, .csv or .parquet.")
    parser.add_argument("output", type=Path, help="Output file (format from its extension); written atomically.")
    parser.add_argument("--text-field", default="text", help="Field holding the note text (default: text).")
    parser.add_argument(
        "--mode", choices=["safe-harbor", "research"], default="safe-harbor", help=fields["mode"].description
    )
    parser.add_argument(
        "--method", choices=["mask", "surrogate", "remove"], default=None, help=fields["method"].description
    )
    parser.add_argument(
        "--report", type=Path, default=None, help="Write a JSON report (counts, hashes, skipped rows)."
    )
    parser.add_argument(
        "--patient-field",
        default=None,
        help="Field with the patient id: research-mode dates shift by one offset per patient.",
    )
    parser.add_argument("--workers", type=int, default=1, help=fields["workers"].description)
    parser.add_argument(
        "--all-columns",
        action="store_true",
        help="Decide every column (identifiers pseudonymised, dates shifted or cut to the year, names and "
        "addresses dropped or surrogated, free text redacted); without it only --text-field is redacted.",
    )
    parser.add_argument("--keep", action="append", default=[], metavar="COL", help="With --all-columns: copy COL.")
    parser.add_argument("--drop", action="append", default=[], metavar="COL", help="Remove COL from the output.")
    parser.add_argument("--allowlist", type=Path, default=DEFAULT_ALLOWLIST, help=fields["allowlist"].description)
    add_tagger_arguments(parser)


def add_tagger_arguments(parser: argparse.ArgumentParser) -> None:
    """--tagger and --threshold, shared by `medcore redact` and `medcore data redact`."""
    fields = RedactionConfig.model_fields
    parser.add_argument("--tagger", default=None, metavar="NAME|DIR", help=fields["tagger"].description)
    parser.add_argument("--threshold", type=float, default=None, help=fields["threshold"].description)


def run(args: argparse.Namespace) -> int:
    from medcore.data.readers import check_input_file
    from medcore.phi.pipeline import redact_file
    from medcore.phi.tagger import require_tagger

    check_input_file(args.input)  # the same check and message as `medcore data import`, before anything is audited
    config = build_config(
        mode=args.mode,
        method=args.method,
        workers=args.workers,
        allowlist=args.allowlist,
        tagger=args.tagger,
        threshold=args.threshold,
    )
    require_tagger(config.tagger)  # before anything is read or written
    report = redact_file(
        args.input,
        args.output,
        text_field=args.text_field,
        config=config,
        patient_field=args.patient_field,
        report_path=args.report,
        all_columns=args.all_columns,
        keep=args.keep,
        drop=args.drop,
    )
    counts = ", ".join(f"{k} {v}" for k, v in sorted(report.counts.items())) or "none"
    print(
        f"Redacted {report.rows_out} records of {args.input.name} -> {args.output} ({config.mode}, {config.method})."
    )
    print(f"PHI spans: {counts}. Rows with PHI: {report.rows_with_phi}. Empty rows: {report.rows_empty}.")
    changed = [f"{d.column} {d.action}" for d in report.columns if d.action != "keep" or d.kind != "unchecked"]
    print(
        f"Columns: {', '.join(changed)}." + ("" if args.all_columns else " Other columns copied (see --all-columns).")
    )
    if report.skipped:
        print(
            "Skipped rows: "
            + ", ".join(f"{k} {v}" for k, v in report.skipped.items())
            + " (row numbers in the report)."
        )
    print(f"Audit record {report.audit_hash[:16]}... appended; {report.chars_per_s:,.0f} chars/s.")
    return 0
