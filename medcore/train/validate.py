"""Check a run spec against the workspace, model and presets before any process spawns; report all problems at once."""

from __future__ import annotations

import os
from typing import Any

from medcore.errors import MedcoreError
from medcore.train.spec import RunSpec, downloads_allowed
from medcore.workspace import Workspace

EVAL_METRICS = {
    "classification": ("eval_loss", "eval_accuracy", "eval_f1"),
    "causal-lm": ("eval_loss", "eval_perplexity"),
    "token-classification": ("eval_loss", "eval_precision", "eval_recall", "eval_f1"),
}
MIN_MAX_LENGTH = 8  # below this a prompt template plus one answer token does not fit


def max_local_processes(device: str) -> int:
    """Ranks one node can run: one per GPU on CUDA, one per CPU core otherwise (more only oversubscribes)."""
    if device == "cuda":
        import torch

        return torch.cuda.device_count()
    return os.cpu_count() or 1


def resolve_device(spec: RunSpec) -> tuple[str, str]:
    """(device, precision) with `auto` resolved: bf16 (else fp16) on CUDA, fp32 on CPU."""
    import torch

    device = spec.device if spec.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    precision = spec.precision
    if precision == "auto":
        precision = ("bf16" if torch.cuda.is_bf16_supported() else "fp16") if device == "cuda" else "fp32"
    return device, precision


def _check_numbers(spec: RunSpec, problems: list[str]) -> None:
    if spec.micro_batch < 1:
        problems.append(f"micro_batch is {spec.micro_batch}; it must be at least 1 (sequences per rank per step)")
    if spec.grad_accum < 1:
        problems.append(f"grad_accum is {spec.grad_accum}; it must be at least 1")
    if spec.max_length < MIN_MAX_LENGTH:
        problems.append(f"max_length is {spec.max_length}; it must be at least {MIN_MAX_LENGTH} tokens")
    metric = spec.early_stopping_metric
    if metric and metric not in EVAL_METRICS[spec.task]:
        problems.append(
            f"early_stopping_metric '{metric}' is not computed for {spec.task}; "
            f"use one of {', '.join(EVAL_METRICS[spec.task])}"
        )


def _check_device(spec: RunSpec, problems: list[str]) -> None:
    import torch

    if spec.device == "cuda" and not torch.cuda.is_available():
        problems.append("device is cuda but no CUDA device is visible; use device=auto or cpu")
        return
    device, precision = resolve_device(spec)
    if device == "cpu" and precision == "fp16":
        problems.append("precision fp16 needs CUDA; use auto, fp32 or bf16 on CPU")
    limit = max_local_processes(device)
    if spec.nproc_per_node > limit:
        what = f"{limit} GPU(s)" if device == "cuda" else f"{limit} CPU core(s)"
        problems.append(
            f"nproc_per_node is {spec.nproc_per_node} but this machine has {what}; {{option:nproc_per_node={limit}}} or fewer"
        )


def _check_dataset(spec: RunSpec, ws: Workspace, problems: list[str]) -> dict[str, Any] | None:
    """Columns, labels, redaction. Returns the manifest's label set info for the model check."""
    from medcore.data.manifest import load_split, read_manifest

    try:
        manifest = read_manifest(ws, spec.dataset)
    except MedcoreError as exc:
        problems.append(str(exc).rstrip("."))
        return None
    mapping = manifest.mapping
    pair = {"text_pair": mapping.text_pair} if mapping.text_pair else {}  # optional, but must exist when mapped
    roles = {
        "classification": {"text": mapping.text, **pair, "label": mapping.label},
        "token-classification": {"text": mapping.text, "spans": mapping.spans},
    }.get(spec.task, {"prompt": mapping.prompt, "response": mapping.response})
    columns = ", ".join(c for c in manifest.columns if c != "source_row")
    for role, column in roles.items():
        if not column:
            problems.append(
                f"dataset '{spec.dataset}' maps no {role} column, which {spec.task} needs; re-import it "
                f"with a {role} column (its columns are: {columns})"
            )
        elif column not in manifest.columns:
            problems.append(f"{role} column '{column}' is not in dataset '{spec.dataset}' (columns: {columns})")
    if not manifest.rows.get("train"):
        problems.append(f"dataset '{spec.dataset}' has an empty train split; re-import with more rows")
    if spec.task == "classification" and mapping.label in manifest.columns:
        allowed = set(manifest.label_set)
        for split in ("train", "validation", "test"):
            if not manifest.rows.get(split):
                continue
            labels = load_split(ws, spec.dataset, split)[mapping.label].astype(str)
            bad = sorted(set(labels) - allowed)
            if bad:
                rows = [int(i) + 1 for i in labels.index[labels.isin(bad)][:5]]
                problems.append(
                    f"{split} split of '{spec.dataset}' has labels outside the label set "
                    f"({len(bad)} unknown value(s), rows {rows}); re-import the dataset"
                )
    if not spec.allow_unredacted:
        from medcore.phi.verify import verify_redaction

        # Checked against the audit log, not trusted from the manifest (which anyone can edit, `override` too).
        check = verify_redaction(ws, spec.dataset, manifest)
        if not check.ok:
            problems.append(check.problem)
    return {"num_labels": len(manifest.label_set) or None}


def _check_model(spec: RunSpec, ws: Workspace, info: dict | None, problems: list[str]) -> None:
    from medcore.models import resolve_model_path
    from medcore.train.lora import build_meta_model, resolve_target_modules
    from medcore.train.presets import load_lora_preset

    try:
        preset = load_lora_preset(spec.lora)
    except MedcoreError as exc:
        problems.append(str(exc).rstrip("."))
        preset = None
    try:
        source = resolve_model_path(spec.model, ws)
        model = build_meta_model(source, spec.task, (info or {}).get("num_labels"), downloads_allowed(spec))
    except MedcoreError as exc:
        problems.append(str(exc).rstrip("."))
        return
    if preset is not None:
        try:
            resolve_target_modules(model, preset.target_modules, spec.model)
        except MedcoreError as exc:
            problems.append(str(exc).rstrip("."))
    _check_positions(spec, model.config, problems)


def _check_positions(spec: RunSpec, config, problems: list[str]) -> None:
    """max_length within the model's position table: past it, the run fails a few steps in with a tensor-size error
    (and resuming fails the same way), so it is refused here, with the limit to use."""
    positions = getattr(config, "max_position_embeddings", None)
    if positions and spec.max_length > positions:
        problems.append(
            f"max_length {spec.max_length} is longer than {spec.model} can read ({positions} positions); "
            f"set max_length to {positions} or less"
        )


def validate_spec(spec: RunSpec, ws: Workspace) -> None:
    """Everything that can be checked without spawning a process: numbers, device, dataset, model, presets.

    Raises:
        MedcoreError: one line listing every problem found.
    """
    from medcore.train.presets import load_zero_preset

    problems: list[str] = []
    _check_numbers(spec, problems)
    _check_device(spec, problems)
    info = _check_dataset(spec, ws, problems)
    _check_model(spec, ws, info, problems)
    try:
        load_zero_preset(spec.zero)
    except MedcoreError as exc:
        problems.append(str(exc).rstrip("."))
    if len(problems) == 1:
        raise MedcoreError(f"Run spec problem: {problems[0]}.")
    if problems:
        listed = "; ".join(f"({i}) {p}" for i, p in enumerate(problems, 1))
        raise MedcoreError(f"Run spec has {len(problems)} problems: {listed}.")
