"""Whole-dataset redaction as a detached process: the console starts it and polls it, never runs it in a page.

    python -m medcore.phi.job JOB_DIR      # JOB_DIR = <workspace>/jobs/<job_id> holding request.json

The job folder holds request.json (dataset, mode, method, output name), status.json (state, done, total,
output, error) and job.log. Status and log carry counts and names only, never note text.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from medcore.access.acting import acting_for
from medcore.access.actor import Actor
from medcore.errors import MedcoreError
from medcore.job_folder import (
    REQUEST,
    job_folder_argument,
    job_status,
    mark_running,
    run_recorded,
    start_job,
    update_status,
)
from medcore.phi.config import build_config
from medcore.rundir import read_json
from medcore.workspace import Workspace

PROGRESS_EVERY_S = 0.5


def start_redaction(
    ws: Workspace,
    name: str,
    mode: str,
    method: str | None,
    out_name: str | None = None,
    *,
    keep: list[str] | None = None,
    drop: list[str] | None = None,
    not_phi: list[str] | None = None,
    threshold: float | None = None,
    tagger: str | None = None,
    actor: Actor | None = None,
) -> str:
    """Start redacting dataset `name` in its own process (_start_redaction); for `actor`, checked and audited."""
    columns = {"keep": list(keep or []), "drop": list(drop or []), "not_phi": list(not_phi or [])}  # names only
    with acting_for(ws, actor, "redact_data", kind="redaction_started", dataset=name, mode=mode, **columns) as outcome:
        outcome["job_id"] = result = _start_redaction(
            ws, name, mode, method, out_name, keep=keep, drop=drop, not_phi=not_phi, threshold=threshold, tagger=tagger
        )
    return result


def _start_redaction(
    ws: Workspace,
    name: str,
    mode: str,
    method: str | None,
    out_name: str | None = None,
    *,
    keep: list[str] | None = None,
    drop: list[str] | None = None,
    not_phi: list[str] | None = None,
    threshold: float | None = None,
    tagger: str | None = None,
) -> str:
    """Check the request, then start the redaction in its own process session; returns the job id at once.

    keep, drop, not_phi: column overrides, as for redact_dataset (preview them with preview_column_decisions).
    threshold: the PHI tagger's threshold (None: the tagger's cross-validated default).
    tagger: the PHI tagger by name (`combined`, `encoder`, `fast`, `none`) or folder (None: the default tagger).
    """
    from medcore.data.encryption import check_dataset_key
    from medcore.data.manifest import check_dataset_name, dataset_dir, read_manifest
    from medcore.phi.columns import check_overrides, with_not_phi
    from medcore.phi.tagger import require_tagger

    manifest = read_manifest(ws, name)  # a missing dataset fails here, in the caller, with the list of datasets
    check_dataset_key(ws, name, manifest.key_id)  # so does an encrypted one without its key
    overrides = {"keep": sorted(keep or []), "drop": sorted(drop or []), "not_phi": sorted(not_phi or [])}
    mapping = with_not_phi(manifest.mapping, overrides["not_phi"])
    if manifest.columns:  # the full check (with the sampled values) runs in the job
        check_overrides(manifest.columns, mapping, overrides["keep"], overrides["drop"])
    out_name = check_dataset_name(out_name or f"{name}-redacted"[:64])
    if dataset_dir(ws, out_name).exists():
        raise MedcoreError(f"Dataset '{out_name}' already exists. Pick another output name or delete it first.")
    tagger = None if tagger is None else str(tagger)  # the request is JSON
    config = build_config(mode=mode, method=method, threshold=threshold, tagger=tagger)  # bad settings fail here
    require_tagger(config.tagger)  # so does a missing tagger, not minutes later in the job
    request = {"dataset": name, "mode": mode, "method": method, "out_name": out_name, "threshold": threshold}
    request["tagger"] = tagger
    request.update(overrides)
    return start_job(ws, "redact", "medcore.phi.job", request)


def redaction_status(ws: Workspace, job_id: str) -> dict:
    """The job's status; a job whose process vanished without a result reads as failed."""
    return job_status(ws, job_id, "redaction job")


def run_job(folder: Path) -> int:
    from medcore.phi.datasets import redact_dataset

    request = read_json(folder / REQUEST)
    ws = Workspace(folder.parent.parent)
    mark_running(folder)
    last = 0.0

    def progress(done: int, total: int | None) -> None:
        nonlocal last
        if time.monotonic() - last >= PROGRESS_EVERY_S:
            last = time.monotonic()
            update_status(folder, done=done, total=total)

    def redact():
        return redact_dataset(ws, request["dataset"], request["mode"], request["method"],
                              out_name=request["out_name"], progress=progress, keep=request.get("keep", []),
                              drop=request.get("drop", []), not_phi=request.get("not_phi", []),
                              threshold=request.get("threshold"), tagger=request.get("tagger"))  # fmt: skip

    ok, manifest = run_recorded(folder, "redaction", redact)
    if not ok:
        return 1
    rows = manifest.total_rows
    update_status(folder, state="completed", done=rows, total=rows, output=manifest.name, rows=rows,
            mode=manifest.redaction.mode, method=manifest.redaction.method, ended_at=time.time())  # fmt: skip
    print(f"redacted '{request['dataset']}' -> '{manifest.name}' ({rows} records)")
    return 0


def main(argv: list[str] | None = None) -> int:
    folder = job_folder_argument(sys.argv[1:] if argv is None else argv, "medcore.phi.job")
    return 2 if folder is None else run_job(folder)


if __name__ == "__main__":
    raise SystemExit(main())
