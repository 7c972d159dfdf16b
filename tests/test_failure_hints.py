"""A failed run's hint fits its cause: past the model's limits it names the setting and the limit, never "resume"."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest
import torch
from train_datasets import write_dataset

from medcore.train import load_spec, prepare_run_dir
from medcore.train.failure import GENERIC_HINT, explain_failure

CANARY = "JOHN QWERTY SMITH MRN 99887766"  # planted PHI: must never reach an error or a hint


@pytest.fixture
def notes_ws(workspace):
    write_dataset(workspace, "notes", "classification", n=60)
    return workspace


def spec_data(**overrides) -> dict:
    return {"dataset": "notes", "task": "classification", "model": "minilm", "max_length": 64, **overrides}


def raised(call) -> BaseException:
    try:
        call()
    except Exception as exc:  # noqa: BLE001 - the exception is what the test inspects
        return exc
    raise AssertionError("expected an exception")


def position_overflow() -> BaseException:
    """The real error a BERT raises for 771 tokens against its 512 positions (a tiny BERT, same table size)."""
    from transformers import BertConfig, BertModel

    model = BertModel(BertConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32))
    return raised(lambda: model(input_ids=torch.ones(1, 771, dtype=torch.long)))


def test_position_overflow_names_max_length_and_the_limit(notes_ws):
    exc = position_overflow()
    assert "expanded size of the tensor (771)" in str(exc)  # the symptom in the issue
    error, hint = explain_failure(exc, spec_data(max_length=2048), notes_ws)
    assert "max_length 2048 is longer than minilm can read (512 positions); set max_length to 512 or less" in hint
    assert "resuming this one would fail the same way" in hint and "resume from" not in hint
    assert error.startswith("RuntimeError raised") and error.endswith("more of its model than the model can take")
    assert "771" not in error + hint and "expanded" not in error + hint  # nothing quoted from the exception


def test_token_ids_past_the_embeddings_name_the_tokenizer(tmp_path, notes_ws):
    from transformers import BertConfig, BertModel

    from medcore.models import load_tokenizer

    folder = tmp_path / "small-vocab"
    BertModel(BertConfig(vocab_size=1000, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=32)).save_pretrained(folder)  # fmt: skip
    load_tokenizer("minilm").save_pretrained(folder)  # 30522 tokens for 1000 rows
    exc = raised(lambda: torch.nn.Embedding(1000, 4)(torch.tensor([[2000]])))
    _, hint = explain_failure(exc, spec_data(model=str(folder)), notes_ws)
    assert "has 30522 tokens but its embedding matrix has 1000 rows" in hint and "resume from" not in hint


def test_other_failures_keep_the_generic_hint_and_no_message(notes_ws):
    unrelated = raised(lambda: int(CANARY))
    assert explain_failure(unrelated, spec_data(max_length=2048), notes_ws)[1] == GENERIC_HINT
    # The symptom, but the spec is within the model's limits: not this cause.
    assert explain_failure(position_overflow(), spec_data(max_length=512), notes_ws)[1] == GENERIC_HINT


def test_phi_in_a_matching_message_never_reaches_error_or_hint(notes_ws):
    exc = IndexError(f"index out of range in self while reading {CANARY}")
    error, hint = explain_failure(exc, spec_data(max_length=4096), notes_ws)
    assert "set max_length to 512 or less" in hint
    assert CANARY not in error + hint and "QWERTY" not in error + hint


def test_an_unreadable_spec_falls_back_to_the_generic_hint(notes_ws):
    exc = position_overflow()
    assert explain_failure(exc, {"dataset": "notes", "max_length": "not a number"}, notes_ws)[1] == GENERIC_HINT
    assert explain_failure(exc, spec_data(model="nobody/not-cached", max_length=4096), notes_ws)[1] == GENERIC_HINT


def test_a_run_that_skipped_validation_records_the_fitting_hint(notes_ws):
    """The trainer itself (python -m medcore.train): long notes against max_length 2048 fail in the first step."""
    folder = notes_ws.datasets / "notes"
    for split in ("train", "validation", "test"):
        frame = pd.read_parquet(folder / f"{split}.parquet")
        frame["note"] = frame["note"].map(lambda note: " ".join([note] * 120))  # ~800+ tokens a note
        frame.to_parquet(folder / f"{split}.parquet", index=False)
    from train_datasets import certify_redacted

    certify_redacted(notes_ws, "notes")
    spec = load_spec(spec_data(max_length=2048, micro_batch=2, max_steps=2, evaluate_after=False))
    rd = prepare_run_dir(spec, notes_ws)  # as a hand-made run folder would: validate_spec is not called
    proc = subprocess.run([sys.executable, "-m", "medcore.train", str(rd.path)], capture_output=True, text=True,
                          timeout=240)  # fmt: skip
    status = json.loads(rd.status.read_text())
    assert proc.returncode == 1 and status["state"] == "failed", proc.stderr[-2000:]
    assert "set max_length to 512 or less" in status["hint"] and "resume from" not in status["hint"]
    assert "expanded size" not in proc.stderr  # the library's message stays out of the log too
