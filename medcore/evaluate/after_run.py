"""A completed run scored on its dataset's test split: what the supervisor runs after training (spec.evaluate_after).

    python -m medcore.evaluate.after_run RUN_DIR

The result goes to the run's status.json under rundir.TEST_EVAL (state, eval id, accuracy with its 95% CI), and the
full eval to evals/<eval_id>/ like any `medcore eval run`. A run of a task the evaluator does not score, or a
dataset without test rows, is marked skipped with the reason; an error is recorded and never fails the run.
"""

from __future__ import annotations

import sys
from pathlib import Path

from medcore.data.manifest import read_manifest
from medcore.errors import MedcoreError
from medcore.evaluate.runner import evaluate_model
from medcore.evaluate.sources import CLASSIFIER_TASKS
from medcore.rundir import TEST_EVAL, RunDir
from medcore.train.spec import load_spec
from medcore.workspace import Workspace

HEADLINE_METRIC = "accuracy"
SPLIT = "test"


def evaluate_run(rd: RunDir) -> dict:
    """Score the run on the test split, record the outcome in its status, and return that record."""
    ws = Workspace(rd.path.parent.parent)
    spec = load_spec(rd.spec)
    reason = skip_reason(ws, spec)
    if reason:
        record = {"state": "skipped", "reason": reason}
    else:
        rd.update_status(**{TEST_EVAL: {"state": "running"}})
        try:
            result = evaluate_model(rd.run_id, ws, spec.dataset, SPLIT, seed=spec.seed)
            headline = result["metrics"][HEADLINE_METRIC]
            record = {"state": "completed", "eval_id": result["eval_id"], "metric": HEADLINE_METRIC,
                      "value": headline["value"], "ci_low": headline["ci_low"], "ci_high": headline["ci_high"],
                      "n": result["n"]}  # fmt: skip
        except MedcoreError as exc:
            record = {"state": "failed", "error": str(exc)}
        except Exception as exc:  # library messages can quote input text: keep the type only
            record = {"state": "failed", "error": f"The test-split evaluation failed with {type(exc).__name__}."}
    rd.update_status(**{TEST_EVAL: record})
    return record


def skip_reason(ws: Workspace, spec) -> str | None:
    if spec.task not in CLASSIFIER_TASKS:  # its headline is accuracy; other tasks are scored on request
        return (
            f"Scoring after training covers {', '.join(CLASSIFIER_TASKS)} runs; this one is {spec.task}: score it "
            f"with `medcore eval run RUN_ID --dataset {spec.dataset}`."
        )
    if not read_manifest(ws, spec.dataset).rows.get(SPLIT):
        return f"Dataset '{spec.dataset}' has no {SPLIT} rows."
    return None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1 or not RunDir(Path(argv[0])).spec.exists():
        print("usage: python -m medcore.evaluate.after_run RUN_DIR  (a run folder with spec.json)", file=sys.stderr)
        return 2
    record = evaluate_run(RunDir(Path(argv[0]).resolve()))
    print(f"test-split evaluation: {record['state']}" + (f" ({record['eval_id']})" if "eval_id" in record else ""))
    return 0 if record["state"] != "failed" else 1


if __name__ == "__main__":
    raise SystemExit(main())
