"""PHI detection benchmark: MedCore vs Presidio's default AnalyzerEngine (same spaCy pipeline), same run.

    .venv/bin/python bench/phi_bench.py [--notes 300] [--workers 2]

Scores token-level binary recall/precision (a token is a run of letters/digits), per-category recall,
strict entity F1 and throughput (chars/s, wall clock incl. worker start-up) on:
  demo_notes        medcore.demo notes from seeds 1000+ (never used while developing the recognizers)
  synth_dataset_v2  presidio-research's 1,500 synthetic PII sentences, when present in ../shared/data/phi/
  synth_dev         its even-index items: the only ones looked at while developing the general-text rules
  synth_heldout     its odd-index items: never looked at, the honest figure for non-templated text
A year alone and ages under 90 are not HIPAA identifiers: such gold spans are scored apart (non_hipaa_recall).
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

from medcore.phi.config import SUBTYPE_CATEGORY, RedactionConfig
from medcore.phi.detect import detect_texts, get_analyzer, make_presidio_offline
from medcore.phi.scoring import PhiScore

DEMO_SEEDS = (1000, 1001, 1002)  # development used seeds 0-99 only
SYNTH = Path(__file__).resolve().parents[2] / "shared/data/phi/synth_dataset_v2.json"
# presidio-research labels -> i2b2 categories scored; the rest are not HIPAA identifiers (reported apart).
SYNTH_HIPAA = {
    "PERSON": "NAME",
    "STREET_ADDRESS": "LOCATION",
    "GPE": "LOCATION",
    "ZIP_CODE": "LOCATION",
    "ORGANIZATION": "LOCATION",
    "DATE_TIME": "DATE",
    "PHONE_NUMBER": "CONTACT",
    "EMAIL_ADDRESS": "CONTACT",
    "DOMAIN_NAME": "CONTACT",
    "IP_ADDRESS": "CONTACT",
    "US_SSN": "ID",
    "US_DRIVER_LICENSE": "ID",
    "AGE": "AGE",
}
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


def chunk_detect(texts: list[str]) -> list[list[tuple[int, int, str]]]:
    return [[(s.start, s.end, s.type) for s in spans] for spans in detect_texts(texts, RedactionConfig())]


def run_medcore(texts: list[str], workers: int) -> tuple[list, float]:
    get_analyzer()  # loaded before timing, as a long-running service or the console has it
    started = time.perf_counter()
    if workers <= 1:
        predictions = chunk_detect(texts)
    else:
        size = max(1, -(-len(texts) // (workers * 4)))
        chunks = [texts[i : i + size] for i in range(0, len(texts), size)]
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            predictions = [p for part in pool.map(chunk_detect, chunks) for p in part]
    return predictions, time.perf_counter() - started


def run_presidio_default(texts: list[str]) -> tuple[list, float]:
    from presidio_analyzer import AnalyzerEngine

    make_presidio_offline()  # the baseline must not fetch the public-suffix list either
    analyzer = AnalyzerEngine(nlp_engine=default_nlp_engine(), supported_languages=["en"])
    analyzer.analyze("warm up", language="en")
    started = time.perf_counter()
    predictions = []
    for text in texts:
        results = analyzer.analyze(text, language="en")
        predictions.append([(r.start, r.end, BASELINE_CATEGORY.get(r.entity_type, "OTHER")) for r in results])
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
    base_pred, base_s = run_presidio_default(texts)
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
    args = parser.parse_args(argv)
    results = {"demo_notes": bench_corpus(load_demo(args.notes), args.workers)}
    synth = load_synth()
    if synth is not None:
        synth_results = bench_corpus(synth, args.workers, {"synth_dev": 0, "synth_heldout": 1})
        results["synth_dataset_v2"] = synth_results.pop("full")
        results.update(synth_results)
    for corpus, figures in results.items():
        for system in ("medcore", "presidio_default"):
            f = figures[system]
            print(
                f"{corpus:17s} {system:17s} recall {f['recall']:.4f} precision {f['precision']:.4f} "
                f"entity F1 {f['entity_f1']:.4f} {f['chars_per_s']:>9,.0f} chars/s",
                file=sys.stderr,
            )
    print(json.dumps(results, sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
