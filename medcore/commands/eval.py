"""`medcore eval`: run a model over a dataset split, or score a predictions file, with 95% confidence intervals.

medcore eval run RUN_ID --dataset notes-redacted [--split test] [--batch-size 32] [--seed 0] [--resamples 1000] [--json]
medcore eval run RUN_ID --dataset qa-redacted [--max-new-tokens 64] [--keep-outputs]   # causal-lm: generation
medcore eval run 'openai:http://127.0.0.1:8000/v1#MODEL' --dataset qa-redacted        # an OpenAI-compatible endpoint
medcore eval run RUN_ID --dataset notes-redacted --compare OTHER_RUN_ID [--compare minilm ...] [--json]
medcore eval run RUN_ID --dataset notes-redacted --detach   # a detached job; then: medcore eval status JOB_ID
medcore eval metrics preds.csv --label-column y_true --pred-column y_pred
medcore eval metrics preds.parquet --label-column y_true --pred-column y_pred --proba-prefix p_ \\
    --subgroups sex,age_band --seed 0 --resamples 1000 --json
medcore eval review create --evals EVAL_A EVAL_B [--name N] [--max-items 100] [--seed S] [--all-rows]
medcore eval review list | close REVIEW_ID | summary REVIEW_ID [--json] | export REVIEW_ID
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from pydantic import ValidationError

from medcore.errors import MedcoreError, describe_validation_error
from medcore.evaluate.bootstrap import SMALL_CELL, BootstrapConfig, Estimate
from medcore.evaluate.compare import LOWER_IS_BETTER, CompareRunConfig, compare_models
from medcore.evaluate.job import evaluation_status, start_evaluation
from medcore.evaluate.metrics import HEADLINE, PER_CLASS
from medcore.evaluate.predictions import PredictionColumns, read_predictions
from medcore.evaluate.results import COMPARISON, PREDICTIONS, RESULT
from medcore.evaluate.review import close_review, open_review
from medcore.evaluate.review_sources import ReviewConfig, create_review_from_evals, review_config
from medcore.evaluate.review_summary import export_preferences, preference_records, summarize_review
from medcore.evaluate.runner import EvalRunConfig, evaluate_model
from medcore.evaluate.subgroups import EvaluationReport, is_small, score_predictions
from medcore.store.views import reviews_table
from medcore.workspace import Workspace, get_workspace

SUMMARY = ("accuracy", "balanced_accuracy", "macro_f1", "auroc", "brier", "ece")  # what `eval run` prints


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    add_run_arguments(sub.add_parser("run", help="Run a model (a run id, a base model, an endpoint) over a split."))
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
    add_review_arguments(sub.add_parser("review", help="Blinded clinician review of two models' outputs."))
    p = sub.add_parser("status", help="State and progress of an evaluation job started with `eval run --detach`.")
    p.add_argument("job_id", metavar="JOB_ID")
    p.add_argument("--json", action="store_true", help="Print the status as one JSON object.")


def add_review_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="review_action", required=True, metavar="REVIEW_ACTION")
    fields = ReviewConfig.model_fields
    p = sub.add_parser("create", help="A blinded review of two evals of one dataset split.")
    p.add_argument(
        "--evals", nargs=2, required=True, metavar=("EVAL_A", "EVAL_B"), help="Two eval ids (`medcore eval run`)."
    )
    p.add_argument("--name", default=None, help=fields["name"].description)
    p.add_argument("--seed", type=int, default=None, help=fields["seed"].description)
    p.add_argument("--max-items", type=int, default=None, help=fields["max_items"].description)
    p.add_argument(
        "--all-rows", action="store_true", help="Review every row, not only those where the predictions differ."
    )
    sub.add_parser("list", help="Reviews, newest first: items, verdicts, reviewers, closed.")
    for action, text in (
        ("close", "Close a review: no more verdicts; its models and results can then be read."),
        ("summary", "A closed review's win rates with 95%% Wilson CIs, ties, and Cohen's kappa."),
        ("export", "A closed review's decisive verdicts as preference data: prompt, chosen, rejected (JSONL)."),
    ):
        p = sub.add_parser(action, help=text)
        p.add_argument("review_id", metavar="REVIEW_ID", help="The review (see `medcore eval review list`).")
        if action == "summary":
            p.add_argument("--json", action="store_true", help="Print one JSON object instead of a summary.")


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
    p.add_argument(
        "--max-new-tokens", type=int, default=fields["max_new_tokens"].default, help=described("max_new_tokens")
    )
    p.add_argument("--keep-outputs", action="store_true", help=described("keep_outputs"))
    p.add_argument("--compare", action="append", metavar="OTHER", help=described("compare"))
    p.add_argument("--json", action="store_true", help="Print one JSON object instead of a summary.")
    p.add_argument(
        "--detach",
        action="store_true",
        help="Run as a detached job and print its id at once; follow it with `medcore eval status JOB_ID`.",
    )


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
    if args.action == "review":
        return run_review(args)
    if args.action == "status":
        return show_job(args)
    return run_model(args) if args.action == "run" else score_file(args)


def run_model(args: argparse.Namespace) -> int:
    if args.detach:
        return detach(args)
    if args.compare:
        return run_comparison(args)
    options = {name: getattr(args, name) for name in EvalRunConfig.model_fields}
    result = evaluate_model(ws=get_workspace(), **options)
    if args.json:
        print(json.dumps(result, allow_nan=False))
    else:
        print_summary(result, args)
    return 0


def detach(args: argparse.Namespace) -> int:
    options = {name: getattr(args, name) for name in EvalRunConfig.model_fields if name not in ("model", "dataset")}
    job_id = start_evaluation(get_workspace(), args.model, args.dataset, compare=args.compare, **options)
    print(json.dumps({"job_id": job_id}) if args.json else f"started {job_id}: `medcore eval status {job_id}`")
    return 0


def show_job(args: argparse.Namespace) -> int:
    """Exit 0 when completed, 1 when failed, 3 while queued or running (scripts can poll on it)."""
    status = evaluation_status(get_workspace(), args.job_id)
    state = status.get("state")
    if args.json:
        fields = ("state", "done", "total", "model", "eval_ids", "error")
        print(json.dumps({key: status.get(key) for key in fields}))
    else:
        done, total = status.get("done") or 0, status.get("total") or 0
        print(f"{args.job_id}: {state}, {done:,} of {total:,} examples scored")
        if status.get("eval_ids"):
            print(f"evals: {', '.join(status['eval_ids'])} (`medcore eval run` folders under evals/)")
        if status.get("error"):
            print(f"error: {status['error']}")
    return {"completed": 0, "failed": 1}.get(state, 3)


def print_summary(result: dict, args: argparse.Namespace) -> None:
    """The headline figures with their CIs: SUMMARY for a classifier, every metric for the other tasks."""
    n, task = result["n"], result.get("task", "classification")
    kinds = f"{len(result['per_class'])} classes" if task == "classification" else task
    print(f"{args.model} on {args.dataset}/{args.split}: {n:,} examples, {kinds}. 95% CIs:")
    names = SUMMARY if task == "classification" else tuple(result["metrics"])
    width = max(len(name) for name in names)
    for name in names:
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
    classes = comparison.get("task", "classification") == "classification"
    resampling = "stratified bootstrap" if classes else "bootstrap over rows"
    lower = f"; lower is better for {', '.join(LOWER_IS_BETTER)}" if classes else ""
    print(
        f"Compared with {reference} on {args.dataset}/{args.split}, {n:,} examples: difference = model - reference, "
        f"paired {resampling} 95% CI ({comparison['resamples']:,} resamples, seed {comparison['seed']}); "
        f"* = CI excludes 0{lower}."
    )
    for name, other in comparison["models"].items():
        print(f"\n{name} vs {reference}")
        metrics = [m for m in SUMMARY if m in other["differences"]] if classes else list(other["differences"])
        width = max(len(metric) for metric in metrics)
        for metric in metrics:
            before, after = comparison["reference_metrics"][metric], other["metrics"][metric]
            values = "undefined" if before is None or after is None else f"{before:.3f} -> {after:.3f}"
            print(f"  {metric:<{width}}  {values:<14}  {difference_cell(other['differences'][metric])}")
        test, disagree = other["mcnemar"], other["disagreements"]
        what = "predictions" if classes else "per-row scores"
        if test is not None:
            right = "correctness" if classes else "exact match"
            print(
                f"  McNemar (exact, on {right}): {test['b']} right only by {reference}, {test['c']} right only by "
                f"{name}, p = {test['p_value']:.3g}"
            )
        print(f"  {what} differ on {disagree['count']:,} of {n:,} examples")
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
        print_gaps(column, report.fairness.get(column) or {})
    if any(e.value is None for e in report.overall.metrics.values()):
        print(
            "\nundefined: no value for these data (AUROC needs both outcomes; PPV a class that is predicted; "
            "AUROC, AUPRC, Brier and ECE need probability columns, --proba-prefix)."
        )


def print_gaps(column: str, fairness: dict) -> None:
    """Best minus worst group per metric, 95% percentile CI; * = the CI excludes 0 (a disparity beyond chance)."""
    print(f"\ngaps across {column} (best group - worst group, 95% CI; * = CI excludes 0):")
    for name, gap in (fairness.get("gaps") or {}).items():
        if gap is None:
            print(f"  {name:<17}  undefined (fewer than two groups where it is defined)")
            continue
        interval = "" if gap["ci_low"] is None else f" [{gap['ci_low']:.3f}, {gap['ci_high']:.3f}]"
        mark = " *" if gap["excludes_zero"] else ""
        print(f"  {name:<17}  {gap['value']:.3f}{interval}{mark}  ({gap['high_group']} vs {gap['low_group']})")
    eod = fairness.get("equalized_odds_difference")
    if eod is not None:
        interval = "" if eod["ci_low"] is None else f" [{eod['ci_low']:.3f}, {eod['ci_high']:.3f}]"
        print(f"  equalized-odds difference  {eod['value']:.3f}{interval}")


def run_review(args: argparse.Namespace) -> int:
    ws = get_workspace()
    if args.review_action == "create":
        return create_review(args, ws)
    if args.review_action == "list":
        return list_reviews(ws)
    review = open_review(ws, args.review_id)
    if args.review_action == "close":
        manifest = close_review(review)
        print(f"closed {review.review_id} ({manifest['name']}): it takes no more verdicts.")
        rid = review.review_id
        print(f"results: `medcore eval review summary {rid}`; preference data: `medcore eval review export {rid}`")
    elif args.review_action == "summary":
        summary = summarize_review(review)
        print(json.dumps(summary, allow_nan=False) if args.json else "\n".join(summary_lines(summary)))
    else:
        count = len(preference_records(review))
        print(f"{export_preferences(review)}: {count} preference pairs (prompt, chosen, rejected), redacted text")
    return 0


def create_review(args: argparse.Namespace, ws: Workspace) -> int:
    config = review_config(
        name=args.name, seed=args.seed, max_items=args.max_items, disagreements_only=not args.all_rows
    )
    review = create_review_from_evals(ws, *args.evals, config)
    manifest = review.read_manifest()
    spans = ", ".join(f"{kind} {n}" for kind, n in sorted(manifest["redaction"]["spans"].items())) or "none"
    print(
        f"created {review.review_id} ({manifest['name']}): {manifest['items']} items from "
        f"{manifest['dataset']}/{manifest['split']}, models sealed, order random per item; PHI masked: {spans}."
    )
    print(f"Reviewers judge it in the console's Evaluate page; then `medcore eval review close {review.review_id}`.")
    return 0


def list_reviews(ws: Workspace) -> int:
    table = reviews_table(ws)
    if table.empty:
        print("No reviews yet. Create one with `medcore eval review create --evals EVAL_A EVAL_B`.")
        return 0
    columns = ["review_id", "name", "items", "verdicts", "reviewers", "closed"]
    print(table[columns].to_string(index=False))
    return 0


def rate_cell(rate: dict) -> str:
    if rate["value"] is None:
        return "undefined"
    return f"{rate['value']:.3f} [{rate['ci_low']:.3f}, {rate['ci_high']:.3f}]"


def summary_lines(summary: dict) -> list[str]:
    """The unblinded results as text: per model, then the ties, then reviewer agreement."""
    n = summary["judgments"]
    lines = [
        f"{summary['review_id']} ({summary['name']}): {summary['judged_items']} of {summary['items']} items judged, "
        f"{n} judgments by {len(summary['reviewers'])} reviewers. Rates over all judgments, 95% Wilson CIs:"
    ]
    width = max(len(name) for name in [*summary["models"], "both acceptable"])
    for model, result in summary["models"].items():
        lines.append(
            f"  {model:<{width}}  wins {result['wins']:>4}  win rate {rate_cell(result['win_rate'])}  "
            f"of {summary['decisive']} decisive {rate_cell(result['decisive_share'])}"
        )
    for tie in ("both_acceptable", "both_wrong"):
        label = tie.replace("_", " ")
        lines.append(f"  {label:<{width}}  {summary[tie]['count']:>9}  rate     {rate_cell(summary[tie]['rate'])}")
    for pair in summary["agreement"]:
        kappa = "undefined" if pair["kappa"] is None else f"{pair['kappa']:.3f}"
        lines.append(f"  Cohen's kappa, {' vs '.join(pair['reviewers'])} on {pair['items']} items: {kappa}")
    return lines
