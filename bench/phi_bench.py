"""PHI detection benchmark: MedCore vs Presidio's default AnalyzerEngine (same spaCy pipeline), same run.

    .venv/bin/python bench/phi_bench.py [--notes 300] [--workers 2] [--tagger medcore/phi/resources/fast-tagger]

Scores token-level binary recall/precision (a token is a run of letters/digits), per-category recall,
strict entity F1 and throughput (chars/s, wall clock incl. worker start-up) on:
  demo_notes        medcore.demo notes from seeds 1000+ (never used while developing the recognizers)
  synth_dataset_v2  presidio-research's 1,500 synthetic PII sentences, when present in ../shared/data/phi/
  synth_dev         its even-index items: the only ones looked at while developing the general-text rules
  synth_heldout     its odd-index items: never looked at while writing rules; held out from the tagger only when
                    its record (`medcore phi tagger-info`, corpus) says it saw the even-index items alone
  physionet_dev     944 real ICU nursing notes (../shared/data/phi/physionet_dev.jsonl), when present: the shipped
                    tagger was trained on them, so MedCore's accuracy there is the patient-grouped cross-validation
                    recorded with the tagger (bench/phi_cv.py); speed and Presidio's accuracy are measured here
A year alone and ages under 90 are not HIPAA identifiers: such gold spans are scored apart (non_hipaa_recall).
Both systems run with the same parallelism: `--workers` forked processes, each batching texts through nlp.pipe
(Presidio's BatchAnalyzerEngine; MedCore's detect_texts) with one torch thread.
The last line printed is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import re
import sys
import time
from pathlib import Path

from phi_cv import gold_of, read_notes  # bench/ is the script's folder

from medcore.phi.config import SUBTYPE_CATEGORY, RedactionConfig
from medcore.phi.detect import detect_texts, get_analyzer, make_presidio_offline, tagger_for
from medcore.phi.pipeline import one_torch_thread
from medcore.phi.scoring import PhiScore
from medcore.phi.tagger import tagger_record
from medcore.phi.tagger_corpus import SYNTH_CATEGORY

DEMO_SEEDS = (1000, 1001, 1002)  # development used seeds 0-99 only
SYNTH = Path(__file__).resolve().parents[2] / "shared/data/phi/synth_dataset_v2.json"
PHYSIONET = Path(__file__).resolve().parents[2] / "shared/data/phi/physionet_dev.jsonl"
SYNTH_HIPAA = SYNTH_CATEGORY  # presidio-research labels scored; the rest are not HIPAA identifiers
YEAR_ONLY = re.compile(r"(?:in |the )?(?:19|20)\d\d")
# Presidio's own labels, for the baseline's predictions.
BASELINE_CATEGORY = {
    **SUBTYPE_CATEGORY,
    "NRP": "OTHER",
    "CREDIT_CARD": "ID",
    "IBAN_CODE": "ID",
    "CRYPTO": "ID",
    "US_DRIVER_LICENSE": "ID",
    "US_BANK_NUMBER": "ID",
    "US_PASSPORT": "ID",
    "US_ITIN": "ID",
    "MEDICAL_LICENSE": "ID",
    "UK_NHS": "ID",
    "MAC_ADDRESS": "CONTACT",
    "UUID": "ID",
}


def load_demo(n: int) -> list[tuple[str, list, list]]:
    from medcore.demo.notes import generate_notes

    per_seed = -(-n // len(DEMO_SEEDS))
    notes = [note for seed in DEMO_SEEDS for note in generate_notes(seed=seed, n=per_seed)][:n]
    return [(x["text"], [(g["start"], g["end"], g["type"]) for g in x["phi_spans"]], []) for x in notes]


def load_synth() -> list[tuple[str, list, list]] | None:
    if not SYNTH.exists():
        return None
    docs = []
    for item in json.loads(SYNTH.read_text()):
        gold, other = [], []
        for s in item["spans"]:
            span = (s["start_position"], s["end_position"], SYNTH_HIPAA.get(s["entity_type"], s["entity_type"]))
            hipaa = s["entity_type"] in SYNTH_HIPAA
            if s["entity_type"] == "AGE":  # only ages over 89 are identifiers
                digits = "".join(c for c in s["entity_value"] if c.isdigit())
                hipaa = bool(digits) and int(digits) > 89
            if s["entity_type"] == "DATE_TIME" and YEAR_ONLY.fullmatch(s["entity_value"].strip()):
                hipaa = False  # Safe Harbor keeps the year: "founded in 1973" is not a date element
            (gold if hipaa else other).append(span)
        docs.append((item["full_text"], gold, other))
    return docs


def load_physionet() -> list[tuple[str, list, list]] | None:
    if not PHYSIONET.exists():
        return None
    return [(note["text"], *gold_of(note)) for note in read_notes(PHYSIONET)]


MEDCORE: dict = {"config": RedactionConfig()}  # --tagger replaces it before the workers fork


def chunk_detect(texts: list[str]) -> list[list[tuple[int, int, str]]]:
    return [[(s.start, s.end, s.type) for s in spans] for spans in detect_texts(texts, MEDCORE["config"])]


def in_workers(function, texts: list[str], workers: int) -> list:
    """`function` over chunks of `texts` in `workers` forked processes (one torch thread each), in order."""
    if workers <= 1:
        return function(texts)
    size = max(1, -(-len(texts) // (workers * 4)))
    chunks = [texts[i : i + size] for i in range(0, len(texts), size)]
    with multiprocessing.get_context("fork").Pool(workers, initializer=one_torch_thread) as pool:
        return [p for part in pool.map(function, chunks) for p in part]


def run_medcore(texts: list[str], workers: int) -> tuple[list, float]:
    config = MEDCORE["config"]
    get_analyzer(config.lexicon, config.spacy_ner)  # loaded before timing, as a service or the console has them
    tagger_for(config)
    started = time.perf_counter()
    predictions = in_workers(chunk_detect, texts, workers)
    return predictions, time.perf_counter() - started


PRESIDIO: dict = {}


def presidio_detect(texts: list[str]) -> list[list[tuple[int, int, str]]]:
    from presidio_analyzer import BatchAnalyzerEngine

    batch = BatchAnalyzerEngine(analyzer_engine=PRESIDIO["analyzer"])
    results = batch.analyze_iterator(texts, language="en", batch_size=MEDCORE["config"].batch_size)  # same batching
    return [[(r.start, r.end, BASELINE_CATEGORY.get(r.entity_type, "OTHER")) for r in found] for found in results]


def run_presidio_default(texts: list[str], workers: int) -> tuple[list, float]:
    from presidio_analyzer import AnalyzerEngine

    make_presidio_offline()  # the baseline must not fetch the public-suffix list either
    if "analyzer" not in PRESIDIO:
        PRESIDIO["analyzer"] = AnalyzerEngine(nlp_engine=default_nlp_engine(), supported_languages=["en"])
        PRESIDIO["analyzer"].analyze("warm up", language="en")
    started = time.perf_counter()
    predictions = in_workers(presidio_detect, texts, workers)
    return predictions, time.perf_counter() - started


def default_nlp_engine():
    """Presidio's default spaCy engine and NER mapping, on the packaged small pipeline."""
    from presidio_analyzer.nlp_engine import NlpEngineProvider

    from medcore.phi.detect import find_spacy_model

    provider = NlpEngineProvider()  # reads Presidio's default.yaml (en_core_web_lg), then swap the model
    provider.nlp_configuration["models"] = [{"lang_code": "en", "model_name": find_spacy_model()}]
    return provider.create_engine()


def score(docs, predictions, seconds: float) -> dict:
    main, other = PhiScore(), PhiScore()
    for (text, gold, ignore), predicted in zip(docs, predictions, strict=True):
        main.add(text, gold, predicted, ignore=ignore)
        if ignore:
            other.add(text, ignore, predicted)
    chars = sum(len(text) for text, _, _ in docs)
    summary = main.summary()
    summary["chars_per_s"] = round(chars / seconds, 1)
    if other.gold_tokens:
        summary["non_hipaa_recall"] = round(other.recall, 4)
    return summary


def bench_corpus(docs, workers: int, halves: dict[str, int] | None = None) -> dict:
    """Figures for both systems on `docs`; `halves` names index-parity subsets scored from the same run."""
    texts = [text for text, _, _ in docs]
    medcore_pred, medcore_s = run_medcore(texts, workers)
    base_pred, base_s = run_presidio_default(texts, workers)
    result = {"medcore": score(docs, medcore_pred, medcore_s), "presidio_default": score(docs, base_pred, base_s)}
    result["speed_ratio"] = round(base_s / medcore_s, 2)
    result["documents"] = len(docs)
    subsets = {}
    for name, parity in (halves or {}).items():
        # Timing is per run, not per half: each half gets the run's seconds in proportion to its characters.
        share = sum(len(t) for t in texts[parity::2]) / max(1, sum(map(len, texts)))
        subsets[name] = {
            "medcore": score(docs[parity::2], medcore_pred[parity::2], medcore_s * share),
            "presidio_default": score(docs[parity::2], base_pred[parity::2], base_s * share),
            "documents": len(docs[parity::2]),
        }
    return result if not halves else {"full": result, **subsets}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--notes", type=int, default=300, help="Demo notes to score (seeds 1000+).")
    parser.add_argument("--workers", type=int, default=2, help="MedCore worker processes (the machine has 2 cores).")
    parser.add_argument("--tagger", help="A shipped tagger (encoder, fast) or a tagger folder (default: the default).")
    args = parser.parse_args(argv)
    if args.tagger:
        MEDCORE["config"] = RedactionConfig(tagger=args.tagger)
    results = {
        "tagger": str(MEDCORE["config"].tagger),
        "demo_notes": bench_corpus(load_demo(args.notes), args.workers),
    }
    synth = load_synth()
    if synth is not None:
        synth_results = bench_corpus(synth, args.workers, {"synth_dev": 0, "synth_heldout": 1})
        results["synth_dataset_v2"] = synth_results.pop("full")
        results.update(synth_results)
    physionet = load_physionet()
    if physionet is not None:
        figures = bench_corpus(physionet, args.workers)
        trained_on = figures.pop("medcore")  # the shipped tagger learned from these notes: not a fair score
        cv = tagger_record(MEDCORE["config"].tagger).get("cross_validation", {})
        figures["medcore"] = {**cv.get("at_threshold", {}), "chars_per_s": trained_on["chars_per_s"]}
        figures["medcore_cross_validation"] = {k: cv.get(k) for k in ("threshold", "folds", "notes", "rules_alone")}
        results["physionet_dev"] = figures
    for corpus, figures in results.items():
        if corpus == "tagger":
            continue
        for system in ("medcore", "presidio_default"):
            f = figures[system]
            print(
                f"{corpus:17s} {system:17s} recall {f.get('recall', float('nan')):.4f} "
                f"precision {f.get('precision', float('nan')):.4f} "
                f"entity F1 {f.get('entity_f1', float('nan')):.4f} {f['chars_per_s']:>9,.0f} chars/s",
                file=sys.stderr,
            )
    print(json.dumps(results, sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
