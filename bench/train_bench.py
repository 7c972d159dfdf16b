"""Training throughput: MedCore's trainer vs plain HF Trainer + DeepSpeed on the demo data, same model/steps/ranks.

    python bench/train_bench.py [--steps 30]

Both sides: 2 CPU ranks under torchrun (gloo), ZeRO-1 (medcore/train/presets/zero/single_node.json), LoRA `default`, fp32,
micro-batch 8, the same learning-rate schedule and seed.
  - classification: minilm on the demo notes (text -> specialty), max_length 256.
  - causal-lm: tiny-llama on the demo QA set (note excerpt + question -> answer; prompt tokens masked), max_length 128.
The baseline pads every sequence to max_length (tokenizer padding="max_length", as the classic guide does, with
transformers' default_data_collator); MedCore groups by length (classification) or packs (causal LM).
Useful tokens = non-padding tokens. Throughput = useful tokens / summed step time over steps 2..N on both sides
(step 1 carries one-off warm-up). Peak RSS is rank 0's. The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MICRO, WORLD = 8, 2
TASKS = {
    "classification": {"model": "minilm", "dataset": "demo-notes", "max_length": 256, "lr": 5e-4},
    "causal_lm": {"model": "tiny-llama", "dataset": "demo-qa", "max_length": 128, "lr": 5e-3},
}


def build_datasets(ws) -> None:
    """The demo notes and QA set imported as workspace datasets (synthetic PHI: trained with the audited override)."""
    import pandas as pd

    from medcore.data.importer import import_dataset
    from medcore.data.manifest import ColumnMapping
    from medcore.demo.notes import generate_notes
    from medcore.demo.qa import generate_qa

    notes = pd.DataFrame(generate_notes(seed=0, n=1200))[["note_id", "text", "specialty"]]
    import_dataset(
        ws, notes, "demo-notes", ColumnMapping(text="text", label="specialty", id="note_id"), task="classification"
    )
    qa = pd.DataFrame(generate_qa(seed=0, n=1200))[["qa_id", "question", "context", "answer"]]
    import_dataset(
        ws,
        qa,
        "demo-qa",
        ColumnMapping(text="context", prompt="question", response="answer", id="qa_id"),
        task="causal-lm",
    )


def make_spec(task: str, steps: int):
    from medcore.train import load_spec

    cfg = TASKS[task]
    return load_spec(
        {
            "task": "classification" if task == "classification" else "causal-lm",
            "model": cfg["model"],
            "dataset": cfg["dataset"],
            "max_length": cfg["max_length"],
            "lr": cfg["lr"],
            "max_steps": steps,
            "micro_batch": MICRO,
            "nproc_per_node": WORLD,
            "allow_unredacted": True,
            "seed": 0,
            "name": f"bench-{task}",
        }
    )


def run_logged(command: list[str], log_path: Path) -> None:
    with open(log_path, "wb") as log:
        code = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT).returncode
    if code:
        sys.stderr.write(log_path.read_text()[-9000:])
        raise SystemExit(f"{command[-3:]} failed with exit code {code}")


def run_medcore(ws, task: str, steps: int) -> dict:
    from medcore.train import prepare_run_dir, torchrun_command, validate_spec

    spec = make_spec(task, steps)
    validate_spec(spec, ws)
    rd = prepare_run_dir(spec, ws)
    run_logged(torchrun_command(spec, rd), rd.log)
    lines = [json.loads(x) for x in rd.metrics.read_text().splitlines() if '"loss"' in x]
    timed = lines[1:]
    tokens = sum(m["tokens_per_s"] * m["step_time_s"] for m in timed)
    return {
        "tokens_per_s": tokens / sum(m["step_time_s"] for m in timed),
        "peak_rss_mb": max(m["peak_mem_mb"] for m in lines),
        "final_loss": lines[-1]["loss"],
    }


def run_baseline(ws, task: str, steps: int) -> dict:
    from medcore.train.launch import free_port

    spec = make_spec(task, steps)
    out = Path(tempfile.mkdtemp(dir=ws.root))
    (out / "job.json").write_text(json.dumps({"spec": spec.model_dump(), "out": str(out)}))
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        f"--nproc-per-node={WORLD}",
        "--master-addr=127.0.0.1",
        f"--master-port={free_port()}",
        __file__,
        "--hf-worker",
        str(out / "job.json"),
    ]
    run_logged(command, out / "train.log")
    return json.loads((out / "result.json").read_text())


def hf_dataset(spec, ws, tokenizer, label_set):
    """Fixed-length (padding="max_length") examples, the same text and prompt masking as MedCore's."""
    from medcore.data.manifest import load_split, read_manifest
    from medcore.train.data import IGNORE, load_units

    if spec.task == "classification":
        mapping = read_manifest(ws, spec.dataset).mapping
        frame = load_split(ws, spec.dataset, "train")
        enc = tokenizer(
            frame[mapping.text].astype(str).tolist(), padding="max_length", truncation=True, max_length=spec.max_length
        )
        index = {label: i for i, label in enumerate(label_set)}
        labels = [index[str(v)] for v in frame[mapping.label]]
        return [
            {"input_ids": i, "attention_mask": a, "labels": y}
            for i, a, y in zip(enc["input_ids"], enc["attention_mask"], labels, strict=True)
        ]
    units = load_units(spec.model_copy(update={"pack": False}), ws, tokenizer, "train", [])
    pad = spec.max_length
    return [
        {
            "input_ids": u.input_ids + [tokenizer.pad_token_id] * (pad - u.length),
            "attention_mask": [1] * u.length + [0] * (pad - u.length),
            "labels": list(u.labels) + [IGNORE] * (pad - u.length),
        }
        for u in units
    ]


def hf_training_args(spec, out: str):
    """TrainingArguments matching the MedCore spec: same batch, steps, LR schedule, clipping, seed and ZeRO preset."""
    from accelerate import PartialState
    from transformers import TrainingArguments

    from medcore.train.presets import load_zero_preset

    # On a CPU-only machine TrainingArguments' DeepSpeed path builds accelerate's state without a backend and
    # believes the world size is 1 (DeepSpeed then rejects the batch arithmetic); a pre-configured gloo state fixes it.
    os.environ["ACCELERATE_USE_DEEPSPEED"] = "true"
    PartialState(backend="gloo")
    del os.environ["ACCELERATE_USE_DEEPSPEED"]
    return TrainingArguments(
        output_dir=out,
        per_device_train_batch_size=spec.micro_batch,
        gradient_accumulation_steps=1,
        max_steps=spec.max_steps,
        learning_rate=spec.lr,
        warmup_steps=round(spec.warmup_ratio * spec.max_steps),
        lr_scheduler_type="cosine",
        max_grad_norm=spec.max_grad_norm,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        seed=spec.seed,
        deepspeed=load_zero_preset(spec.zero),  # "auto" batch sizes, filled in by the HF integration
        dataloader_drop_last=True,
        remove_unused_columns=False,
        accelerator_config={"use_configured_state": True},
    )


def counting_trainer(counts: dict):
    """HF Trainer that adds up useful tokens per step, and a callback that times steps 2..N."""
    from transformers import Trainer, TrainerCallback

    class CountingTrainer(Trainer):
        def compute_loss(self, model, inputs, *args, **kwargs):
            counts["step_tokens"] += float(inputs["attention_mask"].sum())
            return super().compute_loss(model, inputs, *args, **kwargs)

    class StepTimer(TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):
            counts["t0"], counts["step_tokens"] = time.perf_counter(), 0.0

        def on_step_end(self, args, state, control, **kw):
            counts["step"] += 1
            if counts["step"] > 1:  # step 1 carries one-off warm-up, as on the MedCore side
                counts["timed_s"] += time.perf_counter() - counts["t0"]
                counts["timed_tokens"] += counts["step_tokens"]

    return CountingTrainer, StepTimer()


def hf_worker(job_path: str) -> None:
    """One rank of the baseline: HF Trainer with its DeepSpeed integration, counting useful tokens per step."""
    import torch
    import torch.distributed as dist
    from transformers import default_data_collator

    from medcore.data.manifest import read_manifest
    from medcore.models import load_tokenizer
    from medcore.train.loop import build_model
    from medcore.train.spec import RunSpec
    from medcore.workspace import get_workspace

    job = json.loads(Path(job_path).read_text())
    spec, ws = RunSpec.model_validate(job["spec"]), get_workspace()
    args = hf_training_args(spec, job["out"])
    label_set = read_manifest(ws, spec.dataset).label_set if spec.task == "classification" else []
    counts = {"step_tokens": 0.0, "timed_tokens": 0.0, "timed_s": 0.0, "t0": 0.0, "step": 0}
    trainer_class, timer = counting_trainer(counts)
    trainer = trainer_class(
        model=build_model(spec, ws, label_set),
        args=args,
        data_collator=default_data_collator,
        train_dataset=hf_dataset(spec, ws, load_tokenizer(spec.model, ws), label_set),
        callbacks=[timer],
    )
    trainer.train()
    totals = torch.tensor([counts["timed_tokens"]], dtype=torch.float64)
    dist.all_reduce(totals)  # every rank's useful tokens; the step time is the same on all ranks (synchronous)
    if dist.get_rank() == 0:
        result = {
            "tokens_per_s": float(totals[0]) / counts["timed_s"],
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "final_loss": trainer.state.log_history[-2].get("loss"),
        }
        Path(job["out"], "result.json").write_text(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--hf-worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.hf_worker:
        hf_worker(args.hf_worker)
        return
    from medcore.workspace import get_workspace

    with tempfile.TemporaryDirectory(prefix="medcore-bench-") as tmp:
        os.environ["MEDCORE_HOME"] = tmp  # the workers and torchrun children read the same workspace
        ws = get_workspace(tmp)
        build_datasets(ws)
        results = {}
        for task in TASKS:
            ours, base = run_medcore(ws, task, args.steps), run_baseline(ws, task, args.steps)
            print(f"{task}: medcore {ours}, baseline {base}", file=sys.stderr, flush=True)
            results[task] = {
                "medcore_tokens_per_s": round(ours["tokens_per_s"], 1),
                "baseline_tokens_per_s": round(base["tokens_per_s"], 1),
                "ratio": round(ours["tokens_per_s"] / base["tokens_per_s"], 2),
                "medcore_peak_rss_mb": round(ours["peak_rss_mb"], 1),
                "baseline_peak_rss_mb": round(base["peak_rss_mb"], 1),
            }
    print(json.dumps(results))


if __name__ == "__main__":
    main()
