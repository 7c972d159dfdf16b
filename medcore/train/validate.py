"""Check a run spec against the workspace, model and presets before any process spawns; report all problems at once."""

from __future__ import annotations

import os

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


def _check_dataset(spec: RunSpec, ws: Workspace, problems: list[str]) -> int | None:
    """Columns, labels, redaction. Returns the outputs the model's head needs (classes or BIO tags; None: no head)."""
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
    if all(column in manifest.columns for column in roles.values()):  # else the missing column is the problem
        _check_labels(spec, len(manifest.label_set), problems)
    return head_size(spec.task, manifest.label_set)


def head_size(task: str, label_set: list) -> int | None:
    """Outputs a run's head has: the dataset's classes, or its BIO tags for token classification (None: no head)."""
    from medcore.train.data import head_labels

    return len(head_labels(task, [str(label) for label in label_set])) or None


def head_size_of(spec: RunSpec, ws: Workspace) -> int | None:
    """head_size of the run's dataset as it is now; None when the dataset is gone (the other limits still apply)."""
    from medcore.data.manifest import read_manifest

    try:
        return head_size(spec.task, read_manifest(ws, spec.dataset).label_set)
    except MedcoreError:
        return None


def _check_model(spec: RunSpec, ws: Workspace, head_size: int | None, problems: list[str]) -> None:
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
        model = build_meta_model(source, spec.task, head_size, downloads_allowed(spec))
    except MedcoreError as exc:
        problems.append(str(exc).rstrip("."))
        return
    if preset is not None:
        try:
            resolve_target_modules(model, preset.target_modules, spec.model)
        except MedcoreError as exc:
            problems.append(str(exc).rstrip("."))
    problems.extend(limit_problems(spec, ws, head_size))


def _check_labels(spec: RunSpec, label_count: int, problems: list[str]) -> None:
    """A classifier needs two classes (one would learn nothing: its cross-entropy is always 0); a token tagger one
    span type."""
    if spec.task == "classification" and label_count < 2:
        problems.append(
            f"dataset '{spec.dataset}' has {label_count} class(es) in its label column; classification needs at "
            "least 2: re-import it with a label column that holds two or more classes"
        )
    elif spec.task == "token-classification" and label_count < 1:
        problems.append(f"dataset '{spec.dataset}' has no span types to tag; re-import it with its span column")


def tokenizer_size(spec: RunSpec, ws: Workspace) -> int | None:
    """Tokens the model's tokenizer can emit (added tokens included); None when it cannot be read locally."""
    from medcore.models import load_tokenizer

    try:
        return len(load_tokenizer(spec.model, ws))
    except (MedcoreError, OSError, ValueError):
        return None


def limit_problems(spec: RunSpec, ws: Workspace, head_size: int | None = None) -> list[str]:
    """Where `spec` asks more of its model than the model's config.json allows; each would fail the run at run time.

    Past the position table, a run fails a few steps in with a tensor-size error; a token id past the embedding
    matrix, with an index error; a trained head of another size, at load. Resuming fails the same way, so
    medcore.train.failure names these too when a run that skipped this check dies of one.

    Args:
        head_size: outputs the dataset needs of a classification or tagging head; None skips the head check.
    """
    from medcore.model_limits import read_model_limits

    limits = read_model_limits(spec.model, ws)
    if limits is None:
        return []
    problems = []
    if limits.positions and spec.max_length > limits.positions:
        problems.append(
            f"max_length {spec.max_length} is longer than {spec.model} can read ({limits.positions} positions); "
            f"{{option:max_length={limits.positions}}} or less"
        )
    tokens = tokenizer_size(spec, ws) if limits.vocab_size else None
    if tokens and tokens > limits.vocab_size:
        problems.append(
            f"the tokenizer of {spec.model} has {tokens} tokens but its embedding matrix has {limits.vocab_size} rows, "
            f"so token ids from {limits.vocab_size} on fail at run time; use the tokenizer saved with the model"
        )
    if head_size and spec.task != "causal-lm" and limits.head_labels and head_size != limits.head_labels:
        problems.append(
            f"{spec.model} ships a trained {limits.head_task} head with {limits.head_labels} outputs but {spec.task} "
            f"on dataset '{spec.dataset}' needs {head_size}; start from the base model (without a head) or use a "
            "dataset with the same labels"
        )
    return problems


def validate_spec(spec: RunSpec, ws: Workspace) -> None:
    """Everything that can be checked without spawning a process: numbers, device, dataset, model, presets.

    Raises:
        MedcoreError: one line listing every problem found.
    """
    from medcore.train.presets import load_zero_preset
    from medcore.train.trackers import install_hint, missing_trackers

    problems: list[str] = []
    _check_numbers(spec, problems)
    _check_device(spec, problems)
    head_size = _check_dataset(spec, ws, problems)
    _check_model(spec, ws, head_size, problems)
    try:
        load_zero_preset(spec.zero)
    except MedcoreError as exc:
        problems.append(str(exc).rstrip("."))
    missing = missing_trackers(spec.report_to)
    if missing:
        problems.append(f"report_to names {', '.join(missing)}, not installed here: {install_hint(missing)}")
    if len(problems) == 1:
        raise MedcoreError(f"Run spec problem: {problems[0]}.")
    if problems:
        listed = "; ".join(f"({i}) {p}" for i, p in enumerate(problems, 1))
        raise MedcoreError(f"Run spec has {len(problems)} problems: {listed}.")
