"""What the supervisor runs after a run completes: its test-split scoring (spec.evaluate_after) and its model card.

    python -m medcore.evaluate.after_run RUN_DIR

The result goes to the run's status.json under rundir.TEST_EVAL (state, eval id, the task's headline metric with its
95% CI: accuracy, entity F1 or answer token F1), and the full eval to evals/<eval_id>/ like any `medcore eval run`.
A run the evaluator cannot score (a dataset without test rows, a language model trained on text with no reference
answers) is marked skipped with the reason; an error is recorded and never fails the run. The run's model card
(MODEL_CARD.md) is written after, with those figures in it.
"""

from __future__ import annotations

import sys
from pathlib import Path

from medcore.data.manifest import read_manifest
from medcore.errors import MedcoreError
from medcore.evaluate.model_card import write_model_card
from medcore.evaluate.runner import evaluate_model
from medcore.evaluate.sources import SUPPORTED_TASKS
from medcore.rundir import TEST_EVAL, RunDir
from medcore.train.spec import load_spec
from medcore.workspace import Workspace

HEADLINE_METRIC = {"classification": "accuracy", "token-classification": "f1", "causal-lm": "token_f1"}
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
            metric = HEADLINE_METRIC[spec.task]
            headline = result["metrics"][metric]
            record = {"state": "completed", "eval_id": result["eval_id"], "metric": metric,
                      "value": headline["value"], "ci_low": headline["ci_low"], "ci_high": headline["ci_high"],
                      "n": result["n"]}  # fmt: skip
        except MedcoreError as exc:
            record = {"state": "failed", "error": str(exc)}
        except Exception as exc:  # library messages can quote input text: keep the type only
            record = {"state": "failed", "error": f"The test-split evaluation failed with {type(exc).__name__}."}
    rd.update_status(**{TEST_EVAL: record})
    write_card(rd)
    return record


def write_card(rd: RunDir) -> None:
    """The run's MODEL_CARD.md with the test-split figures just recorded; a card that cannot be written (an
    unreadable manifest or audit log) never fails the run: `medcore card RUN_ID` writes it later."""
    try:
        write_model_card(rd.run_id, Workspace(rd.path.parent.parent))
    except Exception as exc:  # noqa: BLE001 - the card is a by-product; keep the type only (messages can quote data)
        print(f"model card not written ({type(exc).__name__}); write it with `medcore card {rd.run_id}`", flush=True)


def skip_reason(ws: Workspace, spec) -> str | None:
    if spec.task not in SUPPORTED_TASKS:
        return f"The evaluator does not score {spec.task} runs."
    manifest = read_manifest(ws, spec.dataset)
    if not manifest.rows.get(SPLIT):
        return f"Dataset '{spec.dataset}' has no {SPLIT} rows."
    if spec.task == "causal-lm" and not (manifest.mapping.prompt and manifest.mapping.response):
        return (  # a language model trained on plain text has no reference answer to be scored against
            f"Dataset '{spec.dataset}' maps no prompt and response columns, so there is no reference answer to score "
            "the run's answers against."
        )
    return None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1 or not RunDir(Path(argv[0])).spec.exists():
        print("usage: python -m medcore.evaluate.after_run RUN_DIR  (a run folder with spec.json)", file=sys.stderr)
        return 2
    rd = RunDir(Path(argv[0]).resolve())
    if not load_spec(rd.spec).evaluate_after:  # no scoring asked for: the card still describes the run
        write_card(rd)
        print("model card written; no test-split scoring (evaluate_after is off)")
        return 0
    record = evaluate_run(rd)
    print(f"test-split evaluation: {record['state']}" + (f" ({record['eval_id']})" if "eval_id" in record else ""))
    return 0 if record["state"] != "failed" else 1


if __name__ == "__main__":
    raise SystemExit(main())
