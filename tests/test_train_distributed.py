"""Real distributed training: 2 CPU ranks under torchrun (gloo) with DeepSpeed ZeRO 1/2/2+offload/3 and LoRA.

Each launch costs ~15 s (imports, DeepSpeed set-up), so runs are shared through a module-level cache: the
ZeRO-1 causal-LM run of the matrix is also the "straight" run of the resume test and the reference of the
two-node test.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from train_datasets import write_dataset

from medcore.data.manifest import read_manifest
from medcore.models import load_model, load_tokenizer
from medcore.rundir import RunDir
from medcore.train import deepspeed_command, load_spec, prepare_run_dir, torchrun_command
from medcore.train.data import eval_batches, load_units
from medcore.train.presets import load_zero_preset
from medcore.workspace import get_workspace

pytestmark = pytest.mark.slow
STEPS, SAVE_EVERY = 6, 3
LAUNCH_TIMEOUT_S = 240
TASKS = {"classification": ("notes", "minilm", 5e-3), "causal-lm": ("qa", "tiny-llama", 1e-2)}


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    root = tmp_path_factory.mktemp("train") / "workspace"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MEDCORE_HOME", str(root))
        mp.setenv("OMP_NUM_THREADS", "1")  # 2 ranks on 2 cores: one thread each
        workspace = get_workspace(root)
        write_dataset(workspace, "notes", "classification", n=120)
        write_dataset(workspace, "qa", "causal-lm", n=120)
        zero2 = load_zero_preset("multi_node")
        zero2["zero_optimization"].pop("offload_optimizer")  # plain ZeRO-2: the matrix's one non-shipped config
        (root / "zero2.json").write_text(json.dumps(zero2))
        yield workspace


def make_spec(ws, task: str, zero: str = "single_node", **overrides):
    dataset, model, lr = TASKS[task]
    zero_ref = str(ws.root / "zero2.json") if zero == "zero2" else zero
    return load_spec(
        {
            "dataset": dataset,
            "task": task,
            "model": model,
            "zero": zero_ref,
            "lr": lr,
            "max_steps": STEPS,
            "micro_batch": 4,
            "max_length": 64,
            "nproc_per_node": 2,
            "save_interval": SAVE_EVERY,
            "keep_last_k": 1,
            "eval_interval": STEPS,
            "seed": 3,
            "name": f"{task}-{zero}",
            **overrides,
        }
    )


def start(spec, rd: RunDir, resume: bool = False, env: dict | None = None) -> subprocess.Popen:
    log = open(rd.log, "ab")  # noqa: SIM115 (closed with the process by the OS; tests are short-lived)
    return subprocess.Popen(
        torchrun_command(spec, rd, resume=resume),
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, **(env or {})},
        start_new_session=True,
    )


def finish(proc: subprocess.Popen, rd: RunDir) -> int:
    try:
        code = proc.wait(timeout=LAUNCH_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise
    if code != 0:
        sys.stderr.write(rd.log.read_text()[-4000:])
    return code


_RUNS: dict[str, RunDir] = {}


# Matrix entries also cover a merged export, gradient checkpointing and the deepspeed launcher (no extra launches).
EXTRA = {
    "classification/single_node": {"export_merged": True},
    "causal-lm/multi_node": {"gradient_checkpointing": True},
}
DEEPSPEED_LAUNCHER = "classification/zero2"


def trained(ws, task: str, zero: str) -> RunDir:
    """A completed run, launched once per (task, zero) for the whole module."""
    key = f"{task}/{zero}"
    if key not in _RUNS:
        spec = make_spec(ws, task, zero, **EXTRA.get(key, {}))
        rd = prepare_run_dir(spec, ws)
        if key == DEEPSPEED_LAUNCHER:
            log = open(rd.log, "ab")  # noqa: SIM115
            proc = subprocess.Popen(
                deepspeed_command(spec, rd), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        else:
            proc = start(spec, rd)
        assert finish(proc, rd) == 0
        _RUNS[key] = rd
    return _RUNS[key]


def metrics(rd: RunDir) -> list[dict]:
    return [json.loads(line) for line in rd.metrics.read_text().splitlines()]


def base_model(ws, rd: RunDir):
    spec = load_spec(rd.spec)
    labels = read_manifest(ws, spec.dataset).label_set
    torch.manual_seed(spec.seed)  # the trainer seeds the same way before creating the classifier head
    return load_model(spec.model, spec.task, id2label=dict(enumerate(labels)) if labels else None, workspace=ws)


def reloaded_eval(ws, rd: RunDir) -> dict:
    """Eval loss/accuracy of the saved adapter reloaded with PeftModel.from_pretrained, in this process."""
    from peft import PeftModel

    spec = load_spec(rd.spec)
    model = PeftModel.from_pretrained(base_model(ws, rd), rd.adapter).eval()
    tokenizer = load_tokenizer(spec.model, ws)
    labels = read_manifest(ws, spec.dataset).label_set
    units = load_units(spec, ws, tokenizer, "validation", labels)
    loss = targets = correct = 0.0
    with torch.no_grad():
        for batch, _ in eval_batches(units, spec.micro_batch, 1, 0, tokenizer.pad_token_id, spec.task):
            inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "position_ids") if k in batch}
            if spec.task == "classification":
                logits = model(**inputs).logits
                loss += torch.nn.functional.cross_entropy(logits, batch["labels"], reduction="sum").item()
                correct += (logits.argmax(-1) == batch["labels"]).sum().item()
            else:
                logits = model(**inputs, use_cache=False).logits
                flat = logits[:, :-1].reshape(-1, logits.shape[-1])
                loss += torch.nn.functional.cross_entropy(
                    flat, batch["labels"][:, 1:].reshape(-1), reduction="sum"
                ).item()
            targets += batch["targets"]
    return {"eval_loss": loss / targets, "eval_accuracy": correct / targets}


def final_weights(rd: RunDir) -> dict[str, torch.Tensor]:
    """Every parameter of the last checkpoint: DeepSpeed's module states (ZeRO 1/2) or reconstructed shards (ZeRO-3)."""
    from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

    folder = rd.latest_checkpoint()
    model_states = sorted((folder / "deepspeed").glob("*mp_rank_00_model_states.pt"))[0]  # ZeRO-3: one per rank
    states = torch.load(model_states, weights_only=False)
    full = {k: v for k, v in states["module"].items() if v.numel() > 0}
    full.update(get_fp32_state_dict_from_zero_checkpoint(str(folder), tag="deepspeed"))
    return full


@pytest.mark.parametrize("zero", ["single_node", "zero2", "multi_node", "large_model_stage3"])
@pytest.mark.parametrize("task", ["classification", "causal-lm"])
def test_lora_under_zero(ws, task, zero):
    rd = trained(ws, task, zero)
    status = rd.read_status()
    assert status["state"] == "completed" and status["step"] == STEPS and status["world_size"] == 2
    lines = metrics(rd)
    losses = [m["loss"] for m in lines if "loss" in m]
    assert len(losses) == STEPS and losses[-1] < losses[0], f"loss did not fall: {losses}"
    step_line = lines[0]
    for key in (
        "step",
        "epoch",
        "lr",
        "grad_norm",
        "tokens_per_s",
        "samples_per_s",
        "step_time_s",
        "peak_mem_mb",
        "time",
    ):
        assert key in step_line
    assert [p.name for p in rd.checkpoint_dirs()] == [f"checkpoint-{STEPS}"]  # keep_last_k=1 pruned checkpoint-3

    # Only LoRA weights (and the classification head, trained in full) changed.
    base = base_model(ws, rd).state_dict()
    trained_weights = final_weights(rd)
    for name, value in trained_weights.items():
        plain = name.removeprefix("base_model.model.").replace(".base_layer", "").replace(".original_module", "")
        if "lora_B" in name:
            assert value.abs().sum() > 0, f"{name} never trained"
        elif "lora_" not in name and "modules_to_save" not in name:
            assert torch.equal(value.float(), base[plain].float()), f"frozen weight {name} changed"

    # The saved adapter reloads and predicts what the trainer measured at the last step.
    final_eval = [m for m in lines if "eval_loss" in m][-1]
    again = reloaded_eval(ws, rd)
    assert again["eval_loss"] == pytest.approx(final_eval["eval_loss"], abs=1e-4)
    if task == "classification":
        assert again["eval_accuracy"] == pytest.approx(final_eval["eval_accuracy"], abs=1e-6)
    if EXTRA.get(f"{task}/{zero}", {}).get("export_merged"):
        check_merged_export(ws, rd)


@pytest.mark.parametrize("task", ["classification", "causal-lm"])
def test_zero_stages_agree(ws, task):
    """Same data plan, seed and LoRA init: every ZeRO stage (and offload, and gradient checkpointing) computes the same
    first loss exactly and ends within float noise of the others."""
    runs = {
        zero: metrics(trained(ws, task, zero)) for zero in ("single_node", "zero2", "multi_node", "large_model_stage3")
    }
    reference = runs.pop("single_node")
    for zero, lines in runs.items():
        assert lines[0]["loss"] == pytest.approx(reference[0]["loss"], abs=1e-6), zero
        assert lines[-1]["eval_loss"] == pytest.approx(reference[-1]["eval_loss"], abs=1e-4), zero


def check_merged_export(ws, rd: RunDir) -> None:
    """The merged export is a plain model that predicts what base + adapter predicts."""
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification

    merged = AutoModelForSequenceClassification.from_pretrained(rd.path / "merged").eval()
    adapted = PeftModel.from_pretrained(base_model(ws, rd), rd.adapter).eval()
    assert merged.config.id2label == adapted.config.id2label
    tokenizer = load_tokenizer("minilm", ws)
    batch = tokenizer(
        ["Chest pain radiating to the left arm.", "New onset seizure."], padding=True, return_tensors="pt"
    )
    with torch.no_grad():
        assert torch.allclose(merged(**batch).logits, adapted(**batch).logits, atol=1e-4)


def wait_for(predicate, timeout: float = 120, what: str = "condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_resume_after_sigkill_is_exact(ws):
    straight = trained(ws, "causal-lm", "single_node")
    spec = make_spec(ws, "causal-lm", name="killed")
    rd = prepare_run_dir(spec, ws)
    # Slow steps so the SIGKILL lands after checkpoint-3 and before the run could finish.
    proc = start(spec, rd, env={"MEDCORE_STEP_DELAY_S": "0.3"})
    wait_for(lambda: (rd.checkpoints / f"checkpoint-{SAVE_EVERY}").exists(), what="checkpoint-3")
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert rd.read_status()["state"] == "running"  # killed: no chance to record anything
    assert finish(start(spec, rd, resume=True), rd) == 0
    resumed, reference = metrics(rd), metrics(straight)
    assert [m["step"] for m in resumed if "loss" in m] == list(
        range(1, STEPS + 1)
    )  # killed attempt's extra lines dropped
    for got, want in zip(resumed, reference, strict=True):
        assert got["loss"] == pytest.approx(want["loss"], abs=1e-4), f"step {want['step']}"
    assert resumed[-1]["eval_loss"] == pytest.approx(reference[-1]["eval_loss"], abs=1e-4)


def test_two_nodes_with_c10d_rendezvous(ws):
    from medcore.train.launch import free_port

    reference = trained(ws, "causal-lm", "single_node")
    endpoint = f"127.0.0.1:{free_port()}"
    node0 = make_spec(ws, "causal-lm", nnodes=2, nproc_per_node=1, rdzv_endpoint=endpoint, name="two-node")
    node1 = load_spec(node0, {"node_rank": 1})
    rd = prepare_run_dir(node0, ws)
    procs = [start(node0, rd), start(node1, rd)]
    assert [finish(p, rd) for p in procs] == [0, 0]
    got, want = metrics(rd), metrics(reference)
    assert rd.read_status()["world_size"] == 2
    # The same world size and plan as one node with two ranks: the same losses.
    assert [m["loss"] for m in got] == pytest.approx([m["loss"] for m in want], abs=1e-4)


def test_checkpoint_trigger_then_save_and_stop(ws):
    spec = make_spec(ws, "classification", max_steps=40, save_interval=0, keep_last_k=3, name="stop")
    rd = prepare_run_dir(spec, ws)
    proc = start(spec, rd, env={"MEDCORE_STEP_DELAY_S": "0.5"})
    wait_for(lambda: rd.metrics.exists() and rd.metrics.read_text().count("\n") >= 2, what="two steps")
    rd.checkpoint_trigger.touch()
    wait_for(lambda: rd.checkpoint_dirs() and not rd.checkpoint_trigger.exists(), what="triggered checkpoint")
    triggered = rd.checkpoint_dirs()[-1]
    os.killpg(proc.pid, signal.SIGINT)  # what `medcore runs stop` sends to the job's process group
    proc.wait(timeout=120)
    status = rd.read_status()
    assert status["state"] == "stopped", rd.log.read_text()[-3000:]
    stopped_at = status["step"]
    assert 2 <= stopped_at < 40
    assert [p.name for p in rd.checkpoint_dirs()] == [triggered.name, f"checkpoint-{stopped_at}"]
    assert status["last_checkpoint"].endswith(f"checkpoint-{stopped_at}")
    assert (rd.latest_checkpoint() / "adapter" / "adapter_config.json").exists()


def test_unreachable_peer_fails_fast_with_a_hint(ws):
    from medcore.train.launch import free_port

    spec = make_spec(ws, "classification", dist_timeout_s=3, name="bad-port")
    rd = prepare_run_dir(spec, ws)
    env = {
        **os.environ,
        "RANK": "1",
        "WORLD_SIZE": "2",
        "LOCAL_RANK": "0",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(free_port()),
    }  # nobody listens there: rank 0 never started
    began = time.time()
    result = subprocess.run(
        [sys.executable, "-m", "medcore.train", str(rd.path)], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 1
    assert time.time() - began < 60
    status = rd.read_status()
    assert status["state"] == "failed" and "could not reach its peers" in status["error"]
    assert "port" in status["hint"] and status["failed_rank"] == 1
