"""The `medcore` command: a thin dispatcher over the job modules.

Each command lives in its own module exposing `add_arguments(parser)` and `run(args) -> int`.
Only the chosen module is imported, so `medcore --help` and light commands start fast.
User errors (MedcoreError) print one line and exit 1, with no traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from medcore.errors import CLI_OPTIONS, MedcoreError

# command -> (module, one-line help). Add a command by adding a row and a module.
COMMANDS: dict[str, tuple[str, str]] = {
    "doctor": (
        "medcore.doctor",
        "Check the installation: versions, CUDA, spaCy pipeline, packaged encoder, disk, RAM.",
    ),
    "demo": (
        "medcore.commands.demo",
        "Build the deterministic synthetic demo workspace (notes with gold PHI, labels, QA).",
    ),
    "redact": ("medcore.commands.redact", "Detect and redact PHI in a CSV/JSONL/Parquet file."),
    "phi": ("medcore.commands.phi", "Rebuild the learned PHI tagger (train-tagger) or show its record (tagger-info)."),
    "audit": ("medcore.commands.audit", "Show, verify or seal the HMAC-signed audit log."),
    "users": ("medcore.commands.users", "Add, remove, list console users; set roles, passwords, dataset grants."),
    "data": ("medcore.commands.data", "Import, validate and split a dataset into the workspace."),
    "train": ("medcore.commands.train", "Launch a fine-tuning run from a spec (torchrun + DeepSpeed + LoRA)."),
    "quickstart": ("medcore.commands.quickstart", "Demo data -> LoRA fine-tune of minilm -> evaluation summary."),
    "runs": ("medcore.commands.runs", "List, watch, cancel and resume runs."),
    "launch": (
        "medcore.commands.launch",
        "Write a run's launch file for a cluster: torchrun script, SLURM sbatch, Kubeflow PyTorchJob, vLLM on k8s.",
    ),
    "eval": (
        "medcore.commands.eval",
        "Clinical metrics with 95% confidence intervals: of a model on a split (eval run) or of predictions (eval metrics).",
    ),
    "serve": (
        "medcore.commands.serve",
        "Serve a model and its LoRA adapters over the OpenAI protocol (embedded or vLLM); list and stop servers.",
    ),
    "card": ("medcore.commands.cards", "Write a completed run's model card (MODEL_CARD.md in its run folder)."),
    "docs": ("medcore.commands.docs_reference", "Regenerate docs/config-reference.md from the config models."),
}


def _print_overview() -> None:
    print("usage: medcore <command> [options]\n\nCommands:")
    width = max(len(name) for name in COMMANDS)
    for name, (_, help_text) in COMMANDS.items():
        print(f"  {name:<{width}}  {help_text}")
    print("\nRun `medcore <command> --help` for a command's options.")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in {"-h", "--help", "help"}:
        _print_overview()
        return 0
    if argv[0] in {"-V", "--version"}:
        from medcore import __version__

        print(__version__)
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"error: unknown command '{name}'. Commands are: {', '.join(COMMANDS)}.", file=sys.stderr)
        return 2
    module_name, help_text = COMMANDS[name]
    module = importlib.import_module(module_name)
    parser = argparse.ArgumentParser(prog=f"medcore {name}", description=help_text)
    module.add_arguments(parser)
    args = parser.parse_args(rest)
    try:
        return int(module.run(args) or 0)
    except MedcoreError as exc:
        print(f"error: {exc.render(CLI_OPTIONS)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
