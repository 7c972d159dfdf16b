"""The model card of a completed run: what a clinical team reads before adopting an adapter, built from files only.

runs/<run_id>/MODEL_CARD.md holds the base model and task, the data lineage (dataset content hash, redaction status
and mode, its audit record and whether the audit log still proves it), the presets and training settings, the
training metrics, every evaluation of the run in evals/ with 95% CIs and subgroup gaps, and the intended use and
limitations. It is built from spec.json, status.json, metrics.jsonl, the dataset's manifest, the audit log and the
evals' result.json: never from the split files, so no note text can reach it.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from medcore import __version__
from medcore.data.manifest import SPLITS, DatasetManifest, read_manifest
from medcore.errors import PYTHON_OPTIONS, MedcoreError, render_options
from medcore.evaluate.metrics import HEADLINE
from medcore.evaluate.results import CONFIG, RESULT, TMP_PREFIX
from medcore.evaluate.sources import weights_sha256
from medcore.fileio import write_bytes_atomic
from medcore.jobs.state import find_run
from medcore.phi.verify import verify_redaction
from medcore.rundir import REDACTION_OVERRIDE, RunDir, read_json
from medcore.train.presets import load_lora_preset
from medcore.train.spec import RunSpec, load_spec
from medcore.workspace import Workspace, get_workspace

MODEL_CARD = "MODEL_CARD.md"  # in the run folder, next to adapter/
# Training settings a reader needs to judge or repeat the run; the full spec is spec.json in the run folder.
SPEC_FIELDS = (
    "model", "task", "lora", "zero", "epochs", "max_steps", "lr", "micro_batch", "grad_accum", "max_length",
    "precision", "class_weighting", "seed", "allow_unredacted",
)  # fmt: skip
CLINICAL_CAUTION = (
    "This adapter is a research artifact, not a medical device. It has not been validated prospectively, for any "
    "population other than the one its dataset describes, or for any decision about an individual patient. Its "
    "figures come from one dataset's held-out split: performance on notes from another site, another period, "
    "another note type or another patient mix can be much worse, and the intervals above say how uncertain even "
    "these figures are. Small subgroups have wide intervals; a gap that is not shown is not evidence of fairness. "
    "Use it to support, never replace, a clinician's judgment; keep a human in the loop, monitor it after "
    "deployment, and re-evaluate it on local data before every new use."
)


def write_model_card(run_id: str, ws: Workspace | None = None) -> Path:
    """Write runs/<run_id>/MODEL_CARD.md (replacing an older card) and return its path.

    Raises:
        MedcoreError: no such run, or a run that has not completed.
    """
    ws = ws or get_workspace()
    path = find_run(run_id, ws).path / MODEL_CARD
    write_bytes_atomic(path, render_model_card(run_id, ws).encode())
    return path


def render_model_card(run_id: str, ws: Workspace | None = None) -> str:
    """The model card's Markdown for a completed run (see the module docstring for what it holds)."""
    ws = ws or get_workspace()
    rd = find_run(run_id, ws)
    status = rd.read_status()
    if status.get("state") != "completed":
        raise MedcoreError(
            f"Run {run_id} is {status.get('state', 'not started')}: a model card describes a completed run. "
            f"Wait for it to finish (`medcore runs status {run_id}`) or resume it (`medcore runs resume {run_id}`)."
        )
    spec = load_spec(rd.spec)
    lines = [f"# Model card: {run_id}", ""]
    lines += model_section(rd, spec, status)
    lines += lineage_section(ws, rd, spec)
    lines += training_section(rd, spec)
    lines += metrics_section(rd)
    lines += evaluations_section(ws, run_id)
    lines += limitations_section(spec)
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    lines += ["---", "", f"Written by MedCore {__version__} on {stamp} from the run folder and the workspace."]
    return "\n".join(lines) + "\n"


def model_section(rd: RunDir, spec: RunSpec, status: dict[str, Any]) -> list[str]:
    weights = "full fine-tune (every weight)" if spec.lora == "full" else "LoRA adapter"
    adapter = rd.adapter
    digest = weights_sha256(adapter) if adapter.is_dir() else "no adapter folder"
    rows = [
        ("Base model", spec.model),
        ("Task", spec.task),
        ("Weights", f"{weights}, `adapter/`"),
        ("Weights sha256", digest),
        ("Steps", f"{status.get('step', '?')} of {status.get('max_steps', '?')}"),
        ("Ranks", status.get("world_size", spec.world_size)),
    ]
    if status.get("early_stopped"):
        rows.append(("Early stopped", f"on {spec.early_stopping_metric}"))
    return ["## Model", "", *table(rows), ""]


def lineage_section(ws: Workspace, rd: RunDir, spec: RunSpec) -> list[str]:
    try:
        manifest = read_manifest(ws, spec.dataset)
    except MedcoreError:
        return ["## Data lineage", "", f"Dataset `{spec.dataset}` is no longer in the workspace.", ""]
    info = manifest.redaction
    rows = [
        ("Dataset", spec.dataset),
        ("Content hash (sha256 of the splits)", manifest.content_hash or "not recorded"),
        ("Rows (train / validation / test)", " / ".join(str(manifest.rows.get(s, 0)) for s in SPLITS)),
        ("Labels", ", ".join(manifest.label_set) or "none (not a classification dataset)"),
        ("Redaction", redaction_text(manifest)),
        ("Redacted from", info.parent or "-"),
        ("Audit record", info.audit_hash or "none"),
        ("Audit log check", audit_check_text(ws, spec.dataset, manifest)),
    ]
    override = read_json(rd.path / REDACTION_OVERRIDE, default=None)
    if override:
        rows.append(
            ("Override", f"trained with allow_unredacted on unproven data, audit record {override.get('audit_hash')}")
        )
    return ["## Data lineage", "", *table(rows), ""]


def redaction_text(manifest: DatasetManifest) -> str:
    info = manifest.redaction
    if info.status != "redacted":
        return "not redacted" + (" (marked usable without redaction, audited)" if info.override else "")
    return f"redacted, mode {info.mode or '?'}, method {info.method or '?'}"


def audit_check_text(ws: Workspace, name: str, manifest: DatasetManifest) -> str:
    """Whether the audit log proves the redaction now (the training gate's check, repeated when the card is written)."""
    try:
        check = verify_redaction(ws, name, manifest)
    except MedcoreError as exc:  # e.g. the audit key is missing on this machine
        return f"not checked: {exc}"
    if check.ok:
        return "proven: the audit log is intact and the record matches the split files"
    return "not proven: " + render_options(check.problem, PYTHON_OPTIONS)


def training_section(rd: RunDir, spec: RunSpec) -> list[str]:
    rows = [(name, getattr(spec, name)) for name in SPEC_FIELDS]
    preset = load_lora_preset(spec.lora) if spec.lora != "full" else None
    if preset is not None:
        targets = preset.target_modules if isinstance(preset.target_modules, str) else ", ".join(preset.target_modules)
        rows.append(("LoRA", f"r {preset.r}, alpha {preset.alpha}, dropout {preset.dropout}, targets {targets}"))
    stage = (read_json(rd.ds_config, default={}) or {}).get("zero_optimization", {}).get("stage")
    if stage is not None:
        rows.append(("ZeRO stage", stage))
    return ["## Training", "", *table(rows), "", "The full spec is `spec.json` in the run folder.", ""]


def read_metric_rows(rd: RunDir) -> list[dict[str, Any]]:
    """metrics.jsonl's rows; a line cut short by a crash is skipped."""
    if not rd.metrics.exists():
        return []
    rows = []
    for line in rd.metrics.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def metrics_section(rd: RunDir) -> list[str]:
    rows = read_metric_rows(rd)
    losses = [r for r in rows if "loss" in r]
    evals = [r for r in rows if any(key.startswith("eval_") for key in r)]
    if not losses:
        return ["## Training metrics", "", "No metrics were logged.", ""]
    found = [("Final training loss", f"{losses[-1]['loss']:.4f} (step {losses[-1].get('step', '?')})")]
    found.append(("First training loss", f"{losses[0]['loss']:.4f} (step {losses[0].get('step', '?')})"))
    if evals:
        last = evals[-1]
        found += [
            (f"Validation {k.removeprefix('eval_')}", f"{v:.4f}") for k, v in last.items() if k.startswith("eval_")
        ]
    peaks = [r["peak_mem_mb"] for r in rows if isinstance(r.get("peak_mem_mb"), int | float)]
    if peaks:
        found.append(("Peak memory per rank", f"{max(peaks):.0f} MB"))
    return ["## Training metrics", "", *table(found), ""]


def run_evals(ws: Workspace, run_id: str) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(eval_id, config.json, result.json) of every finished eval of `run_id` in evals/, oldest first."""
    found = []
    for folder in sorted(ws.evals.iterdir()) if ws.evals.exists() else []:
        if folder.name.startswith(TMP_PREFIX) or not (folder / RESULT).exists():
            continue
        config = read_json(folder / CONFIG, default={}) or {}
        identity = config.get("model_identity") or {}
        if config.get("model") == run_id or identity.get("run_id") == run_id:
            found.append((config.get("created_at") or 0, folder.name, config, read_json(folder / RESULT, default={})))
    return [(eval_id, config, result) for _, eval_id, config, result in sorted(found)]


def estimate_text(estimate: dict[str, Any] | None) -> str:
    """`0.812 (95% CI 0.770 to 0.851)`; `undefined` where the metric could not be computed."""
    if not estimate or estimate.get("value") is None:
        return "undefined"
    low, high = estimate.get("ci_low"), estimate.get("ci_high")
    interval = f" (95% CI {low:.3f} to {high:.3f})" if low is not None and high is not None else ""
    return f"{estimate['value']:.3f}{interval}"


def headline_metrics(result: dict[str, Any]) -> list[tuple[str, str]]:
    """The metrics a reader compares: classification's headline set, every metric of the other tasks."""
    metrics = result.get("metrics") or {}
    names = [n for n in HEADLINE if n in metrics] or [n for n, v in metrics.items() if isinstance(v, dict)]
    return [(name, estimate_text(metrics[name])) for name in names]


def subgroup_gaps(result: dict[str, Any]) -> list[str]:
    """One line per subgroup column: the accuracy gap between its best and worst group, with its CI."""
    lines = []
    for column, fairness in (result.get("fairness") or {}).items():
        gap = ((fairness or {}).get("gaps") or {}).get("accuracy")
        if not gap:
            continue
        small = "; a group is small, read with care" if gap.get("small_group") else ""
        lines.append(
            f"- `{column}`: accuracy gap {estimate_text(gap)}, lowest `{gap.get('low_group')}`, highest "
            f"`{gap.get('high_group')}`{small}"
        )
    return lines


def evaluations_section(ws: Workspace, run_id: str) -> list[str]:
    evals = run_evals(ws, run_id)
    lines = ["## Evaluations", ""]
    if not evals:
        return lines + [f"None yet. Score the run with `medcore eval run {run_id} --dataset DATASET`.", ""]
    for eval_id, config, result in evals:
        where = f"{config.get('dataset', '?')} / {config.get('split', '?')}"
        lines += [f"### {eval_id}: {where}, {result.get('n', config.get('rows', '?'))} examples", ""]
        lines += [f"Dataset content hash: {config.get('dataset_content_hash', 'not recorded')}", ""]
        lines += table(headline_metrics(result), header=("metric", "value"))
        gaps = subgroup_gaps(result)
        lines += ["", "Subgroup gaps:", "", *gaps] if gaps else []
        lines.append("")
    return lines


def limitations_section(spec: RunSpec) -> list[str]:
    scope = (
        f"Intended use: {spec.task} of clinical text like that of dataset `{spec.dataset}`, by a team that has read "
        "the evaluations above, within the governance under which that data may be used."
    )
    return ["## Intended use and limitations", "", scope, "", CLINICAL_CAUTION, ""]


def table(rows: list[tuple[str, Any]], header: tuple[str, str] = ("field", "value")) -> list[str]:
    """A two-column Markdown table; `|` in a value is escaped."""
    out = [f"| {header[0]} | {header[1]} |", "|---|---|"]
    return out + [f"| {key} | {str(value).replace('|', chr(92) + '|')} |" for key, value in rows]
