"""`medcore quickstart`: demo notes -> import -> PHI redaction -> LoRA fine-tune of minilm -> test-split evaluation.

The one-command path the classic `quick_start.py` promised, on synthetic notes (no real PHI), in a few minutes on CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import time

from medcore.evaluate.runner import evaluate_model
from medcore.rundir import write_json_atomic
from medcore.workspace import Workspace

DATASET = "quickstart-notes"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--notes", type=int, default=400, help="Synthetic notes to generate (default 400).")
    parser.add_argument("--steps", type=int, default=40, help="Optimizer steps (default 40).")
    parser.add_argument("--nproc", type=int, default=None, help="Training processes (default: min(2, CPU cores)).")
    parser.add_argument("--seed", type=int, default=0, help="Seed for the notes, the split and training.")


def import_demo_notes(ws: Workspace, n: int, seed: int) -> str:
    """Generate notes, import them (patient-grouped split), redact them; returns the redacted dataset's name."""
    import pandas as pd

    from medcore.data.importer import import_dataset
    from medcore.data.manifest import ColumnMapping
    from medcore.demo.notes import generate_notes
    from medcore.phi import redact_dataset

    notes = pd.DataFrame(generate_notes(seed=seed, n=n))[["note_id", "patient_id", "text", "specialty"]]
    mapping = ColumnMapping(text="text", label="specialty", id="note_id", patient_id="patient_id")
    import_dataset(ws, notes, DATASET, mapping, task="classification", seed=seed, overwrite=True)
    return redact_dataset(ws, DATASET, overwrite=True).name


def summarise_eval(result: dict, split: str) -> dict:
    """The quickstart's summary of an eval: accuracy and macro F1 with their 95% CIs, and where the rest is."""
    summary = {"split": split, "rows": result["n"], "labels": len(result["per_class"])}
    for name in ("accuracy", "macro_f1"):
        metric = result["metrics"][name]
        summary[name], summary[f"{name}_ci95"] = metric["value"], [metric["ci_low"], metric["ci_high"]]
    return {**summary, "eval_id": result["eval_id"], "eval_path": result["path"]}


def run(args: argparse.Namespace) -> int:
    from medcore.commands.train import stream_job, summarise
    from medcore.train import load_spec, prepare_run_dir, torchrun_command, validate_spec
    from medcore.workspace import get_workspace

    ws, began = get_workspace(), time.time()
    print(f"[1/4] generating {args.notes} synthetic notes, importing and redacting them...", flush=True)
    dataset = import_demo_notes(ws, args.notes, args.seed)
    nproc = args.nproc or min(2, os.cpu_count() or 1)
    spec = load_spec(
        {
            "name": "quickstart",
            "model": "minilm",
            "task": "classification",
            "dataset": dataset,
            "lora": "default",
            "zero": "single_node",
            "max_length": 256,
            "micro_batch": 8,
            "lr": 1e-3,
            "max_steps": args.steps,
            "nproc_per_node": nproc,
            "seed": args.seed,
            "log_interval": 5,
        }
    )
    validate_spec(spec, ws)
    rd = prepare_run_dir(spec, ws)
    print(f"[2/4] fine-tuning minilm with LoRA on {nproc} process(es): run {rd.run_id}", flush=True)
    stream_job(torchrun_command(spec, rd), rd.log)
    print(summarise(rd))
    if rd.read_status().get("state") != "completed":
        return 1
    print("[3/4] evaluating the adapter on the test split...", flush=True)
    result = summarise_eval(evaluate_model(rd.run_id, ws, dataset, "test", seed=args.seed), "test")
    write_json_atomic(rd.path / "eval_test.json", result)
    print(f"[4/4] done in {time.time() - began:.0f}s\n" + json.dumps(result, indent=2))
    print(f"adapter: {rd.adapter}\nnext: `medcore runs` to list runs; open the console with `make run`.")
    return 0
