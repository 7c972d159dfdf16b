"""medcore.jobs process management with real detached processes (a stand-in trainer script under real torchrun).

The stand-in writes status.json like medcore.train does and sleeps between steps, so queueing,
cancel, save-and-stop, restart and liveness are tested in seconds; tests/test_jobs_train.py covers
the same paths with real DeepSpeed training.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import duckdb
import psutil
import pytest
from polling import wait_for

from medcore.cli import main
from medcore.errors import MedcoreError
from medcore.jobs import cancel_run, list_runs, read_logs, run_status, stop_run, submit_command
from medcore.jobs.state import read_launch
from medcore.procs import check_port, tagged_processes
from medcore.rundir import FINAL_STATES, RunDir

STANDIN = """
import json, os, signal, sys, time
from pathlib import Path
from medcore.rundir import RunDir

rd, steps, step_s = RunDir(Path(sys.argv[1])), int(sys.argv[2]), float(sys.argv[3])
flags = dict(arg.lstrip("-").partition("=")[::2] for arg in sys.argv[4:])
rank = int(os.environ.get("RANK", "0"))
world = int(os.environ.get("WORLD_SIZE", "1"))

def end(code):
    rd.record_exit(rank, code)  # as medcore.train does on every exit
    sys.exit(code)

def save_and_stop(signum, frame):
    if rank == 0:
        rd.update_status(state="stopped", last_checkpoint="checkpoint-x")
    time.sleep(float(flags.get("teardown-s", 0)))  # ranks are still alive after the trainer's final word
    end(0)

signal.signal(signal.SIGINT, save_and_stop)
if "ignore-sigterm" in flags:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # forces the SIGKILL escalation
if "stop-on-sigterm" in flags:
    signal.signal(signal.SIGTERM, save_and_stop)  # the trainer's handling of SIGTERM
status_every = int(flags.get("status-every", 1))  # the trainer rewrites status.json at most once a second
if rank == 0:
    rd.update_status(state="running", step=0, max_steps=steps, world_size=world)
for step in range(1, steps + 1):
    print(f"rank {rank} step {step - 1}", flush=True)
    time.sleep(step_s)
    if rank == 0:
        with open(rd.metrics, "a") as fh:
            fh.write(json.dumps({"step": step, "loss": 1.0 / step}) + "\\n")
        if step % status_every == 0:
            rd.update_status(state="running", step=step, max_steps=steps)
    if step == int(flags.get("fail-at", 0)):
        if rank == 0:
            rd.update_status(state="failed", error="RuntimeError on rank 0.", hint="See train.log.")
        end(1)
if rank == 0:
    rd.update_status(state="completed", step=steps, max_steps=steps)
end(0)
"""


@pytest.fixture
def standin(tmp_path):
    path = tmp_path / "standin.py"
    path.write_text(STANDIN)
    return path


def new_run(ws, run_id: str) -> RunDir:
    rd = RunDir(ws.runs / run_id)
    rd.path.mkdir(parents=True)
    return rd


def python_job(standin, rd, steps=4, step_s=0.2, *extra) -> list[str]:
    return [sys.executable, str(standin), str(rd.path), str(steps), str(step_s), *extra]


def torchrun_job(standin, rd, steps=200, step_s=0.1, *extra) -> list[str]:
    port = str(_free_port())
    return [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node=2", f"--master-port={port}",
            str(standin), str(rd.path), str(steps), str(step_s), *extra]  # fmt: skip


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_state(run_id, states, ws, timeout=30.0):
    """Wait for one of `states`; a final state also waits for the supervisor's exit record (ended_at)."""

    def reached():
        info = run_status(run_id, ws)
        settled = info.state not in FINAL_STATES or info.ended_at is not None
        return info.state in states and settled and info

    return wait_for(reached, timeout, f"{run_id} in {states}")


def job_processes(rd: RunDir) -> list[psutil.Process]:
    launch = read_launch(rd)
    root = psutil.Process(launch["torchrun"]["pid"])
    return [root, *root.children(recursive=True)]


@pytest.mark.slow
def test_queue_with_one_slot_runs_the_second_job_after_the_first(workspace, standin, monkeypatch):
    monkeypatch.setenv("MEDCORE_MAX_JOBS", "1")
    first, second = new_run(workspace, "first"), new_run(workspace, "second")
    submit_command(first, python_job(standin, first, steps=8, step_s=0.2))
    submit_command(second, python_job(standin, second, steps=2, step_s=0.1))
    wait_state("first", ("running",), workspace)
    assert run_status("second", workspace).state == "queued"
    done = wait_state("second", FINAL_STATES, workspace)
    assert done.state == "completed" and done.exit_code == 0
    first_info = run_status("first", workspace)
    assert first_info.state == "completed"
    assert done.started_at >= first_info.ended_at  # it waited for the slot
    assert "queued (at most 1 concurrent job(s)" in read_logs("second", 50, workspace)
    assert [r.run_id for r in list_runs(workspace)] == ["second", "first"]


@pytest.mark.slow
def test_cancel_terminates_every_process_of_the_job(workspace, standin):
    rd = new_run(workspace, "doomed")
    # Ranks that ignore SIGTERM: only the SIGKILL after the grace period ends them.
    submit_command(rd, torchrun_job(standin, rd, 200, 0.1, "--ignore-sigterm"))
    wait_state("doomed", ("running",), workspace)
    procs = wait_for(lambda: len(p := job_processes(rd)) >= 3 and p, what="torchrun and two ranks")
    tag = read_launch(rd)["tag"]
    assert len(tagged_processes(tag)) >= 3

    info = cancel_run("doomed", workspace, grace_s=2.0)
    assert info.state == "cancelled"
    gone, alive = psutil.wait_procs(procs, timeout=5)
    assert alive == [] and tagged_processes(tag) == []
    with pytest.raises(MedcoreError, match="already cancelled.*Active runs: none"):
        cancel_run("doomed", workspace)


@pytest.mark.slow
def test_save_and_stop_reaches_the_ranks_through_torchrun(workspace, standin):
    rd = new_run(workspace, "stopper")
    submit_command(rd, torchrun_job(standin, rd, 200, 0.1))
    wait_state("stopper", ("running",), workspace)
    # rank 0 says "running" as soon as it is ready; rank 1 may still be starting, without its SIGINT handler (the real
    # trainer's ranks meet in a collective before rank 0 says it). Each rank logs its first step once it handles it.
    wait_for(lambda: all(f"rank {r} step 0" in rd.log.read_text() for r in (0, 1)), what="both ranks stepping")
    stop_run("stopper", workspace)
    info = wait_state("stopper", FINAL_STATES, workspace)
    assert info.state == "stopped" and info.exit_code == 0  # a clean stop: the ranks, not torchrun, got SIGINT
    assert rd.read_status()["last_checkpoint"] == "checkpoint-x"
    assert tagged_processes(read_launch(rd)["tag"]) == []


@pytest.mark.slow
def test_a_new_process_sees_a_running_job_then_its_completion(workspace, standin):
    rd = new_run(workspace, "detached")
    # Launch from a process that exits at once, as a console does when it restarts.
    code = (
        "import sys; from pathlib import Path; from medcore.jobs import submit_command; from medcore.rundir import "
        f"RunDir; submit_command(RunDir(Path({str(rd.path)!r})), {python_job(standin, rd, 40, 0.2)!r})"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)

    def status_from_new_process():
        out = subprocess.run(
            [sys.executable, "-m", "medcore", "runs", "status", "detached", "--json"],
            capture_output=True, text=True, check=True, env={**os.environ, "MEDCORE_HOME": str(workspace.root)},
        ).stdout  # fmt: skip
        return json.loads(out)

    wait_for(lambda: status_from_new_process()["state"] == "running", what="running seen from a new process")
    # The job writes its own final state a moment before the supervisor records the exit code: wait for both.
    done = wait_for(
        lambda: (s := status_from_new_process())["state"] in FINAL_STATES and s.get("ended_at") is not None and s,
        timeout=30,
    )
    assert done["state"] == "completed" and done["exit_code"] == 0


@pytest.mark.slow
def test_state_stays_truthful_when_the_supervisor_is_killed(workspace, standin):
    rd = new_run(workspace, "orphaned")
    submit_command(rd, python_job(standin, rd, 300, 0.1))
    wait_state("orphaned", ("running",), workspace)
    launch = read_launch(rd)
    os.kill(launch["supervisor"]["pid"], signal.SIGKILL)
    time.sleep(0.3)
    assert run_status("orphaned", workspace).state == "running"  # the job itself still runs
    # Now the job dies too, and nobody is left to record it: the next observer settles it as failed.
    os.kill(launch["torchrun"]["pid"], signal.SIGKILL)
    info = wait_state("orphaned", FINAL_STATES, workspace, timeout=10)
    assert info.state == "failed" and "none of them recorded a final state" in info.error
    assert info.hint and "resume" in info.hint


def test_unknown_and_finished_ids_are_one_line_errors(workspace, capsys):
    done = new_run(workspace, "finished-run")
    done.update_status(state="completed", step=10, max_steps=10)
    with pytest.raises(MedcoreError, match="No run 'nope'.*finished-run"):
        run_status("nope", workspace)
    with pytest.raises(MedcoreError, match="already completed; only queued or running"):
        cancel_run("finished-run", workspace)
    assert main(["runs", "cancel", "nope"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: No run 'nope'") and "\n" not in err
    assert main(["runs", "resume", "finished-run"]) == 1
    assert "completed (finished; nothing to resume)" in capsys.readouterr().err
    assert main(["runs", "stop", "finished-run"]) == 1
    assert main(["runs", "checkpoint", "../etc"]) == 1  # not a run folder name


def test_busy_port_is_refused_with_the_fix():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        with pytest.raises(MedcoreError, match=f"Port {port} on 127.0.0.1 is already in use.*leave it empty"):
            check_port(port)
    check_port(port)  # free again once the listener closed


def test_list_and_logs_on_a_hand_made_run(workspace, capsys):
    rd = new_run(workspace, "by-hand")
    rd.update_status(state="failed", error="A rank ran out of GPU memory.", hint="Lower micro_batch_size.")
    rd.log.write_text("".join(f"line {i}\n" for i in range(500)))
    assert read_logs("by-hand", 3, workspace) == "line 497\nline 498\nline 499"
    assert main(["runs", "list"]) == 0
    out = capsys.readouterr().out
    assert "by-hand" in out and "failed" in out and "GPU memory" in out
    assert main(["runs", "status", "by-hand"]) == 0
    assert "hint:   Lower micro_batch_size." in capsys.readouterr().out


@pytest.mark.slow
def test_logs_follow_streams_until_the_run_ends(workspace, standin):
    rd = new_run(workspace, "chatty")
    submit_command(rd, python_job(standin, rd, 6, 0.3))
    wait_state("chatty", ("running",), workspace)
    follow = subprocess.run(
        [sys.executable, "-m", "medcore", "runs", "logs", "chatty", "--tail", "1", "--follow"],
        capture_output=True, text=True, timeout=60, env={**os.environ, "MEDCORE_HOME": str(workspace.root)},
    )  # fmt: skip
    assert follow.returncode == 0
    assert "rank 0 step 5" in follow.stdout  # written after following began
    assert run_status("chatty", workspace).state == "completed"


def test_the_log_tail_is_plain_text_without_library_warnings(workspace):
    rd = new_run(workspace, "noisy")
    rd.log.write_text(
        "\x1b[32mstep 1\x1b[0m loss 2.0\n"
        "/venv/lib/transformers/modeling_utils.py:3312: FutureWarning: `x` is deprecated\n"
        "  warnings.warn(\n"
        "progress 10%\rprogress 100%\n"
        "step 2 loss 1.5\n"
    )
    assert read_logs("noisy", 10, workspace) == "step 1 loss 2.0\nprogress 100%\nstep 2 loss 1.5"
    everything = read_logs("noisy", 10, workspace, library_warnings=True)
    assert "FutureWarning" in everything and "\x1b" not in everything


@pytest.mark.slow
def test_a_run_that_completes_after_its_supervisor_was_killed_gets_its_end_recorded(workspace, standin):
    rd = new_run(workspace, "unsupervised")
    submit_command(rd, torchrun_job(standin, rd, 25, 0.1))
    wait_state("unsupervised", ("running",), workspace)
    os.kill(read_launch(rd)["supervisor"]["pid"], signal.SIGKILL)
    # Nobody is left to record torchrun's exit: the next observer settles the run from the ranks' exit records.
    info = wait_state("unsupervised", FINAL_STATES, workspace, timeout=30)
    assert info.state == "completed" and info.exit_code == 0 and info.ended_at > info.started_at
    assert (rd.path / "metrics.parquet").exists()  # compacted, as the supervisor does at the end
    with duckdb.connect(str(workspace.catalog), read_only=True) as con:
        row = con.execute("SELECT state, ended_at FROM runs WHERE run_id = 'unsupervised'").fetchone()
    assert row[0] == "completed" and row[1] is not None  # and the catalog refreshed


@pytest.mark.slow
def test_cancel_reports_cancelled_only_once_every_rank_is_gone(workspace, standin):
    rd = new_run(workspace, "tearing-down")
    # Like the trainer, the ranks answer SIGTERM with "stopped" and take a while to tear down after writing it.
    submit_command(rd, torchrun_job(standin, rd, 200, 0.1, "--stop-on-sigterm", "--teardown-s=2"))
    wait_state("tearing-down", ("running",), workspace)
    wait_for(lambda: len(job_processes(rd)) >= 3, what="torchrun and two ranks")
    tag = read_launch(rd)["tag"]
    info = cancel_run("tearing-down", workspace, grace_s=10.0)
    assert info.state == "cancelled" and info.ended_at is not None
    assert tagged_processes(tag) == []


@pytest.mark.slow
def test_cancel_with_a_dead_supervisor_ends_cancelled(workspace, standin):
    rd = new_run(workspace, "cancel-orphan")
    submit_command(rd, torchrun_job(standin, rd, 200, 0.1, "--stop-on-sigterm"))
    wait_state("cancel-orphan", ("running",), workspace)
    tag = read_launch(rd)["tag"]
    os.kill(read_launch(rd)["supervisor"]["pid"], signal.SIGKILL)
    info = cancel_run("cancel-orphan", workspace, grace_s=5.0)
    assert info.state == "cancelled" and info.ended_at is not None and "Cancelled" in info.error
    assert tagged_processes(tag) == []
    assert run_status("cancel-orphan", workspace).state == "cancelled"


@pytest.mark.slow
def test_a_failed_run_shows_the_last_step_it_reached(workspace, standin):
    rd = new_run(workspace, "stale")
    # The trainer rewrites status.json at most once a second; here every 4 steps, and it fails at step 7.
    submit_command(rd, python_job(standin, rd, 20, 0.05, "--status-every=4", "--fail-at=7"))
    info = wait_state("stale", FINAL_STATES, workspace)
    assert info.state == "failed" and info.exit_code == 1
    assert info.step == 7  # from metrics.jsonl, not the status written at step 4
