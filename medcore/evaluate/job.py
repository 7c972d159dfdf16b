"""Evaluation as a detached process: the console and `medcore eval run --detach` start it and poll it.

    python -m medcore.evaluate.job JOB_DIR     # JOB_DIR = <workspace>/jobs/<job_id> holding request.json

The request is an eval run's options (EvalRunConfig, with `compare` for a side-by-side); the status counts
examples scored across every model (done/total), names the model being scored, and ends with the eval ids.
A notebook calls evaluate_model / compare_models in-process instead: the same engine, no process.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from medcore.access.acting import acting_for
from medcore.access.actor import Actor
from medcore.evaluate.compare import compare_config, compare_models
from medcore.evaluate.runner import check_request, eval_config, evaluate_model
from medcore.job_folder import (
    REQUEST,
    job_folder_argument,
    job_status,
    mark_running,
    run_recorded,
    start_job,
    update_status,
)
from medcore.rundir import read_json
from medcore.workspace import Workspace

PROGRESS_EVERY_S = 0.5
KIND = "eval"


def start_evaluation(
    ws: Workspace,
    model: str,
    dataset: str,
    compare: list[str] | None = None,
    *,
    actor: Actor | None = None,
    **options,
) -> str:
    """Score the model(s) in a detached job (_start_evaluation); for `actor`, checked and audited."""
    with acting_for(
        ws, actor, "run_eval", kind="eval_started", model=model, dataset=dataset, compared=list(compare or [])
    ) as outcome:
        outcome["job_id"] = result = _start_evaluation(ws, model, dataset, compare, **options)
    return result


def _start_evaluation(ws: Workspace, model: str, dataset: str, compare: list[str] | None = None, **options) -> str:
    """Check the request (options, dataset, every model), then start it in its own process; returns the job id.

    options: split, batch_size, seed, resamples, max_new_tokens, keep_outputs (EvalRunConfig's fields).
    Raises:
        MedcoreError: bad options, an unknown dataset or model, an empty split, a model of another task than the
            dataset's: before any process starts.
    """
    fields = {"model": model, "dataset": dataset, **options}
    config = compare_config(**fields, compare=compare) if compare else eval_config(**fields)
    manifest, _ = check_request(ws, dataset, config.split, [model, *(compare or [])])
    request = config.model_dump()
    request["total"] = manifest.rows[config.split] * (1 + len(compare or []))
    return start_job(ws, KIND, "medcore.evaluate.job", request)


def evaluation_status(ws: Workspace, job_id: str) -> dict:
    """state, done/total examples, model (the one being scored), eval_ids when completed, error when failed."""
    return job_status(ws, job_id, "evaluation job")


def run_job(folder: Path) -> int:
    request = read_json(folder / REQUEST)
    ws = Workspace(folder.parent.parent)
    models = [request["model"], *(request.get("compare") or [])]
    total = request.pop("total")
    per_model = total // len(models)
    mark_running(folder)
    update_status(folder, total=total, model=models[0])
    last = 0.0

    def progress(index: int, done: int, split_total: int) -> None:
        nonlocal last
        if time.monotonic() - last >= PROGRESS_EVERY_S or done == split_total:
            last = time.monotonic()
            update_status(folder, done=index * per_model + done, model=models[index])

    ok, eval_ids = run_recorded(folder, "evaluation", lambda: evaluate(ws, request, progress))
    if not ok:
        return 1
    update_status(folder, state="completed", done=total, eval_ids=eval_ids, ended_at=time.time())
    print(f"evaluated {', '.join(models)} on {request['dataset']}/{request['split']}: {', '.join(eval_ids)}")
    return 0


def evaluate(ws: Workspace, request: dict, progress) -> list[str]:
    """One model (evaluate_model) or a side-by-side (compare_models); the eval ids, reference first."""
    if request.get("compare"):
        return compare_models(ws=ws, **request, progress=progress)["models"]
    request = {k: v for k, v in request.items() if k != "compare"}
    return [evaluate_model(ws=ws, **request, progress=lambda done, n: progress(0, done, n))["eval_id"]]


def main(argv: list[str] | None = None) -> int:
    folder = job_folder_argument(sys.argv[1:] if argv is None else argv, "medcore.evaluate.job")
    return 2 if folder is None else run_job(folder)


if __name__ == "__main__":
    raise SystemExit(main())
