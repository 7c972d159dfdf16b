"""What the `model` of an eval names, and how its weights load: a run, a base model, or an OpenAI-compatible endpoint.

A run is its adapter merged into its base model (or the whole model of a full fine-tune); a base model gets a fresh
head where the task needs one, drawn from a fixed seed so the same base gives the same scores (a chance baseline);
an endpoint (medcore.evaluate.endpoint) is only called, never loaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medcore.data.manifest import DatasetManifest
from medcore.errors import MedcoreError
from medcore.evaluate.endpoint import Endpoint, is_endpoint, parse_endpoint
from medcore.fileio import sha256_files
from medcore.jobs.state import find_run
from medcore.models import REGISTRY_NAMES, load_model, resolve_model_path
from medcore.rundir import ADAPTER_CONFIG, RunDir
from medcore.train.spec import RunSpec, load_spec
from medcore.workspace import Workspace

SUPPORTED_TASKS = ("classification", "token-classification", "causal-lm")  # what evaluate_model scores
CLASSIFIER_TASKS = ("classification",)  # what load_classifier / predict_split score: class probabilities
FRESH_HEAD_SEED = 0  # a base model's new head: seeded, so a baseline is reproducible
FULL_MODEL_DIR = "model"  # where a full fine-tune (lora: full) leaves its weights, instead of adapter/
MODEL_CONFIG = "config.json"  # a Hugging Face model folder's config
MAX_LENGTH = RunSpec.model_fields["max_length"].default  # a base model's truncation: a default run's max_length


@dataclass(frozen=True)
class ModelSource:
    """What a `model` argument names: a run's trained weights on its base model, a base model alone, or an endpoint."""

    base: str  # registry name, folder or hub id of the base model (an endpoint: the argument as given)
    run: RunDir | None = None
    spec: RunSpec | None = None
    endpoint: Endpoint | None = None

    @property
    def weights(self) -> Path | None:
        """The run's trained weights: its adapter folder, or the whole model of a full fine-tune."""
        if self.run is None or self.spec is None:
            return None
        return self.run.path / FULL_MODEL_DIR if self.spec.lora == "full" else self.run.adapter

    @property
    def max_length(self) -> int:
        """Tokens a model input may hold: the run's max_length, MAX_LENGTH for a base model."""
        return self.spec.max_length if self.spec else MAX_LENGTH


def resolve_source(model: str, ws: Workspace, tasks: tuple[str, ...] = SUPPORTED_TASKS) -> ModelSource:
    """A run id -> its validated run; `openai:URL#MODEL` -> an endpoint; a registry name, folder or hub id -> a base.

    Raises:
        MedcoreError: an unknown run (listing runs), a run of a task outside `tasks`, a run without trained weights,
            a malformed endpoint.
    """
    if is_endpoint(model):
        return ModelSource(base=model, endpoint=parse_endpoint(model))
    is_run = "/" not in model and not model.startswith(".") and (ws.runs / model).is_dir()
    if not is_run and (model in REGISTRY_NAMES or "/" in model or Path(model).expanduser().exists()):
        return ModelSource(base=model)
    try:
        rd = find_run(model, ws)
    except MedcoreError as exc:
        raise MedcoreError(
            f"{exc} Or pass a registry model ({', '.join(REGISTRY_NAMES)}), a model folder or an endpoint "
            "(openai:URL#MODEL)."
        ) from None
    spec = load_spec(rd.spec)
    check_task(spec.task, f"Run '{rd.run_id}'", tasks)
    source = ModelSource(base=spec.model, run=rd, spec=spec)
    if not (source.weights / (MODEL_CONFIG if spec.lora == "full" else ADAPTER_CONFIG)).exists():
        state = rd.read_status().get("state", "unknown")
        raise MedcoreError(
            f"Run '{rd.run_id}' has no adapter yet ({source.weights} is missing or incomplete; state: {state}). "
            f"Wait for it to complete (`medcore runs status {rd.run_id}`), or resume it if it stopped or failed "
            f"(`medcore runs resume {rd.run_id}`), then evaluate again."
        )
    return source


def check_task(task: str | None, what: str, tasks: tuple[str, ...] = SUPPORTED_TASKS) -> None:
    """Refuse a run or dataset of a task outside `tasks` (the classifier loader's, or evaluate_model's)."""
    if task in tasks:
        return
    kind = "run" if what.startswith("Run") else "dataset"
    if tasks == CLASSIFIER_TASKS:
        scope = (
            "classification today with class probabilities from a classifier head, and token-classification and "
            "causal-lm through evaluate_model: load_classifier loads classifiers only"
        )
    else:
        scope = ", ".join(tasks)
    raise MedcoreError(
        f"{what} is a {task or 'text-only (no task)'} {kind}; `medcore eval run` supports {scope}. Score other "
        "models' predictions with `medcore eval metrics PREDICTIONS_FILE`."
    )


def check_source_task(source: ModelSource, manifest: DatasetManifest) -> None:
    """A run is evaluated on a dataset of its own task; an endpoint generates text, so on a causal-lm dataset only."""
    if source.endpoint is not None and manifest.task != "causal-lm":
        raise MedcoreError(
            f"Dataset '{manifest.name}' is a {manifest.task} dataset, and an OpenAI-compatible endpoint is evaluated "
            "on generation (causal-lm datasets: prompt and response) only: the OpenAI API has no classification "
            "route. Evaluate the run or model folder itself (`medcore eval run RUN_ID`)."
        )
    if source.spec is not None and source.spec.task != manifest.task:
        raise MedcoreError(
            f"Run '{source.run.run_id}' is a {source.spec.task} run and dataset '{manifest.name}' is a "
            f"{manifest.task} dataset. Evaluate the run on a {source.spec.task} dataset (it was trained on "
            f"'{source.spec.dataset}')."
        )


def build_network(source: ModelSource, task: str, head: list[str], ws: Workspace):
    """The model for `task` (fp32, not yet in eval mode): the base with a head of `head` outputs (none for a causal
    LM), the run's adapter merged in, or the run's full fine-tune. Seed torch first for a reproducible fresh head."""
    id2label = dict(enumerate(head)) or None
    if source.weights is None:
        return load_model(source.base, task, id2label=id2label, workspace=ws)
    if source.spec.lora == "full":
        return load_model(str(source.weights), task, id2label=id2label, workspace=ws)
    from peft import PeftModel

    base = load_model(source.base, task, id2label=id2label, workspace=ws)
    try:
        return PeftModel.from_pretrained(base, source.weights).merge_and_unload()
    except RuntimeError as exc:
        if "size mismatch" not in str(exc):
            raise
        outputs = "classes" if task == "classification" else "outputs"
        raise MedcoreError(
            f"The adapter of run '{source.run.run_id}' does not fit {len(head)} {outputs}: its head was trained on "
            f"other labels than dataset '{source.spec.dataset}' now holds (re-imported since?)."
        ) from None


def weights_sha256(folder: Path) -> str:
    """sha256 over the folder's weight files (safetensors or .bin), in name order."""
    return sha256_files(sorted(p for p in folder.iterdir() if p.suffix in (".safetensors", ".bin")))


def model_identity(source: ModelSource, ws: Workspace) -> dict[str, Any]:
    """What was evaluated, by name and hash: a run and its weights, a base model with a seeded fresh head, or an
    endpoint (its URL without credentials, and the served model's name)."""
    if source.endpoint is not None:
        return source.endpoint.identity()
    if source.weights is None:
        path = resolve_model_path(source.base, ws)
        return {"kind": "base", "name": source.base, "path": str(path), "head_seed": FRESH_HEAD_SEED}
    return {
        "kind": "run",
        "run_id": source.run.run_id,
        "base_model": source.base,
        "weights": "full" if source.spec.lora == "full" else "adapter",
        "weights_sha256": weights_sha256(source.weights),
        "trained_on": source.spec.dataset,
    }
