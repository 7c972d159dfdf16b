"""Patient-grouped cross-validation of MedCore's PHI detection on real development notes (PhysioNet deid).

    .venv/bin/python bench/phi_cv.py [--folds 5] [--epochs 3] [--record] [--student | --combined]
        [--dev-repeat N] [--encoder-layers N] [--max-length N] [--taggers-dir DIR]

--student scores the fast student tagger (medcore/phi/resources/fast-tagger) instead: each fold's encoder tagger is distilled
(medcore.train.phi_student) on that fold's corpus, so the student never sees its held-out patients either.
--combined scores the combined tagger (medcore/phi/resources/combined-tagger): each fold's encoder tagger and its
student, their probabilities averaged with the shipped record's weights (--encoder-weight to try others).
The next four try a tagger variant under the same folds: the real notes weighed N times, an encoder cut to its
first N layers (faster, see medcore.train.phi_tagger.shallow_encoder), other windows; --taggers-dir keeps the fold
taggers so that a rerun reuses them.

For each fold, a tagger is trained with `medcore phi train-tagger`'s own code on the generated notes, the
synthetic sentences and the other folds' patients, then the held-out patients' notes are detected with rules +
that tagger at every threshold of a grid (the tagger scores each note once; decoding per threshold is cheap).
No figure comes from a note its tagger was trained on. Scores are token-level as in bench/phi_bench.py: HIPAA
categories together and per category; a year alone (DateYear) is scored apart (non_hipaa_recall).
The chosen threshold is the highest that reaches the recall target (else the one with the best F3, which weighs
recall nine times precision); `--record` writes it and the figures into the shipped tagger's tagger.json.
The last line printed is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
from pathlib import Path

from medcore.fileio import sha256_files
from medcore.phi.config import COMBINED_TAGGER, ENCODER_TAGGER, FAST_TAGGER, RedactionConfig, load_allowlist
from medcore.phi.detect import detect_rules
from medcore.phi.ensemble import combine_spans
from medcore.phi.scoring import PhiScore
from medcore.phi.tagger import (
    COMBINED_KIND,
    ENCODER_LAYERS,
    TAGGER_RECORD,
    combined_members,
    load_tagger,
    tagger_record,
    weights_file,
)
from medcore.phi.tagger_corpus import NOT_SAFE_HARBOR, PHYSIONET_CATEGORY, physionet_patients
from medcore.train.phi_student import StudentTrainConfig, train_student
from medcore.train.phi_tagger import TaggerTrainConfig, record_cross_validation, train_tagger

SHARED = Path(__file__).resolve().parents[2] / "shared/data/phi"
DEV_NOTES = SHARED / "physionet_dev.jsonl"
SYNTH = SHARED / "synth_dataset_v2.json"
# Every 0.02 where the taggers' operating points lie (the F3 curve is flat there, so a coarse grid picks by chance),
# and the tails; the console shows the figures measured nearest to its slider.
GRID = (0.02, 0.05, *(round(0.1 + 0.02 * i, 2) for i in range(16)), 0.5, 0.6, 0.7)
RECALL_TARGET = 0.99


def read_notes(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def grouped_folds(path: Path, k: int, seed: int) -> list[list[str]]:
    """k disjoint patient groups, shuffled with `seed` (patients, not notes: a patient's notes stay together)."""
    patients = physionet_patients(path)
    random.Random(seed).shuffle(patients)
    return [patients[i::k] for i in range(k)]


def gold_of(note: dict) -> tuple[list, list]:
    gold = [
        (s["start"], s["end"], PHYSIONET_CATEGORY[s["type"]]) for s in note["spans"] if s["type"] in PHYSIONET_CATEGORY
    ]
    other = [(s["start"], s["end"], "YEAR") for s in note["spans"] if s["type"] in NOT_SAFE_HARBOR]
    return gold, other


def detect_fold(notes: list[dict], tagger_dir: Path | None, grid=GRID) -> dict[float | None, list[list]]:
    """Predicted (start, end, category) per note, per threshold (key None: rules alone)."""
    allow = load_allowlist(RedactionConfig().allowlist)
    texts = [n["text"] for n in notes]
    rules = list(detect_rules(texts, RedactionConfig(tagger=None), allow))
    out = {
        None: [
            [(s.start, s.end, s.type) for s in combine_spans(t, r, [], allow, tagger_on=False)]
            for t, r in zip(texts, rules, strict=True)
        ]
    }
    if tagger_dir is None:
        return out
    tagger = load_tagger(tagger_dir)
    scored = tagger.score_texts(texts)
    for threshold in grid:
        out[threshold] = [
            [(s.start, s.end, s.type) for s in combine_spans(t, r, tagger.decode(t, sc, threshold), allow)]
            for t, r, sc in zip(texts, rules, scored, strict=True)
        ]
    return out


def score(notes: list[dict], predictions: list[list]) -> dict:
    main, years = PhiScore(), PhiScore()
    for note, predicted in zip(notes, predictions, strict=True):
        gold, other = gold_of(note)
        main.add(note["text"], gold, predicted, ignore=other)
        if other:
            years.add(note["text"], other, predicted)
    summary = main.summary()
    summary["non_hipaa_recall"] = round(years.recall, 4) if years.gold_tokens else None
    return summary


def choose_threshold(by_threshold: dict[float, dict], target: float = RECALL_TARGET) -> float:
    reaching = [t for t, f in by_threshold.items() if f["recall"] >= target]
    if reaching:
        return max(reaching)

    def f3(f: dict) -> float:  # recall weighs nine times precision: a leak costs more than a masked word
        p, r = f["precision"], f["recall"]
        return 10 * p * r / (9 * p + r) if p + r else 0.0

    return max(by_threshold, key=lambda t: f3(by_threshold[t]))


def run_cv(args) -> dict:
    notes = read_notes(DEV_NOTES)
    folds = grouped_folds(DEV_NOTES, args.folds, args.seed)
    ordered: list[dict] = []
    predictions: dict = {}
    train_seconds = []
    scratch = Path(args.taggers_dir or tempfile.mkdtemp(prefix="medcore-phi-cv-"))
    for k, held_out in enumerate(folds):
        held = [n for n in notes if str(n["patient"]) in set(held_out)]
        tagger_dir = scratch / f"fold{k}"
        if tagger_record(tagger_dir).get("config", {}).get("exclude_patients") != held_out:
            train_tagger(
                TaggerTrainConfig(
                    out=tagger_dir,
                    dev_notes=DEV_NOTES,
                    exclude_patients=held_out,
                    synth=SYNTH if SYNTH.exists() else None,
                    synth_all=True,  # as the recorded folds were trained
                    register_notes=args.register_notes,
                    epochs=args.epochs,
                    seed=args.seed,
                    nproc=args.nproc,
                    encoder_layers=args.encoder_layers,
                    dev_repeat=args.dev_repeat,
                    max_length=args.max_length,
                ),
                log=lambda m: print(m, file=sys.stderr),
            )
        train_seconds.append(tagger_record(tagger_dir).get("train_seconds"))
        if args.student or args.combined:
            student_dir = distil_fold(tagger_dir, scratch / f"fold{k}-student", held_out, args)
            train_seconds[-1] = [train_seconds[-1], tagger_record(student_dir).get("train_seconds")]
            if args.combined:  # the fold's encoder tagger and its student together
                tagger_dir = combine_fold(scratch / f"fold{k}-combined", tagger_dir, student_dir, args.encoder_weight)
            else:
                tagger_dir = student_dir
        fold_pred = detect_fold(held, tagger_dir)
        for key, preds in fold_pred.items():
            predictions.setdefault(key, []).extend(preds)
        ordered += held
        shown = {t: score(held, fold_pred[t]) for t in (None, 0.1, 0.3, 0.5)}
        figures = ", ".join(f"{t}: R {f['recall']:.3f} P {f['precision']:.3f}" for t, f in shown.items())
        print(f"fold {k}: {len(held)} notes, trained in {train_seconds[-1]} s; {figures}", file=sys.stderr, flush=True)
    if not args.taggers_dir:
        shutil.rmtree(scratch, ignore_errors=True)
    by_threshold = {t: score(ordered, predictions[t]) for t in GRID}
    chosen = choose_threshold(by_threshold)
    return {
        "folds": args.folds,
        "notes": len(ordered),
        "patients": sum(map(len, folds)),
        "train_seconds_per_fold": train_seconds,
        "rules_alone": score(ordered, predictions[None]),
        "by_threshold": {str(t): f for t, f in by_threshold.items()},
        "threshold": chosen,
        "at_threshold": by_threshold[chosen],
        "recall_target": RECALL_TARGET,
    }


def combine_fold(out: Path, encoder: Path, student: Path, encoder_weight: float) -> Path:
    """A combined tagger folder for one fold: a record naming the fold's two taggers (by path, nothing copied)."""
    out.mkdir(parents=True, exist_ok=True)
    members = [
        {"folder": str(encoder.resolve()), "weight": encoder_weight},
        {"folder": str(student.resolve()), "weight": round(1 - encoder_weight, 6)},
    ]
    (out / TAGGER_RECORD).write_text(json.dumps({"kind": COMBINED_KIND, "members": members}, indent=2) + "\n")
    return out


def shipped_encoder_weight() -> float:
    """The encoder tagger's weight in the shipped combined tagger (its record names both members)."""
    weights = dict(combined_members(COMBINED_TAGGER))
    return weights[ENCODER_TAGGER.resolve()] / sum(weights.values())


def distil_fold(teacher: Path, out: Path, held_out: list[str], args) -> Path:
    """The fold's student tagger, distilled from the fold's encoder tagger (reused when already in `out`)."""
    record = tagger_record(out)
    config = StudentTrainConfig(
        teacher=teacher,
        out=out,
        dev_notes=DEV_NOTES,
        exclude_patients=held_out,
        synth=SYNTH if SYNTH.exists() else None,
        synth_all=True,
        register_notes=args.register_notes,
        extra_notes=args.student_extra_notes,
        epochs=args.student_epochs,
        seed=args.seed,
    )
    recorded = record.get("config", {})
    same_setting = all(
        recorded.get(name) == getattr(config, name) for name in ("exclude_patients", "extra_notes", "epochs")
    )
    if not same_setting or record.get("teacher", {}).get("sha256") != sha256_files([weights_file(teacher)]):
        train_student(config, log=lambda m: print(m, file=sys.stderr))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--epochs", type=float, default=TaggerTrainConfig.model_fields["epochs"].default)
    parser.add_argument("--register-notes", type=int, default=TaggerTrainConfig.model_fields["register_notes"].default)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--nproc", type=int, default=2, help="Training ranks per fold (the machine has 2 cores).")
    parser.add_argument("--encoder-layers", type=int, default=ENCODER_LAYERS, help="Encoder layers the taggers keep.")
    parser.add_argument("--dev-repeat", type=int, default=1, help="Copies of each development note in training.")
    parser.add_argument("--max-length", type=int, default=TaggerTrainConfig.model_fields["max_length"].default)
    parser.add_argument("--student", action="store_true", help="Score each fold's distilled student tagger.")
    parser.add_argument(
        "--student-epochs",
        type=int,
        default=StudentTrainConfig.model_fields["epochs"].default,
        help="Distillation passes.",
    )
    parser.add_argument(
        "--student-extra-notes",
        type=int,
        default=StudentTrainConfig.model_fields["extra_notes"].default,
        help="Generated notes the student learns from beyond the teacher's corpus.",
    )
    parser.add_argument(
        "--combined", action="store_true", help="Score each fold's encoder tagger and student combined."
    )
    parser.add_argument(
        "--encoder-weight",
        type=float,
        default=None,
        help="The encoder tagger's weight in --combined (default: the shipped combined tagger's).",
    )
    parser.add_argument("--taggers-dir", type=Path, help="Keep (and reuse) each fold's tagger here.")
    parser.add_argument(
        "--record",
        action="store_true",
        help="Write the chosen threshold into the shipped tagger (the fast student with --student, the combined one "
        "with --combined, else the encoder tagger).",
    )
    args = parser.parse_args(argv)
    if args.encoder_weight is None:
        args.encoder_weight = shipped_encoder_weight()
    if not DEV_NOTES.exists():
        print(json.dumps({"skipped": f"{DEV_NOTES} not found"}))
        return 0
    results = run_cv(args)
    if args.record:
        shipped = COMBINED_TAGGER if args.combined else FAST_TAGGER if args.student else ENCODER_TAGGER
        record_cross_validation(shipped, results["threshold"], results)
    for t, f in results["by_threshold"].items():
        print(
            f"threshold {t:>5}: recall {f['recall']:.4f} precision {f['precision']:.4f} {f['per_category_recall']}",
            file=sys.stderr,
        )
    print(json.dumps(results, sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
