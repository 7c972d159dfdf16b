"""`medcore eval`: run a classifier over a dataset split, or score a predictions file, with 95% confidence intervals.

medcore eval run RUN_ID --dataset notes-redacted [--split test] [--batch-size 32] [--seed 0] [--resamples 1000] [--json]
medcore eval run RUN_ID --dataset notes-redacted --compare OTHER_RUN_ID [--compare minilm ...] [--json]
medcore eval metrics preds.csv --label-column y_true --pred-column y_pred
medcore eval metrics preds.parquet --label-column y_true --pred-column y_pred --proba-prefix p_ \\
    --subgroups sex,age_band --seed 0 --resamples 1000 --json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from pydantic import ValidationError

from medcore.errors import MedcoreError, describe_validation_error
from medcore.evaluate.bootstrap import SMALL_CELL, BootstrapConfig, Estimate
from medcore.evaluate.compare import LOWER_IS_BETTER, CompareRunConfig, compare_models
from medcore.evaluate.metrics import HEADLINE, PER_CLASS
from medcore.evaluate.predictions import PredictionColumns, read_predictions
from medcore.evaluate.results import COMPARISON, PREDICTIONS, RESULT
from medcore.evaluate.runner import EvalRunConfig, evaluate_model
from medcore.evaluate.subgroups import EvaluationReport, is_small, score_predictions
from medcore.workspace import get_workspace

SUMMARY = ("accuracy", "balanced_accuracy", "macro_f1", "auroc", "brier", "ece")  # what `eval run` prints


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    add_run_arguments(sub.add_parser("run", help="Run a classifier (a run id or a base model) over a dataset split."))
    # argparse %-formats help strings: a literal percent sign is written %%.
    p = sub.add_parser("metrics", help="Metrics with 95%% CIs, overall, per class and per subgroup.")
    columns, boot = PredictionColumns.model_fields, BootstrapConfig.model_fields
    p.add_argument("predictions", type=Path, help="Predictions file: .csv or .parquet, one row per example.")
    p.add_argument("--label-column", required=True, help=columns["label_column"].description)
    p.add_argument("--pred-column", required=True, help=columns["pred_column"].description)
    p.add_argument("--proba-prefix", default=None, help=columns["proba_prefix"].description)
    p.add_argument("--subgroups", default="", help=columns["subgroups"].description + " Comma-separated.")
    p.add_argument("--seed", type=int, default=boot["seed"].default, help=boot["seed"].description)
    p.add_argument("--resamples", type=int, default=boot["resamples"].default, help=boot["resamples"].description)
    p.add_argument("--json", action="store_true", help="Print one JSON object instead of tables.")


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    fields = CompareRunConfig.model_fields  # EvalRunConfig's fields and `compare`

    def described(name: str) -> str:
        return fields[name].description.replace("%", "%%")

    p.add_argument("model", metavar="MODEL_OR_RUN_ID", help=described("model"))
    p.add_argument("--dataset", required=True, help=described("dataset"))
    p.add_argument("--split", default=fields["split"].default, help=described("split"))
    p.add_argument("--batch-size", type=int, default=fields["batch_size"].default, help=described("batch_size"))
    p.add_argument("--seed", type=int, default=fields["seed"].default, help=described("seed"))
    p.add_argument("--resamples", type=int, default=fields["resamples"].default, help=described("resamples"))
    p.add_argument("--compare", action="append", metavar="OTHER", help=described("compare"))
    p.add_argument("--json", action="store_true", help="Print one JSON object instead of a summary.")


def settings(args: argparse.Namespace) -> tuple[PredictionColumns, BootstrapConfig]:
    """The command line as typed configs, every problem reported at once."""
    subgroups = [c.strip() for c in args.subgroups.split(",") if c.strip()]
    try:
        columns = PredictionColumns(
            label_column=args.label_column,
            pred_column=args.pred_column,
            proba_prefix=args.proba_prefix,
            subgroups=subgroups,
        )
        return columns, BootstrapConfig(resamples=args.resamples, seed=args.seed)
    except ValidationError as exc:
        raise MedcoreError(describe_validation_error(exc, "eval metrics options")) from None


def run(args: argparse.Namespace) -> int:
    return run_model(args) if args.action == "run" else score_file(args)


def run_model(args: argparse.Namespace) -> int:
    if args.compare:
        return run_comparison(args)
    options = {name: getattr(args, name) for name in EvalRunConfig.model_fields}
    result = evaluate_model(ws=get_workspace(), **options)
    if args.json:
        print(json.dumps(result, allow_nan=False))
    else:
        print_summary(result, args)
    return 0


def print_summary(result: dict, args: argparse.Namespace) -> None:
    n, classes = result["n"], len(result["per_class"])
    print(f"{args.model} on {args.dataset}/{args.split}: {n:,} examples, {classes} classes. 95% CIs:")
    width = max(len(name) for name in SUMMARY)
    for name in SUMMARY:
        print(f"  {name:<{width}}  {cell(Estimate(**result['metrics'][name]))}")
    folder = Path(result["path"])
    print(f"saved {result['eval_id']}: {folder / RESULT} (every metric, per class and subgroup), {PREDICTIONS}")


def run_comparison(args: argparse.Namespace) -> int:
    options = {name: getattr(args, name) for name in CompareRunConfig.model_fields}
    out = compare_models(ws=get_workspace(), **options)
    if args.json:
        print(json.dumps(out, allow_nan=False))
    else:
        print_comparison(out, args)
    return 0


def signed(value: float | None) -> str:
    return "undefined" if value is None else f"{value:+.3f}"


def difference_cell(diff: dict) -> str:
    if diff["value"] is None:
        return "undefined"
    if diff["ci_low"] is None:
        return f"{signed(diff['value'])} (no interval)"
    mark = " *" if diff["excludes_zero"] else ""
    return f"{signed(diff['value'])} [{signed(diff['ci_low'])}, {signed(diff['ci_high'])}]{mark}"


def print_comparison(out: dict, args: argparse.Namespace) -> None:
    """Per compared model: each summary metric, reference -> model, difference with its paired 95% CI."""
    comparison = out["comparison"]
    reference, n = comparison["reference"], comparison["n"]
    print(
        f"Compared with {reference} on {args.dataset}/{args.split}, {n:,} examples: difference = model - reference, "
        f"paired stratified bootstrap 95% CI ({comparison['resamples']:,} resamples, seed {comparison['seed']}); "
        f"* = CI excludes 0; lower is better for {', '.join(LOWER_IS_BETTER)}."
    )
    width = max(len(name) for name in SUMMARY)
    for name, other in comparison["models"].items():
        print(f"\n{name} vs {reference}")
        for metric in SUMMARY:
            before, after = comparison["reference_metrics"][metric], other["metrics"][metric]
            values = "undefined" if before is None or after is None else f"{before:.3f} -> {after:.3f}"
            print(f"  {metric:<{width}}  {values:<14}  {difference_cell(other['differences'][metric])}")
        test, disagree = other["mcnemar"], other["disagreements"]
        print(
            f"  McNemar (exact, on correctness): {test['b']} right only by {reference}, {test['c']} right only by "
            f"{name}, p = {test['p_value']:.3g}; predictions differ on {disagree['count']:,} of {n:,} examples"
        )
    ids = ", ".join(f"{name} = {eval_id}" for name, eval_id in zip(out["names"], out["models"], strict=True))
    print(f"\nsaved evals: {ids}; the comparison (with the disagreeing rows): evals/{out['models'][0]}/{COMPARISON}")


def score_file(args: argparse.Namespace) -> int:
    columns, config = settings(args)
    report = score_predictions(read_predictions(args.predictions, columns), config)
    if args.json:
        print(json.dumps(report.as_dict(), allow_nan=False))
    else:
        print_report(report)
    return 0


def cell(estimate: Estimate) -> str:
    if estimate.value is None:
        return "undefined"
    if estimate.method == "count":
        return str(estimate.value)
    return f"{estimate.value:.3f} [{estimate.ci_low:.3f}, {estimate.ci_high:.3f}]"


def print_grid(title: str, columns: dict[str, dict[str, Estimate]], names: tuple[str, ...]) -> None:
    """Metrics down, one column per class or subgroup value."""
    rows = [[title, *columns]] + [[name, *(cell(c[name]) for c in columns.values())] for name in names]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    print()
    for row in rows:
        print("  ".join(text.ljust(width) for text, width in zip(row, widths, strict=True)).rstrip())


def print_report(report: EvaluationReport) -> None:
    n, config = report.overall.n, report.config
    print(
        f"{report.source}: {n:,} examples, {len(report.labels)} class{'es' if len(report.labels) > 1 else ''} "
        f"({', '.join(report.labels)}). "
        f"95% CIs: stratified bootstrap, {config.resamples:,} resamples, seed {config.seed} (BCa, else percentile); "
        f"Wilson for proportions with a denominator under {SMALL_CELL} or at 0 or 1."
    )
    print_grid("metric", {f"all (n={n:,})": report.overall.metrics}, HEADLINE)
    per_class = dict(zip(report.labels, report.overall.per_class, strict=True))
    print_grid("per class", per_class, PER_CLASS)
    for column, groups in report.subgroups.items():
        heads = {f"{value} (n={s.n:,}{', small' if is_small(s) else ''})": s.metrics for value, s in groups.items()}
        print_grid(f"subgroup {column}", heads, HEADLINE)
    if any(e.value is None for e in report.overall.metrics.values()):
        print(
            "\nundefined: no value for these data (AUROC needs both outcomes; PPV a class that is predicted; "
            "AUROC, AUPRC, Brier and ECE need probability columns, --proba-prefix)."
        )
