"""Runs page (AppTest): the runs table, per-run charts/logs/failure hint, cancel and resume, overlay compare."""

from __future__ import annotations

import base64
import json
import sys
import time

import numpy as np
import pytest
from app_helpers import open_page, texts, widget

from medcore.jobs import run_status, submit_command
from medcore.rundir import RunDir, write_json_atomic
from medcore.store import clear_cache
from medcore.train import RunSpec


@pytest.fixture(autouse=True)
def fresh_metric_cache():
    clear_cache()
    yield
    clear_cache()


def make_run(ws, run_id: str, state: str, losses: list[float], created: float, **status) -> RunDir:
    """A run folder as the trainer leaves it (spec, launch, status, metrics.jsonl, train.log)."""
    rd = RunDir(ws.runs / run_id)
    rd.path.mkdir(parents=True)
    spec = RunSpec(model="minilm", task="classification", dataset="notes", lora="small", zero="multi_node")
    write_json_atomic(rd.spec, spec.model_dump())
    write_json_atomic(rd.launch, {"queued_at": created, "started_at": created})
    rd.update_status(state=state, step=len(losses), max_steps=len(losses), **status)
    rows = [
        {"step": i + 1, "loss": loss, "lr": 1e-4 * (1 - i / 10), "tokens_per_s": 500.0 + i, "memory_mb": 900.0}
        for i, loss in enumerate(losses)
    ]
    rd.metrics.write_text("".join(json.dumps(r) + "\n" for r in rows))
    rd.log.write_text(f"starting {run_id}\nstep {len(losses)} done\n")
    return rd


def charts(at, prefix: str) -> list[dict]:
    """The plotly figures whose widget key starts with `prefix`, in panel order (loss, lr, tokens/s, memory)."""
    found = sorted((c for c in at.get("plotly_chart") if c.key.startswith(prefix)), key=lambda c: c.key)
    return [json.loads(c.proto.spec) for c in found]


def values(array) -> list[float]:
    """A trace's x or y: plotly ships arrays as base64 typed arrays ({"dtype", "bdata"})."""
    if isinstance(array, dict):
        return np.frombuffer(base64.b64decode(array["bdata"]), dtype=array["dtype"]).tolist()
    return list(array)


def test_no_runs_points_to_train(workspace):
    at = open_page("runs")
    assert not at.exception
    assert texts(at, "info") == ["No runs yet. Launch one from the Train page."]


def test_table_and_charts_of_the_newest_run(workspace):
    now = time.time()
    make_run(workspace, "run-a", "completed", [2.0, 1.5, 0.9], now - 100)
    make_run(workspace, "run-b", "failed", [2.2, 2.4], now, error="Out of memory on rank 0.", hint="Use zero3.")
    at = open_page("runs")
    assert not at.exception, at.exception
    table = at.dataframe[0].value
    assert table["run_id"].tolist() == ["run-b", "run-a"]
    assert table["state"].tolist() == ["failed", "completed"]
    assert table.loc[1, "best_metric"] == pytest.approx(0.9)
    assert table.loc[0, "zero_preset"] == "multi_node" and table.loc[0, "lora_preset"] == "small"
    assert widget(at.selectbox, "Run").value == "run-b"
    assert any("Out of memory on rank 0." in e and "Hint: Use zero3." in e for e in texts(at, "error"))
    assert "step 2 done" in at.code[0].value
    assert [b.label for b in at.button] == ["Resume"]  # failed: resumable, nothing to cancel
    figures = charts(at, "run-run-b-")
    assert [f["layout"]["title"]["text"] for f in figures] == ["Loss", "Learning rate", "Tokens / s", "Memory (MB)"]
    loss = figures[0]["data"][0]
    assert values(loss["x"]) == [1, 2] and values(loss["y"]) == [2.2, 2.4]


def test_launched_run_opens_and_compare_overlays(workspace):
    now = time.time()
    make_run(workspace, "run-a", "completed", [2.0, 1.0], now - 100)
    make_run(workspace, "run-b", "completed", [3.0, 2.0], now)
    at = open_page("runs", state={"open_run": "run-a"})
    assert widget(at.selectbox, "Run").value == "run-a"
    assert widget(at.multiselect, "Runs to overlay").value == ["run-b", "run-a"]
    overlay_loss = charts(at, "compare-")[0]
    assert sorted(t["name"] for t in overlay_loss["data"]) == ["run-a loss", "run-b loss"]
    assert [b.label for b in at.button] == []  # completed: neither cancel nor resume


def test_a_completed_run_shows_its_test_split_score_and_opens_the_eval(workspace):
    scored = {"state": "completed", "eval_id": "eval-20261130-000000-abcdef", "metric": "accuracy", "value": 0.8125,
              "ci_low": 0.7, "ci_high": 0.9, "n": 48}  # fmt: skip
    make_run(workspace, "run-a", "completed", [2.0, 1.0], time.time(), test_eval=scored)
    make_run(workspace, "run-b", "completed", [2.0, 1.0], time.time() - 50,
             test_eval={"state": "skipped", "reason": "Dataset 'notes' has no test rows."})  # fmt: skip
    at = open_page("runs")
    assert any("accuracy **0.812** (95% CI 0.700 to 0.900)" in m for m in texts(at, "markdown"))
    widget(at.button, "Open on the Evaluate page").click().run()
    assert at.session_state["open_eval"] == scored["eval_id"]
    at = open_page("runs", state={"open_run": "run-b"})
    assert "Not evaluated on a test split: Dataset 'notes' has no test rows." in texts(at, "caption")


def test_resume_refusal_is_shown_as_a_message(workspace):
    make_run(workspace, "run-c", "failed", [1.0], time.time(), error="Killed by signal 9.")
    at = open_page("runs")
    at = widget(at.button, "Resume").click().run()
    assert not at.exception
    assert len(at.error) == 2 and "run-c" in at.error[1].value, texts(at, "error")  # the run's error, then why not


def test_a_dead_job_shows_as_failed_not_running(workspace):
    # status.json says running but no process of the job is alive (the machine rebooted): the table, the run
    # view and the buttons must agree that it failed (a disagreement once made the page rerun in a loop).
    make_run(workspace, "ghost", "running", [2.0, 1.8], time.time() - 120)
    at = open_page("runs")
    assert not at.exception
    assert at.dataframe[0].value["state"].tolist() == ["failed"]
    assert [b.label for b in at.button] == ["Resume"]


@pytest.mark.slow
def test_cancel_a_live_job(workspace):
    rd = RunDir(workspace.runs / "live")
    rd.path.mkdir(parents=True)
    write_json_atomic(rd.spec, {"model": "minilm", "task": "classification"})
    job = (
        "import json, pathlib, sys, time\n"
        "status = pathlib.Path(sys.argv[1]) / 'status.json'\n"
        "status.write_text(json.dumps({'state': 'running', 'step': 1, 'max_steps': 100}))\n"
        "time.sleep(60)\n"
    )
    submit_command(rd, [sys.executable, "-c", job, str(rd.path)])
    deadline = time.monotonic() + 30
    while run_status("live", workspace).state != "running" and time.monotonic() < deadline:
        time.sleep(0.2)
    at = open_page("runs")
    assert [b.label for b in at.button] == ["Save and stop", "Checkpoint now", "Cancel"]
    at = widget(at.button, "Cancel").click().run(timeout=60)
    assert not at.exception and not at.error, texts(at, "error")
    assert run_status("live", workspace).state == "cancelled"
    assert any("Cancelled on request" in s for s in texts(at, "info"))
    assert [b.label for b in at.button] == ["Resume"]
    assert at.dataframe[0].value["state"].tolist() == ["cancelled"]


def test_a_completed_run_shows_its_model_card(workspace):
    rd = make_run(workspace, "run-a", "completed", [2.0, 1.0], time.time())
    at = open_page("runs")
    assert any("No model card yet" in c for c in texts(at, "caption"))
    (rd.path / "MODEL_CARD.md").write_text("# Model card: run-a\n\n## Intended use\nResearch only.\n")
    at = open_page("runs")
    assert [e.label for e in at.expander if e.label == "Model card"]
    assert any("Intended use" in m for m in texts(at, "markdown"))
