"""No patient text from a failing library call reaches status.json, train.log or the Runs page; models load offline.

A dataset changed after the launch checks (a re-import) carries a label the head does not know, holding canary PHI:
the KeyError raised on it would quote it. The trainer records the exception's type and MedCore location instead.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap

import pytest
from polling import wait_for
from train_datasets import import_certified_notes

from medcore.data.manifest import load_split, split_path
from medcore.errors import MedcoreError
from medcore.jobs import read_logs, run_status, submit_command
from medcore.rundir import FINAL_STATES
from medcore.train import load_spec, prepare_run_dir, torchrun_command
from medcore.train.data import tokenize_classification
from medcore.train.failure import describe_exception, format_traceback
from medcore.train.spec import set_offline_mode

CANARY = "Canary Jane Doe MRN 88127733"


@pytest.fixture
def notes(workspace):
    import_certified_notes(workspace)
    return workspace


def raise_chained():
    try:
        {"a": 0}[CANARY]
    except KeyError as exc:
        raise ValueError(f"bad label {CANARY}") from exc


def fake_tokenizer(texts, **kwargs):
    return {"input_ids": [[101, 102]] * len(texts)}


def test_a_library_exception_is_described_by_type_and_medcore_location_only():
    with pytest.raises(KeyError) as err:  # the label lookup quotes the unknown label
        tokenize_classification(["a note"], [CANARY], ["a", "b"], fake_tokenizer, 8)
    assert re.fullmatch(r"KeyError raised at medcore/train/data\.py:\d+", describe_exception(err.value))
    assert CANARY not in format_traceback(err.value)
    with pytest.raises(ValueError) as err:
        raise_chained()
    assert describe_exception(err.value) == "ValueError raised outside MedCore"
    text = format_traceback(err.value)
    assert CANARY not in text
    # Both exceptions, in Python's order, each with its frames and type.
    assert text.index("KeyError: (message withheld") < text.index("direct cause") < text.index("ValueError: (message")
    assert "in raise_chained" in text
    own = MedcoreError("Column 'note' not found in train.parquet; columns are: id, text.")
    assert describe_exception(own) == str(own) and str(own) in format_traceback(own)  # MedCore's own words are kept
    # A full disk is still named (system text and fixed phrases only), so the failure reason can say so.
    full = OSError(28, "No space left on device", f"/ws/{CANARY}.tmp")
    assert format_traceback(full).endswith("OSError: [Errno 28] No space left on device\n")
    oom = RuntimeError(f"DefaultCPUAllocator: can't allocate memory for {CANARY}")
    assert "it mentions: DefaultCPUAllocator: can't allocate memory)" in format_traceback(oom)
    assert CANARY not in format_traceback(full) + format_traceback(oom)


@pytest.mark.slow
def test_canary_phi_in_a_failing_dataset_reaches_neither_status_nor_log(notes):
    spec = load_spec({"dataset": "notes", "max_steps": 4, "micro_batch": 4, "max_length": 32})
    rd = prepare_run_dir(spec, notes)
    # Re-imported after the checks: a label outside the head's label set, holding patient text.
    train = load_split(notes, "notes", "train")
    train.loc[train.index[3], "label"] = CANARY
    train.to_parquet(split_path(notes, "notes", "train"))
    submit_command(rd, torchrun_command(spec, rd))

    info = wait_for(lambda: (i := run_status(rd.run_id, notes)).state in FINAL_STATES and i.ended_at and i, 120, "end")
    assert info.state == "failed"
    assert "KeyError raised at medcore/train/data.py:" in info.error, info.error
    assert "KeyError" in rd.log.read_text()  # the traceback is there, for the engineer
    for where in (rd.status.read_text(), rd.log.read_text(), read_logs(rd.run_id, 500, notes), str(info.to_dict())):
        assert "88127733" not in where and "Jane Doe" not in where


GUARD = textwrap.dedent(
    """
    import os, socket
    LOG = os.environ["GUARD_LOG"]
    def local(host):
        return str(host).startswith("127.") or str(host) in ("::1", "localhost", "0.0.0.0", "", socket.gethostname())
    def record(host):
        with open(LOG, "a") as fh:
            fh.write(f"{host}\\n")
    _getaddrinfo, _connect = socket.getaddrinfo, socket.socket.connect
    def getaddrinfo(host, *args, **kwargs):
        if not local(host):
            record(host)
            raise socket.gaierror("blocked by the test guard")
        return _getaddrinfo(host, *args, **kwargs)
    def connect(self, address):
        if isinstance(address, tuple) and not local(address[0]):
            record(address[0])
            raise OSError("blocked by the test guard")
        return _connect(self, address)
    socket.getaddrinfo, socket.socket.connect = getaddrinfo, connect
    """
)


@pytest.fixture
def online_env(tmp_path):
    """The environment of `source .venv/bin/activate; medcore ...` (no offline variables), every lookup of a
    non-local host recorded and refused."""
    guard = tmp_path / "guard"
    guard.mkdir()
    (guard / "sitecustomize.py").write_text(GUARD)
    log = tmp_path / "lookups.log"
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env.update(PYTHONPATH=os.pathsep.join([str(guard), env.get("PYTHONPATH", "")]), GUARD_LOG=str(log),
               HF_HOME=str(tmp_path / "hf-home"))  # fmt: skip
    return env, log


def test_a_missing_hub_model_is_refused_without_contacting_the_hub(notes, online_env, tmp_path):
    env, log = online_env
    spec = tmp_path / "spec.yaml"
    spec.write_text("dataset: notes\nmodel: some-org/clinical-model\n")
    proc = subprocess.run([sys.executable, "-m", "medcore", "train", str(spec), "--dry-run"], env=env,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 1
    assert "hf download some-org/clinical-model" in proc.stderr and "allow_downloads" in proc.stderr, proc.stderr
    assert not log.exists(), log.read_text()


@pytest.mark.slow
def test_the_trainer_loads_models_from_local_files_only(notes, online_env):
    env, log = online_env
    spec = load_spec({"dataset": "notes", "model": "some-org/clinical-model", "max_steps": 2})
    rd = prepare_run_dir(spec, notes)  # skips the launch checks, as a hand-made run folder does
    proc = subprocess.run([sys.executable, "-m", "medcore.train", str(rd.path)], env=env, capture_output=True,
                          text=True, timeout=180)  # fmt: skip
    assert proc.returncode == 1
    assert "not available locally" in rd.read_status()["error"]
    assert not log.exists(), log.read_text()


def test_downloads_are_opt_in(monkeypatch):
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "MEDCORE_ALLOW_DOWNLOADS"):
        monkeypatch.delenv(name, raising=False)
    set_offline_mode({"allow_downloads": True})
    assert "HF_HUB_OFFLINE" not in os.environ
    set_offline_mode({})
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setenv("MEDCORE_ALLOW_DOWNLOADS", "1")
    set_offline_mode({})
    assert "HF_HUB_OFFLINE" not in os.environ
