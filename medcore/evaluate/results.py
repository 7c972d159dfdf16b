"""The eval folder contract: what `medcore eval run` writes under evals/, as constants its readers import.

evals/<eval_id>/          eval_id = eval-<YYYYmmdd-HHMMSS>-<6 hex>
  predictions.parquet     one row per example, `row` (0-based in the split file) first; numbers and labels, no text:
                            classification: y_true, y_pred, p_<label>
                            token-classification: gold, predicted, correct entities, and <count>_<type> per type
                            causal-lm: exact_match, token_f1, rouge_l, embedding_similarity, [yes_no_accuracy
                            (NaN where the reference is not yes/no/maybe)], [output_tokens (in-process models)]
  result.json             the metrics with 95% CIs. classification: n, metrics, per_class, subgroups, fairness
                          (`medcore eval metrics --json`); token-classification and causal-lm: task, n, metrics,
                          subgroups (token-classification also per_type and entities)
  config.json             what was evaluated: options, task, dataset content hash, model identity, medcore version
  outputs.parquet         TEXT-BEARING, only with keep_outputs (`--keep-outputs`): row, and the model's output per
                          row (causal-lm: `output`, the generated text; token-classification: `spans`, the predicted
                          start, end, type, score). Generated text can repeat the note, and spans locate PHI in it:
                          treat the file as PHI (it is never read into the store, logs or metrics).
  comparison.json         only in the reference model's eval of `medcore eval run --compare`: the eval ids and names
                          of the models compared, the options, and the comparison (medcore.evaluate.compare)

A result is written into evals/.tmp-<eval_id>/ and renamed into place, so a crash leaves no half-written folder.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from medcore.errors import MedcoreError
from medcore.rundir import write_json_atomic
from medcore.workspace import Workspace

PREDICTIONS = "predictions.parquet"
RESULT = "result.json"
CONFIG = "config.json"
COMPARISON = "comparison.json"  # written after the folder is in place, by medcore.evaluate.compare
OUTPUTS = "outputs.parquet"  # text-bearing: written only when asked (keep_outputs)
TMP_PREFIX = ".tmp-"  # an unfinished result folder; readers skip it


def new_eval_id() -> str:
    return f"eval-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"


def write_parquet_atomic(path: Path, frame: pd.DataFrame) -> None:
    """Parquet into a temp file beside `path`, then renamed over it: readers never see half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        frame.to_parquet(tmp, index=False)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_eval(
    ws: Workspace,
    predictions: pd.DataFrame,
    result: dict[str, Any],
    config: dict[str, Any],
    outputs: pd.DataFrame | None = None,
) -> tuple[str, Path]:
    """Write a new evals/<eval_id>/ folder atomically; returns (eval_id, its path). `outputs` (text-bearing) only
    when the user asked to keep them."""
    ws.evals.mkdir(parents=True, exist_ok=True)
    eval_id = new_eval_id()
    while (ws.evals / eval_id).exists():  # two evals in one second drew the same 6 hex digits
        eval_id = new_eval_id()
    tmp, final = ws.evals / f"{TMP_PREFIX}{eval_id}", ws.evals / eval_id
    try:
        tmp.mkdir()
        write_parquet_atomic(tmp / PREDICTIONS, predictions)
        write_json_atomic(tmp / RESULT, result)
        write_json_atomic(tmp / CONFIG, {"eval_id": eval_id, **config})
        if outputs is not None:
            write_parquet_atomic(tmp / OUTPUTS, outputs)
        tmp.rename(final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return eval_id, final


@dataclass(frozen=True)
class SavedEval:
    """One evals/<eval_id>/ folder, read back: what the Evaluate page shows."""

    eval_id: str
    config: dict[str, Any]
    result: dict[str, Any]
    predictions: pd.DataFrame
    comparison: dict[str, Any] | None


def load_eval(ws: Workspace, eval_id: str) -> SavedEval:
    """Read a finished eval folder.

    Raises:
        MedcoreError: no such eval, or an unfinished one (its files are missing).
    """
    folder = ws.evals / eval_id
    if eval_id.startswith(TMP_PREFIX) or not all((folder / name).exists() for name in (CONFIG, RESULT, PREDICTIONS)):
        raise MedcoreError(f"No complete eval '{eval_id}' in {ws.evals}. Run `medcore eval run` to make one.")
    comparison = folder / COMPARISON
    return SavedEval(
        eval_id=eval_id,
        config=json.loads((folder / CONFIG).read_text()),
        result=json.loads((folder / RESULT).read_text()),
        predictions=pd.read_parquet(folder / PREDICTIONS),
        comparison=json.loads(comparison.read_text()) if comparison.exists() else None,
    )
