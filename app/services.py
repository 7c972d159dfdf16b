"""The console's one door into medcore: each call resolves the workspace and caches what is safe to cache.

Cache keys never hold patient text: datasets are keyed by name and content hash, uploads by
Streamlit's file id, runs by id. Engine modules are imported inside the functions that use them, so a
page only pays for the engines it touches.
"""

from __future__ import annotations

import logging
import threading
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from medcore.access.actor import Actor
from medcore.data.manifest import ColumnMapping, DatasetManifest
from medcore.workspace import Workspace, get_workspace

UPLOAD_KEY = "_medcore_upload"  # session_state slot holding the last parsed upload: (file id, frame)
ACTOR_KEY = "_medcore_actor"  # session_state slot app/main.py fills with the signed-in Actor (app/auth.py)


def actor() -> Actor:
    """The signed-in user's Actor (medcore.access), which every engine call made for them carries."""
    from medcore.errors import MedcoreError

    signed_in = st.session_state.get(ACTOR_KEY)
    if signed_in is None:
        raise MedcoreError("Nobody is signed in to this console session: open the console's front page and log in.")
    return signed_in


def acting(action: str, kind: str, **fields: Any) -> AbstractContextManager[dict]:
    """Check the signed-in user's role for `action`, then leave one audit record naming them, `kind` and the object
    (`fields`, by id) with the outcome (medcore.access.acting). Every service that changes data, jobs, models or
    reviews runs inside it: a viewer cannot launch a run by calling the service, whatever the page shows."""
    from medcore.access.acting import acting as audited

    return audited(workspace(), actor(), action, kind=kind, **fields)


def require(action: str, obj: str | None = None, kind: str | None = None, **fields: Any) -> None:
    """Refuse, with the role to ask for, a read the signed-in user's role may not make (on dataset `obj` for a PHI
    preview); a refusal is audited as `kind` with `fields`, a read that is allowed is not."""
    from medcore.access.acting import refusals_audited

    with refusals_audited(workspace(), actor(), action, kind=kind, obj=obj, **({"dataset": obj} if obj else fields)):
        pass


def workspace() -> Workspace:
    """The workspace of this console process ($MEDCORE_HOME, else ./workspace)."""
    return get_workspace()


def _stamp(path: Path) -> int:
    """A cache key that changes when a folder's entries change (datasets are renamed into place)."""
    try:
        return path.stat().st_mtime_ns
    except FileNotFoundError:
        return 0


# ---- data ---------------------------------------------------------------------------------------


@st.cache_data(show_spinner=False, max_entries=16)
def _datasets(root: str, stamp: int) -> list[DatasetManifest]:
    from medcore.data.importer import list_datasets

    return list_datasets(get_workspace(root))


def list_datasets() -> list[DatasetManifest]:
    """Every dataset's manifest, re-read when the datasets folder changes."""
    ws = workspace()
    return _datasets(str(ws.root), _stamp(ws.datasets))


def read_upload(uploaded: Any) -> pd.DataFrame:
    """Parse a Streamlit UploadedFile once per upload (re-runs reuse the frame from session state)."""
    require("import_data", kind="dataset_imported", source_file=uploaded.name)
    from medcore.data.readers import read_upload as parse

    key = (uploaded.file_id, uploaded.name, uploaded.size)
    held = st.session_state.get(UPLOAD_KEY)
    if held and held[0] == key:
        return held[1]
    frame = parse(uploaded.getvalue(), uploaded.name)
    st.session_state[UPLOAD_KEY] = (key, frame)
    return frame


def read_folder(path: str) -> pd.DataFrame:
    """Read a file or dataset folder on the console's machine, from inside the import roots only."""
    from medcore.data.import_roots import read_server_path
    from medcore.errors import MedcoreError

    if not path.strip():
        example = import_roots()[0][0] / "notes.parquet"
        raise MedcoreError(f"Type the path of a file or folder on this machine, e.g. {example}.")
    return read_server_path(workspace(), actor(), path)


def import_roots() -> tuple[list[Path], str]:
    """The folders the path box may read from (MEDCORE_IMPORT_ROOTS, else the workspace's imports/ folder) and the
    engine's note on them."""
    from medcore.data.import_roots import describe_import_roots
    from medcore.data.import_roots import import_roots as roots

    return roots(workspace()), describe_import_roots(workspace())


def suggest_dataset_name(file_name: str) -> str:
    """The engine's naming rule applied to an upload's file name, so the console never copies it."""
    from medcore.data.manifest import suggest_dataset_name as suggest

    return suggest(file_name)


def suggest_mapping(frame: pd.DataFrame) -> ColumnMapping:
    from medcore.data.validate import suggest_mapping as suggest

    return suggest(frame)


def validate_dataset(frame: pd.DataFrame, mapping: ColumnMapping, task: str | None):
    from medcore.data.validate import validate_dataset as validate

    return validate(frame, mapping, task)


def import_dataset(frame: pd.DataFrame, name: str, mapping: ColumnMapping, **options: Any) -> DatasetManifest:
    from medcore.data.importer import import_dataset as do_import

    manifest = do_import(workspace(), frame, name, mapping, actor=actor(), **options)
    _datasets.clear()
    return manifest


@st.cache_data(show_spinner=False, max_entries=8)
def _split(root: str, name: str, split: str, content_hash: str) -> pd.DataFrame:
    from medcore.data.manifest import load_split

    return load_split(get_workspace(root), name, split)


def load_split(manifest: DatasetManifest, split: str) -> pd.DataFrame:
    """One split of a dataset, cached by the dataset's content hash."""
    return _split(str(workspace().root), manifest.name, split, manifest.content_hash)


# ---- runs ---------------------------------------------------------------------------------------


@st.cache_data(show_spinner=False, ttl=2, max_entries=4)
def _runs_table(root: str) -> pd.DataFrame:
    from medcore.jobs import list_runs
    from medcore.store import runs_table

    ws = get_workspace(root)
    # list_runs checks each job's processes and settles a run whose processes died as failed, so the
    # table read next from status.json never shows a dead job as running.
    list_runs(ws)
    return runs_table(ws)


def runs_table() -> pd.DataFrame:
    """One row per run: state, model, presets, step, best metric (refreshed at most every 2 s)."""
    return _runs_table(str(workspace().root))


def refresh_runs() -> None:
    """Forget the cached runs table (after a state change this session saw or caused)."""
    _runs_table.clear()


def run_status(run_id: str):
    from medcore.jobs import run_status as status

    return status(run_id, workspace())


def run_metrics(run_ids: list[str]) -> pd.DataFrame:
    """Metric rows of the runs (the store parses only the lines appended since the last poll)."""
    from medcore.store import metrics

    return metrics(run_ids, ws=workspace())


def model_card(run_id: str) -> str | None:
    """The run's MODEL_CARD.md (written after it completes), or None when it has none yet."""
    from medcore.evaluate.model_card import MODEL_CARD
    from medcore.jobs.state import find_run

    path = find_run(run_id, workspace()).path / MODEL_CARD
    return path.read_text() if path.exists() else None


def read_logs(run_id: str, tail: int = 60) -> str:
    from medcore.jobs import read_logs as logs

    return logs(run_id, tail=tail, ws=workspace())


def cancel_run(run_id: str):
    from medcore.jobs import cancel_run as cancel

    info = cancel(run_id, workspace(), actor=actor())  # checked and audited in the engine
    _runs_table.clear()
    return info


def resume_run(run_id: str) -> str:
    from medcore.jobs import resume_run as resume

    new_id = resume(run_id, workspace(), actor=actor())
    _runs_table.clear()
    return new_id


def launch_run(spec) -> str:
    """Validate the spec, create the run folder and queue the job (torchrun + DeepSpeed) in its own process group."""
    from medcore.jobs import launch_run as launch

    run_id = launch(spec, workspace(), actor=actor())  # the role (and allow_unredacted's) checked, audited
    _runs_table.clear()
    return run_id


# ---- train --------------------------------------------------------------------------------------


def build_spec(fields: dict[str, Any]):
    """A validated RunSpec from the Train page's fields (MedcoreError lists every bad field)."""
    from medcore.train.spec import load_spec

    return load_spec(fields)


@st.cache_data(show_spinner=False, ttl=60)
def list_presets(kind: str) -> dict[str, str]:
    """Preset name -> one-line explanation, for `kind` 'lora' or 'zero'."""
    from medcore.train.presets import describe_presets

    return describe_presets(kind)


def model_limit_problems(spec) -> list[str]:
    """Where the form asks more of the chosen model than its config.json allows (positions, vocabulary, head size):
    the page says so, and disables Launch, before anything starts. Messages name settings as {option:...}."""
    from medcore.train.validate import head_size_of, limit_problems

    ws = workspace()
    return limit_problems(spec, ws, head_size_of(spec, ws))


def estimate_memory(spec):
    """The train engine's memory estimate for `spec` (cached per spec: it builds the model on the meta device)."""
    return _estimate_memory(spec.model_dump_json())


@st.cache_data(ttl=60, show_spinner=False, max_entries=64)
def _estimate_memory(spec_json: str):
    from medcore.train import RunSpec
    from medcore.train import estimate_memory as estimate

    return estimate(RunSpec.model_validate_json(spec_json), workspace())


# ---- phi ----------------------------------------------------------------------------------------


_WARMED = threading.Event()  # set once the warm-up has loaded the detector in this process


def _load_detector() -> None:
    try:
        from medcore.phi.console_info import detector_config, tagger_info
        from medcore.phi.detect import detect_text

        # The rules alone when the tagger is missing: the page then previews with them (and says so).
        detect_text("Warm-up.", detector_config("safe-harbor", None, None, tagger_info()))
        _WARMED.set()
    except Exception as exc:  # noqa: BLE001 - the PHI page reports the real error when it loads the detector
        if not threading.main_thread().is_alive():
            return  # the process is exiting mid-load (transformers can no longer start its loader threads)
        logging.getLogger("medcore.console").warning("PHI detector warm-up failed: %s", type(exc).__name__)


@st.cache_resource(show_spinner=False)
def _detector_warmup() -> threading.Thread:
    # Not a daemon: the interpreter waits for the load to finish before it exits. A daemon thread still inside
    # torch or spaCy's native code when Python tears down aborts the process ("terminate called without an active
    # exception", exit 134): seen at the end of test runs that opened a page moments before.
    thread = threading.Thread(target=_load_detector, name="medcore-phi-warmup", daemon=False)
    thread.start()
    return thread


def detector_ready() -> bool:
    """Whether the background warm-up has loaded the PHI detector in this process (the PHI page says "Loading"
    only while it has not: still loading, or failed, in which case the scan loads it and reports why)."""
    return _WARMED.is_set()


def warm_up() -> None:
    """Start loading the PHI detector (spaCy + Presidio + the tagger, seconds) in the background, once per process.

    The entry calls it on every page, so by the time a user has uploaded data the PHI page is instant.
    """
    _detector_warmup()


def tagger_description(info) -> str:
    """One line on what kind of tagger `info` is (encoder, fast or combined), for a user choosing between them."""
    from medcore.phi.console_info import TAGGER_KINDS

    return TAGGER_KINDS[info.kind]


def stale_figures_message() -> str:
    """What the PHI page says when a tagger was rebuilt after its figures were measured."""
    from medcore.phi.console_info import STALE_FIGURES

    return STALE_FIGURES


def tagger_choices() -> dict[str, Path]:
    """The PHI taggers the page offers, label -> folder, the default first."""
    from medcore.phi.console_info import tagger_choices as choices

    return choices()


def tagger_info(folder: Path | None = None):
    """TaggerInfo of a PHI tagger (the default when None): present or why not, default threshold, cross-validated
    figures.

    Not cached: it reads a few small JSON files and the weights' modification times (their hashes are cached per
    version), and a tagger rebuilt while the console runs shows up at once.
    """
    from medcore.phi.console_info import tagger_info as info

    return info(folder)


def detector_config(mode: str, method: str, threshold: float | None, info):
    """The RedactionConfig the page previews with (the rules alone when the tagger is missing)."""
    from medcore.phi.console_info import detector_config as config

    return config(mode, method, threshold, info)


def record_preview(dataset: str, split: str, records: list[int]) -> None:
    """One audit record when this session first shows raw records of a dataset (by row number, never their text);
    the page reruns on every widget change, so the same records shown again are not recorded again."""
    record_once("phi_previewed", dataset=dataset, split=split, records=tuple(records))


def preview_text(text: str, config, dataset: str | None = None):
    """Detected spans and the redacted text of one note of `dataset` (a clinician-reviewer sees only the datasets
    granted to them). Not cached: cache keys must not hold note text."""
    require("preview_phi", dataset)
    from medcore.phi.redact import preview_text as preview

    _detector_warmup().join()  # share the warm-up's detector instead of loading a second one

    return preview(text, config=config)


def column_decisions(manifest: DatasetManifest, config, keep=(), drop=(), not_phi=()) -> list:
    """What redaction would do with each column of the dataset (ColumnDecision list), cached per dataset content.

    The key holds the dataset's name and hash, column names and settings, never a value.
    """
    key = (tuple(sorted(keep)), tuple(sorted(drop)), tuple(sorted(not_phi)))
    return _column_decisions(
        str(workspace().root), manifest.name, manifest.content_hash, config.model_dump_json(), *key
    )


@st.cache_data(show_spinner="Deciding every column...", max_entries=32)
def _column_decisions(root: str, name: str, content_hash: str, config_json: str, keep, drop, not_phi) -> list:
    from medcore.phi.columns import preview_column_decisions
    from medcore.phi.config import RedactionConfig

    _detector_warmup().join()
    config = RedactionConfig.model_validate_json(config_json)
    return preview_column_decisions(
        get_workspace(root), name, config.mode, keep=keep, drop=drop, not_phi=not_phi, config=config
    )


def start_redaction(
    name: str, mode: str, method: str, out_name: str | None, keep=(), drop=(), not_phi=(), threshold=None, tagger=None
) -> str:
    """Start redacting a whole dataset in its own process, with the column overrides, the tagger and its threshold;
    returns the job id to poll."""
    from medcore.phi.job import start_redaction as start

    overrides = {"keep": list(keep), "drop": list(drop), "not_phi": list(not_phi)}
    return start(workspace(), name, mode, method, out_name or None, threshold=threshold, tagger=tagger,
                 actor=actor(), **overrides)  # fmt: skip


def redaction_status(job_id: str) -> dict[str, Any]:
    from medcore.phi.job import redaction_status as status

    result = status(workspace(), job_id)
    if result.get("state") == "completed":
        _datasets.clear()  # the new dataset appears in every selector
    return result


def redaction_report(name: str):
    """The RedactionReport (column decisions, counts) of the run that wrote dataset `name`; None for other datasets."""
    from medcore.phi.datasets import read_redaction_report

    return read_redaction_report(workspace(), name)


def verify_redaction(name: str):
    """RedactionCheck(ok, problem, record): whether the audit log proves dataset `name` is an unchanged redaction."""
    from medcore.phi.verify import verify_redaction as verify

    return verify(workspace(), name)


def verify_audit_log():
    """VerifyResult(ok, records, problems, head_hash) of the hash-chained audit log."""
    from medcore.phi.audit import verify_audit_log as verify

    return verify(workspace())


def audit_records() -> list[dict[str, Any]]:
    """Every audit record, oldest first (admins only; the PHI page shows them under its verification)."""
    from medcore.access.actor import require as check
    from medcore.phi.audit import read_audit_log

    check(actor(), "view_audit")  # not audited: the PHI page asks on every run, for every role
    return read_audit_log(workspace())


def audit_log():
    """(records oldest first, users, actions) for the Audit page (admins only; a refusal is audited)."""
    from medcore.access.audit_view import filter_choices, read_audit_records

    records = read_audit_records(workspace(), actor())
    return records, *filter_choices(records)


def audit_rows(records: list[dict[str, Any]], **filters: Any) -> list[dict[str, Any]]:
    """Table rows (time, user, action, object, outcome), newest first, for the filters user, action, since, until."""
    from medcore.access.audit_view import audit_rows as rows

    return rows(records, **filters)


def measured_at(info, threshold: float):
    """(nearest measured threshold, its cross-validated recall/precision/per-category recall), or None."""
    from medcore.phi.console_info import measured_at as measured

    return measured(info, threshold)


def threshold_range() -> tuple[float, float]:
    from medcore.phi.console_info import threshold_range as bounds

    return bounds()


def span_rows(spans) -> list[dict]:
    """Category, source (tagger or rule), recognizer and score of each span; offsets only, never text."""
    from medcore.phi.console_info import span_rows as rows

    return rows(spans)


def overridable_columns(manifest: DatasetManifest) -> list[str]:
    """The dataset's columns a user may keep, drop or mark not PHI (every column but the mapped text columns)."""
    from medcore.phi.columns import text_roles

    texts = set(text_roles(manifest.mapping))
    return [c for c in manifest.columns if c not in texts]


def methods_for_mode(mode: str) -> list[str]:
    """The replacement methods a redaction mode allows, its default first."""
    from medcore.phi.console_info import methods_for_mode as methods

    return methods(mode)


# ---- evaluation ---------------------------------------------------------------------------------


def evaluable_tasks() -> tuple[str, ...]:
    """The dataset tasks `medcore eval run` scores."""
    from medcore.evaluate.sources import SUPPORTED_TASKS

    return SUPPORTED_TASKS


def evaluable_models(dataset: str | None) -> list[str]:
    """Completed classification runs (those trained on `dataset` first), then the untuned base encoder."""
    from medcore.evaluate.runner import evaluable_models as models

    return models(workspace(), dataset)


def start_evaluation(model: str, dataset: str, compare: list[str], **options: Any) -> str:
    """Check the request, then score the model(s) in a detached job; returns the job id at once."""
    from medcore.evaluate.job import start_evaluation as start

    return start(workspace(), model, dataset, compare=compare or None, actor=actor(), **options)


def evaluation_status(job_id: str) -> dict[str, Any]:
    from medcore.evaluate.job import evaluation_status as status

    return status(workspace(), job_id)  # the eval list refreshes itself: it is keyed by the evals folder's stamp


@st.cache_data(show_spinner=False, max_entries=4)
def _evals(root: str, stamp: int) -> pd.DataFrame:
    from medcore.store.views import evals_table

    return evals_table(get_workspace(root))


def list_evals() -> pd.DataFrame:
    """Every finished eval, newest first, with accuracy, macro F1 and AUROC and their 95% CIs."""
    ws = workspace()
    return _evals(str(ws.root), _stamp(ws.evals))


@st.cache_data(show_spinner=False, max_entries=16)
def _saved_eval(root: str, eval_id: str, stamp: int):
    from medcore.evaluate.results import load_eval as load

    return load(get_workspace(root), eval_id)


def load_eval(eval_id: str):
    """A finished eval (config, result, predictions, comparison); cached until its folder changes (a side-by-side
    adds comparison.json to the reference's folder after it is in place)."""
    ws = workspace()
    return _saved_eval(str(ws.root), eval_id, _stamp(ws.evals / eval_id))


@st.cache_data(show_spinner=False, max_entries=16)
def _eval_curves(root: str, eval_id: str, stamp: int) -> dict[str, pd.DataFrame]:
    from medcore.evaluate import curves

    saved = _saved_eval(root, eval_id, stamp)
    scored = curves.scored_split(saved.predictions, saved.config["labels"])
    return {
        "confusion": curves.confusion_frame(scored),
        "roc": curves.roc_points(scored),
        "pr": curves.pr_points(scored),
        "reliability": curves.reliability_bins(scored),
    }


def eval_curves(eval_id: str) -> dict[str, pd.DataFrame]:
    """confusion, roc, pr and reliability frames of a finished eval (empty curves when it has no probabilities)."""
    ws = workspace()
    return _eval_curves(str(ws.root), eval_id, _stamp(ws.evals / eval_id))


def operating_point(eval_id: str, sensitivity: float) -> dict[str, Any]:
    """Binary evals: the threshold reaching `sensitivity`, and the specificity there."""
    from medcore.evaluate.curves import operating_point as point
    from medcore.evaluate.curves import scored_split

    saved = load_eval(eval_id)
    return point(scored_split(saved.predictions, saved.config["labels"]), sensitivity)


# ---- blinded review -----------------------------------------------------------------------------


def list_reviews() -> pd.DataFrame:
    """Reviews, newest first: name, items, verdicts, reviewers, closed (no model names)."""
    from medcore.store.views import reviews_table

    return reviews_table(workspace())


def create_review(eval_a: str, eval_b: str, name: str, max_items: int):
    """A blinded review of the rows where two evals of one split disagree (redacts the text: seconds)."""
    from medcore.evaluate.review_sources import create_review_from_evals, review_config

    config = review_config(name=name, max_items=max_items)
    return create_review_from_evals(workspace(), eval_a, eval_b, config, actor=actor())


def next_review_item(review_id: str, reviewer: str):
    """The next item this reviewer has not judged (blinded: Response 1 / Response 2), or None."""
    from medcore.evaluate.review import next_item, open_review

    return next_item(open_review(workspace(), review_id), reviewer)


def record_verdict(review_id: str, item: int, reviewer: str, verdict: str, comment: str) -> dict[str, Any]:
    from medcore.evaluate.review import open_review
    from medcore.evaluate.review import record_verdict as record

    # audited with the verdict, not the free-text comment: it may quote the note
    return record(open_review(workspace(), review_id), item, reviewer, verdict, comment, actor=actor())


def close_review(review_id: str) -> dict[str, Any]:
    from medcore.evaluate.review import close_review as close
    from medcore.evaluate.review import open_review

    return close(open_review(workspace(), review_id), actor=actor())


def review_summary(review_id: str) -> dict[str, Any]:
    """Win rates with Wilson CIs, ties, Cohen's kappa; only for a closed review (unblinded)."""
    from medcore.evaluate.review import open_review
    from medcore.evaluate.review_summary import summarize_review

    return summarize_review(open_review(workspace(), review_id))


def export_preferences(review_id: str) -> bytes:
    """The closed review's preference pairs (prompt, chosen, rejected) as JSONL bytes, also kept in its folder."""
    require("manage_reviews")
    from medcore.evaluate.review import open_review
    from medcore.evaluate.review_summary import export_preferences as export

    data = export(open_review(workspace(), review_id)).read_bytes()
    record_once("preferences_exported", review_id=review_id)
    return data


def record_once(kind: str, **fields: Any) -> None:
    """One audit record per session for what a page shows or builds again on every run (a preview, a download
    button's data), naming the signed-in user and the object by id."""
    from medcore.access.acting import record

    done = st.session_state.setdefault("_medcore_recorded_once", set())
    key = (kind, tuple(sorted(fields.items())))
    if key not in done:
        record(
            workspace(), actor(), kind, "ok", **{k: list(v) if isinstance(v, tuple) else v for k, v in fields.items()}
        )
        done.add(key)


# ---- chat and serving ---------------------------------------------------------------------------


def list_servers() -> list:
    """The workspace's managed servers (ServerInfo), newest first; a process found gone is listed dead."""
    from medcore.serve.manage import list_servers as servers

    return servers(workspace())


def stop_server(name: str):
    """Stop managed server `name` (SIGTERM, then SIGKILL after a grace period)."""
    from medcore.serve.manage import stop_server as stop

    return stop(name, workspace(), actor=actor())


def servable_models() -> list[str]:
    """What a chat server can be started for: the registry's causal LMs, then completed causal-lm runs."""
    from medcore.serve.launch import servable_models as models

    return models(workspace())


def servable_run(run_id: str) -> bool:
    """Whether the Chat page can serve this run (a completed causal-lm run with an adapter)."""
    from medcore.serve.launch import servable_run as servable

    return servable(run_id, workspace())


def env_api_key() -> str | None:
    """The key sent to managed servers ($MEDCORE_SERVE_API_KEY, the one they start with), never shown."""
    from medcore.serve.launch import env_api_key as key

    return key()


@st.cache_resource(show_spinner=False)
def _serve_requests() -> dict[str, dict[str, Any]]:
    """Serve requests of this console process by id: model, done, served (ServedModel) or error."""
    return {}


def _serve_in_background(request: dict[str, Any], root: str) -> None:
    from medcore.errors import MedcoreError
    from medcore.serve.launch import serve_model as serve

    try:
        request["served"] = serve(request["model"], get_workspace(root))
    except MedcoreError as exc:
        request["error"] = str(exc)
    except Exception as exc:  # noqa: BLE001 - reported on the page as ui.guard does: the type, never the message
        import traceback

        logging.getLogger("medcore.console").error(
            "Serving failed with %s:\n%s", type(exc).__name__, "".join(traceback.format_tb(exc.__traceback__))
        )
        request["error"] = f"Serving failed unexpectedly ({type(exc).__name__}); see the console's server log."
    finally:
        request["done"] = True


def serve_model(model: str) -> str:
    """Serve `model` (tiny-llama or a servable run id) on a managed server: a running server of its base is reused
    (a run's adapter loaded into it), else one is started. A start waits for the server's /health (seconds on CPU,
    minutes for vLLM), so it runs in a thread, never in a script run; returns the id to poll with serve_progress."""
    import uuid

    request_id = uuid.uuid4().hex[:12]
    with acting("serve_model", "server_start_requested", model=model, request_id=request_id):
        pass  # the start itself runs in a thread (it waits for /health); the request is what the user did
    request = _serve_requests()[request_id] = {"model": model, "done": False, "served": None, "error": None}
    threading.Thread(
        target=_serve_in_background, args=(request, str(workspace().root)), name="medcore-serve-start", daemon=True
    ).start()
    return request_id


def serve_progress(request_id: str) -> dict[str, Any] | None:
    """A serve request's state (model, done, served, error); None when this console process did not start it."""
    return _serve_requests().get(request_id)


def list_models(url: str, api_key: str | None = None) -> list[str]:
    """The model names an OpenAI-compatible server serves (asked each time: adapters come and go)."""
    from medcore.serve.client import list_models as models

    return models(url, api_key)


def stream_chat(url: str, model: str, messages: list[dict[str, str]], **options: Any):
    """The answer's text pieces as the server streams them (api_key, temperature, max_tokens as options)."""
    from medcore.serve.client import stream_chat as stream

    with acting("chat", "chat_message", model=model, messages=len(messages)):  # counts only: prompts may hold PHI
        return stream(url, model, messages, **options)


def guard_prompt(system: str, prompt: str, guard: bool):
    """GuardedPrompt: the system prompt and prompt as they will be sent (PHI masked when `guard`) and the counts."""
    from medcore.serve.chat import prepare_prompt

    _detector_warmup().join()  # the warm-up loads spaCy and Presidio once; the guard then reuses them
    return prepare_prompt(system, prompt, guard)


def messages_for(turns: list[dict[str, Any]], model: str, system: str) -> list[dict[str, str]]:
    """The messages sent to `model`: the system prompt, the user turns and this model's own earlier answers."""
    from medcore.serve.chat import messages_for as build

    return build(turns, model, system)


def new_chat_id() -> str:
    from medcore.serve.transcripts import new_chat_id as new_id

    return new_id()


def save_transcript(chat_id: str, role: str, content: str, model: str | None = None) -> None:
    """Append a turn to the chat's transcript; the store masks PHI in it first, whatever the page's guard setting."""
    from medcore.serve.transcripts import append_turn

    append_turn(chat_id, role, content, model=model, ws=workspace())


def export_transcript(chat_id: str) -> bytes:
    """The chat's stored (PHI-masked) transcript as JSONL bytes, one turn a line."""
    import json

    from medcore.serve.transcripts import read_transcript

    return "".join(json.dumps(turn) + "\n" for turn in read_transcript(chat_id, workspace())).encode()


def send_pairs_to_review(pairs: list[dict[str, str]], name: str):
    """A new blinded review of side-by-side answers (prompt, model_a, output_a, model_b, output_b each); the text is
    PHI-masked and the model names sealed until the review is closed. A name holding a model name is refused."""
    from medcore.evaluate.review_sources import create_review_from_pairs, review_config, review_pair

    config = review_config(name=name.strip() or None)
    return create_review_from_pairs(workspace(), [review_pair(**pair) for pair in pairs], config, actor=actor())


# ---- label balance ------------------------------------------------------------------------------


@st.cache_data(show_spinner=False, max_entries=32)
def _label_counts(root: str, name: str, content_hash: str) -> pd.DataFrame:
    from medcore.data.label_stats import label_counts as counts

    return counts(get_workspace(root), name)


def label_counts(manifest: DatasetManifest) -> pd.DataFrame:
    """Rows per label and split (cached by the dataset's content hash); empty without a label column."""
    return _label_counts(str(workspace().root), manifest.name, manifest.content_hash)


def imbalance_note(counts: pd.DataFrame) -> str | None:
    from medcore.data.label_stats import imbalance_note as note

    return note(counts)
