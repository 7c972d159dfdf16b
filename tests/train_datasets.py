"""Synthetic clinical-ish datasets written straight into a workspace (manifest.json + parquet) for the train tests."""

from __future__ import annotations

import contextlib
import random

import pandas as pd
import pytest

from medcore.data.importer import import_dataset
from medcore.data.manifest import ColumnMapping, DatasetManifest, RedactionInfo, dataset_dir, write_manifest

FINDINGS = {
    "cardiology": [
        "chest pain radiating to the left arm",
        "elevated troponin",
        "atrial fibrillation on ECG",
        "shortness of breath on exertion",
        "murmur heard at the apex",
    ],
    "neurology": [
        "sudden weakness of the right hand",
        "slurred speech since morning",
        "new onset seizure",
        "severe headache with photophobia",
        "numbness in both feet",
    ],
    "respiratory": [
        "productive cough for two weeks",
        "wheeze on auscultation",
        "low oxygen saturation",
        "crackles at both bases",
        "pleuritic pain when breathing in",
    ],
}
FILLER = [
    "Observations stable overnight.",
    "Seen with the registrar.",
    "Plan discussed with the family.",
    "Bloods sent this morning.",
    "Review again after the weekend.",
    "Tolerating diet and fluids.",
]
DRUGS = {"cardiology": "aspirin", "neurology": "levetiracetam", "respiratory": "amoxicillin"}


def classification_frame(n: int, seed: int) -> pd.DataFrame:
    """Notes whose specialty shows in their findings; lengths vary 5x, as real notes do."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = rng.choice(sorted(FINDINGS))
        parts = [rng.choice(FINDINGS[label]).capitalize() + "."] + rng.sample(FILLER, rng.randint(0, 5))
        rng.shuffle(parts)
        rows.append({"note": " ".join(parts), "specialty": label, "source_row": i + 1})
    return pd.DataFrame(rows)


def qa_frame(n: int, seed: int) -> pd.DataFrame:
    """Question / note excerpt / answer rows: the answer (a drug) follows from the specialty of the finding."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = rng.choice(sorted(FINDINGS))
        context = " ".join([rng.choice(FINDINGS[label]).capitalize() + "."] + rng.sample(FILLER, rng.randint(0, 4)))
        rows.append(
            {
                "question": "What medication was started?",
                "context": context,
                "answer": DRUGS[label],
                "source_row": i + 1,
            }
        )
    return pd.DataFrame(rows)


def write_dataset(
    ws, name: str, task: str, n: int = 96, seed: int = 0, redacted: bool = True, frame: pd.DataFrame | None = None
) -> DatasetManifest:
    """Split 70/15/15 and write a dataset folder in the contract of medcore.data.manifest."""
    df = (
        frame
        if frame is not None
        else (classification_frame(n, seed) if task == "classification" else qa_frame(n, seed))
    )
    cuts = [0, int(len(df) * 0.7), int(len(df) * 0.85), len(df)]
    folder = dataset_dir(ws, name)
    folder.mkdir(parents=True, exist_ok=True)
    rows = {}
    for split, lo, hi in zip(("train", "validation", "test"), cuts[:-1], cuts[1:], strict=True):
        part = df.iloc[lo:hi].reset_index(drop=True)
        part.to_parquet(folder / f"{split}.parquet", index=False)
        rows[split] = len(part)
    if task == "classification":
        mapping = ColumnMapping(text="note", label="specialty")
        label_set = sorted(FINDINGS)
    else:
        mapping = ColumnMapping(text="context", prompt="question", response="answer")
        label_set = []
    manifest = DatasetManifest(
        name=name,
        columns={c: "string" for c in df.columns},
        mapping=mapping,
        task=task,
        rows=rows,
        label_set=label_set,
    )
    write_manifest(folder, manifest)
    return certify_redacted(ws, name) if redacted else manifest


def certify_redacted(ws, name: str) -> DatasetManifest:
    """Stand in for a redaction run on synthetic, PHI-free data: append the audit record the training gate checks
    (medcore.phi.verify) for the dataset's current files, and point its manifest at it."""
    from medcore.data.manifest import read_manifest
    from medcore.phi.audit import append_audit_record
    from medcore.phi.columns import text_roles
    from medcore.phi.verify import REDACTION_KIND, dataset_content_hash

    manifest = read_manifest(ws, name)
    texts = set(text_roles(manifest.mapping))
    columns = [
        {"column": c, "action": "redact" if c in texts else "keep", "kind": "synthetic"} for c in manifest.columns
    ]
    parent = manifest.redaction.parent or name
    record = append_audit_record(
        ws, REDACTION_KIND, dataset=parent, output_dataset=name, columns=columns,
        content_hash=dataset_content_hash(dataset_dir(ws, name)),
    )  # fmt: skip
    manifest.redaction = RedactionInfo(
        status="redacted", mode="safe-harbor", method="mask", parent=parent, audit_hash=record["hash"]
    )
    write_manifest(dataset_dir(ws, name), manifest)
    return manifest


def import_certified_notes(ws, name: str = "notes"):
    """48 short synthetic notes in 3 balanced classes, imported as redacted and certified in the audit log: the
    smallest dataset a real training job accepts."""
    frame = pd.DataFrame(
        {"text": [f"note {i} shows finding {i % 3}" for i in range(48)], "label": ["a", "b", "c"] * 16}
    )
    redacted = RedactionInfo(status="redacted", mode="safe-harbor", method="mask", parent="raw")
    import_dataset(ws, frame, name, ColumnMapping(text="text", label="label"), redaction=redacted)
    return certify_redacted(ws, name)  # synthetic notes: the audit record the training gate checks


RANK_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@contextlib.contextmanager
def one_rank_world():
    """The environment of rank 0 in a world of one, with one thread (as each rank under torchrun), for running
    `python -m medcore.train RUN_DIR`'s main in this process; the environment, thread count and signal handlers the
    trainer changes are restored afterwards, so the rest of the session is unaffected."""
    import signal

    import torch

    from medcore.procs import free_port

    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    threads = torch.get_num_threads()
    with pytest.MonkeyPatch.context() as mp:
        for key, value in zip(RANK_ENV, ("0", "1", "0", "127.0.0.1", str(free_port())), strict=True):
            mp.setenv(key, value)
        torch.set_num_threads(1)
        try:
            yield mp
        finally:
            torch.set_num_threads(threads)
            for sig, handler in handlers.items():
                signal.signal(sig, handler)


def train_in_process(ws, fields: dict):
    """Validate a run spec, prepare its folder and train it to completion in this process (one_rank_world).

    Returns the RunDir; fails the test with the run's status when training does not exit 0.
    """
    from medcore.train import load_spec, prepare_run_dir, validate_spec
    from medcore.train.__main__ import main

    spec = load_spec(fields)
    validate_spec(spec, ws)
    rd = prepare_run_dir(spec, ws)
    with one_rank_world():
        assert main([str(rd.path)]) == 0, rd.status.read_text()
    return rd
