"""Training throughput: MedCore's trainer vs the strongest standard baseline a user would pick, same run.

    python bench/train_bench.py [--steps 30] [--tasks classification,causal_lm,causal_lm_realistic]

Every side: 2 CPU ranks under torchrun (gloo), ZeRO-1 (medcore/train/presets/zero/single_node.json), LoRA `default`,
fp32, micro-batch 8 rows, the same steps, learning-rate schedule and seed, the same tokenised examples.
  - classification: minilm on the demo notes (text -> specialty), max_length 256. Baseline: HF Trainer + DeepSpeed
    with dynamic padding (DataCollatorWithPadding) and train_sampling_strategy="group_by_length".
  - causal_lm: tiny-llama on the demo QA set (note excerpt + question -> answer), max_length 128. Baseline: TRL's
    SFTTrainer with packing (best-fit decreasing, padding-free) and completion-only loss.
  - causal_lm_realistic: the same with a llama of realistic proportions (hidden 256, 4 layers, a 32k vocabulary,
    untied embeddings; random weights), where the vocabulary projection costs what it costs in real models.
The baseline's model is the standard one a user builds (the transformers class plus peft's LoRA, same preset and
seed); MedCore's side is what `medcore train` builds ([CLS]-only last layer, integer dropout masks on CPU).
Useful tokens = non-padding tokens. Throughput = useful tokens / summed step time over steps 2..N (step 1 carries
one-off warm-up). Loss = the mean over every target (token, or example) of a step, across ranks, computed the
same way on both sides from the model's logits, so a side that does not learn, or logs a scaled loss, shows;
"final" is the mean of the last five steps, and the two must agree within 5%. Peak RSS is rank 0's.
The last line printed is one JSON object: {task: {baseline, medcore_tokens_per_s, baseline_tokens_per_s, ratio,
medcore_peak_rss_mb, baseline_peak_rss_mb, medcore_final_loss, baseline_final_loss, loss_gap}}.
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
FINAL_STEPS = 5  # the final loss is the mean of this many last steps (one step's loss is noisy)
LOSS_TOLERANCE = 0.05
REALISTIC_SHAPE = dict(  # a llama of realistic proportions, small enough for 2 CPU cores
    hidden_size=256,
    intermediate_size=688,
    num_hidden_layers=4,
    num_attention_heads=4,
    num_key_value_heads=4,
    max_position_embeddings=512,
    vocab_size=32000,
    tie_word_embeddings=False,
)
TASKS = {
    "classification": {
        "model": "minilm",
        "dataset": "demo-notes",
        "max_length": 256,
        "lr": 5e-4,
        "baseline": "HF Trainer + DeepSpeed, dynamic padding, train_sampling_strategy=group_by_length",
    },
    "causal_lm": {
        "model": "tiny-llama",
        "dataset": "demo-qa",
        "max_length": 128,
        "lr": 5e-3,
        "baseline": "TRL SFTTrainer + DeepSpeed, packing (bfd, padding-free), completion-only loss",
    },
    "causal_lm_realistic": {
        "model": "llama-256x4-32k",
        "dataset": "demo-qa",
        "max_length": 128,
        "lr": 2e-3,
        "baseline": "TRL SFTTrainer + DeepSpeed, packing (bfd, padding-free), completion-only loss",
    },
}


def build_realistic_llama(ws) -> str:
    """The realistic llama (random weights, fixed seed) saved with tiny-llama's tokenizer; returns its folder."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from medcore.models import resolve_model_path

    source = resolve_model_path("tiny-llama", ws)
    tokenizer = AutoTokenizer.from_pretrained(source)
    config = LlamaConfig(
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        **REALISTIC_SHAPE,
    )
    torch.manual_seed(0)
    target = ws.root / "models" / "llama-256x4-32k"
    LlamaForCausalLM(config).save_pretrained(target)
    tokenizer.save_pretrained(target)
    return str(target)


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


def make_spec(task: str, steps: int, models: dict[str, str]):
    from medcore.train import load_spec

    cfg = TASKS[task]
    return load_spec(
        {
            "task": "classification" if task == "classification" else "causal-lm",
            "model": models.get(cfg["model"], cfg["model"]),
            "dataset": cfg["dataset"],
            "max_length": cfg["max_length"],
            "lr": cfg["lr"],
            "max_steps": steps,
            "micro_batch": MICRO,
            "nproc_per_node": WORLD,
            "allow_unredacted": True,
            "seed": 0,
            "name": f"bench-{task.replace('_', '-')}",
        }
    )


def run_logged(command: list[str], log_path: Path) -> None:
    with open(log_path, "wb") as log:
        code = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT).returncode
    if code:
        sys.stderr.write(log_path.read_text()[-9000:])
        raise SystemExit(f"{command[-3:]} failed with exit code {code}")


def run_medcore(ws, task: str, steps: int, models: dict[str, str]) -> dict:
    from medcore.train import prepare_run_dir, torchrun_command, validate_spec

    spec = make_spec(task, steps, models)
    validate_spec(spec, ws)
    rd = prepare_run_dir(spec, ws)
    run_logged(torchrun_command(spec, rd), rd.log)
    lines = [json.loads(x) for x in rd.metrics.read_text().splitlines() if '"loss"' in x]
    timed = lines[1:]
    tokens = sum(m["tokens_per_s"] * m["step_time_s"] for m in timed)
    return {
        "tokens_per_s": tokens / sum(m["step_time_s"] for m in timed),
        "peak_rss_mb": max(m["peak_mem_mb"] for m in lines),
        "losses": [m["loss"] for m in lines],
    }


def run_baseline(ws, task: str, steps: int, models: dict[str, str]) -> dict:
    from medcore.train.launch import free_port

    spec = make_spec(task, steps, models)
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
    """The baseline's examples: the same texts and token ids as MedCore's, unpadded (the collator pads or packs)."""
    from datasets import Dataset

    from medcore.data.manifest import load_split, read_manifest
    from medcore.train.data import IGNORE, load_units

    if spec.task == "classification":
        mapping = read_manifest(ws, spec.dataset).mapping
        frame = load_split(ws, spec.dataset, "train")
        enc = tokenizer(frame[mapping.text].astype(str).tolist(), truncation=True, max_length=spec.max_length)
        index = {label: i for i, label in enumerate(label_set)}
        rows = {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}
        return Dataset.from_dict({**rows, "labels": [index[str(v)] for v in frame[mapping.label]]})
    units = load_units(spec.model_copy(update={"pack": False}), ws, tokenizer, "train", [])
    return Dataset.from_dict(
        {
            "input_ids": [list(u.input_ids) for u in units],
            "completion_mask": [[int(t != IGNORE) for t in u.labels] for u in units],
        }
    )


def hf_training_args(spec, out: str):
    """Arguments matching the MedCore spec: same batch, steps, LR schedule, clipping, seed and ZeRO preset.

    Classification: HF TrainingArguments grouping by length. Causal LM: TRL's SFTConfig with packing.
    """
    from accelerate import PartialState

    from medcore.train.presets import load_zero_preset

    # On a CPU-only machine TrainingArguments' DeepSpeed path builds accelerate's state without a backend and
    # believes the world size is 1 (DeepSpeed then rejects the batch arithmetic); a pre-configured gloo state fixes it.
    os.environ["ACCELERATE_USE_DEEPSPEED"] = "true"
    PartialState(backend="gloo")
    del os.environ["ACCELERATE_USE_DEEPSPEED"]
    common = dict(
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
        accelerator_config={"use_configured_state": True},
    )
    if spec.task == "classification":
        from transformers import TrainingArguments

        return TrainingArguments(**common, train_sampling_strategy="group_by_length", remove_unused_columns=False)
    from trl import SFTConfig

    return SFTConfig(
        **common,
        max_length=spec.max_length,
        packing=True,
        packing_strategy="bfd",
        padding_free=True,
        completion_only_loss=True,
        bf16=False,  # SFTConfig defaults to bf16; both sides run fp32 on CPU
    )


def reference_loss(outputs, labels) -> tuple[float, float]:
    """(summed loss, targets) of one micro-batch, as MedCore counts them: TRL's per-token log-probabilities where
    its fused head gave them (no second pass over the vocabulary), else cross-entropy over the logits."""
    import torch

    with torch.no_grad():
        if getattr(outputs, "log_probs", None) is not None:
            return float(-outputs.log_probs.sum()), float(outputs.label_mask.sum())
        logits = outputs.logits.float()
        if logits.dim() == 3:  # causal LM: position t predicts token t+1
            logits, labels = logits[:, :-1].reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1)
        summed = torch.nn.functional.cross_entropy(logits, labels, ignore_index=-100, reduction="sum")
        return float(summed), float((labels != -100).sum())


def counting_trainer(base, counts: dict):
    """`base` (HF Trainer or TRL SFTTrainer) that adds up useful tokens and each step's loss the way MedCore computes
    it; and a callback that times steps 2..N, less that bookkeeping."""
    from transformers import TrainerCallback

    class CountingTrainer(base):
        def compute_loss(self, model, inputs, return_outputs=False, **kwargs):
            mask = inputs.get("attention_mask")
            counts["step_tokens"] += float(mask.sum() if mask is not None else inputs["input_ids"].numel())
            loss, outputs = super().compute_loss(model, inputs, return_outputs=True, **kwargs)
            began = time.perf_counter()  # what follows is the bench's own bookkeeping: not counted as step time
            summed, targets = reference_loss(outputs, inputs["labels"])
            counts["loss_sums"].append(summed)
            counts["targets"].append(targets)
            counts["step_overhead_s"] += time.perf_counter() - began
            return (loss, outputs) if return_outputs else loss

    class StepTimer(TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):
            counts["t0"], counts["step_tokens"], counts["step_overhead_s"] = time.perf_counter(), 0.0, 0.0

        def on_step_end(self, args, state, control, **kw):
            counts["step"] += 1
            if counts["step"] > 1:  # step 1 carries one-off warm-up, as on the MedCore side
                counts["timed_s"] += time.perf_counter() - counts["t0"] - counts["step_overhead_s"]
                counts["timed_tokens"] += counts["step_tokens"]

    return CountingTrainer, StepTimer()


def hf_worker(job_path: str) -> None:
    """One rank of the baseline: HF Trainer (classification) or TRL SFTTrainer (causal LM) with DeepSpeed."""
    import torch
    import torch.distributed as dist

    from medcore.data.manifest import read_manifest
    from medcore.models import load_model, load_tokenizer
    from medcore.train.lora import apply_lora
    from medcore.train.presets import load_lora_preset
    from medcore.train.spec import RunSpec
    from medcore.workspace import get_workspace

    job = json.loads(Path(job_path).read_text())
    spec, ws = RunSpec.model_validate(job["spec"]), get_workspace()
    args = hf_training_args(spec, job["out"])
    label_set = read_manifest(ws, spec.dataset).label_set if spec.task == "classification" else []
    tokenizer = load_tokenizer(spec.model, ws)
    counts = {"step_tokens": 0.0, "timed_tokens": 0.0, "timed_s": 0.0, "t0": 0.0, "step": 0, "step_overhead_s": 0.0}
    counts.update(loss_sums=[], targets=[])
    if spec.task == "classification":
        from transformers import DataCollatorWithPadding, Trainer

        trainer_class, timer = counting_trainer(Trainer, counts)
        extra = {"data_collator": DataCollatorWithPadding(tokenizer), "processing_class": tokenizer}
    else:
        from trl import SFTTrainer

        trainer_class, timer = counting_trainer(SFTTrainer, counts)
        extra = {"processing_class": tokenizer}
    torch.manual_seed(spec.seed)  # the same head and LoRA initialisation as MedCore's side
    id2label = dict(enumerate(label_set)) if label_set else None
    # The standard model a user builds: the transformers class and peft's LoRA with the same preset, none of
    # MedCore's own training changes ([CLS]-only last layer, integer dropout masks).
    model = apply_lora(load_model(spec.model, spec.task, id2label=id2label, workspace=ws),
                       load_lora_preset(spec.lora), spec.task, spec.model)  # fmt: skip
    model.config.use_cache = False
    trainer = trainer_class(
        model=model,
        args=args,
        train_dataset=hf_dataset(spec, ws, tokenizer, label_set),
        callbacks=[timer],
        **extra,
    )
    trainer.train()
    totals = torch.tensor([counts["timed_tokens"], *counts["loss_sums"], *counts["targets"]], dtype=torch.float64)
    dist.all_reduce(totals)  # every rank's tokens and loss sums; the step time is the same on all ranks
    steps = len(counts["loss_sums"])
    sums, targets = totals[1 : 1 + steps], totals[1 + steps :]
    if dist.get_rank() == 0:
        result = {
            "tokens_per_s": float(totals[0]) / counts["timed_s"],
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "losses": (sums / targets.clamp(min=1)).tolist(),
        }
        Path(job["out"], "result.json").write_text(json.dumps(result))


def final_loss(losses: list[float]) -> float:
    tail = losses[-FINAL_STEPS:]
    return sum(tail) / len(tail)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--tasks", default=",".join(TASKS), help="Comma-separated subset of: " + ", ".join(TASKS))
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
        tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
        models = {"llama-256x4-32k": build_realistic_llama(ws)} if "causal_lm_realistic" in tasks else {}
        results = {}
        for task in tasks:
            ours = run_medcore(ws, task, args.steps, models)
            base = run_baseline(ws, task, args.steps, models)
            ours_loss, base_loss = final_loss(ours["losses"]), final_loss(base["losses"])
            results[task] = {
                "baseline": TASKS[task]["baseline"],
                "medcore_tokens_per_s": round(ours["tokens_per_s"], 1),
                "baseline_tokens_per_s": round(base["tokens_per_s"], 1),
                "ratio": round(ours["tokens_per_s"] / base["tokens_per_s"], 2),
                "medcore_peak_rss_mb": round(ours["peak_rss_mb"], 1),
                "baseline_peak_rss_mb": round(base["peak_rss_mb"], 1),
                "medcore_final_loss": round(ours_loss, 4),
                "baseline_final_loss": round(base_loss, 4),
                "loss_gap": round(abs(ours_loss - base_loss) / max(base_loss, 1e-9), 4),
            }
            print(f"{task}: {json.dumps(results[task])}", file=sys.stderr, flush=True)
            if results[task]["loss_gap"] > LOSS_TOLERANCE:
                print(
                    f"WARNING {task}: final losses differ by more than {LOSS_TOLERANCE:.0%}; the ratio compares "
                    "runs that did not learn alike",
                    file=sys.stderr,
                )
    print(json.dumps(results))


if __name__ == "__main__":
    main()
