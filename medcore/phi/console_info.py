"""What the console's PHI page shows about detection: the tagger's state and measured figures, and each span's source.

    tagger_choices()                            # {"Encoder tagger (default)": folder, "Fast tagger": folder, ...}
    info = tagger_info()                        # the default tagger: present?, default threshold, CV figures
    measured_at(info, 0.25)                     # (0.2, {"recall": ..., "precision": ...}): nearest measured value
    config = detector_config("safe-harbor", "mask", 0.25, info)   # rules alone when the tagger is missing
    methods_for_mode("safe-harbor")             # ["mask", "remove"]: the methods the config accepts, default first
    span_rows(preview.spans)                    # category, source, score per span: offsets only, never text

The page asks these questions; the answers (where the figures come from, what counts as the tagger) live here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import get_args

from medcore.errors import MedcoreError
from medcore.phi.config import DEFAULT_TAGGER, SHIPPED_TAGGERS, Method, RedactionConfig, build_config
from medcore.phi.ensemble import TAGGER_NAME
from medcore.phi.tagger import (
    REMEASURE,
    figures_are_current,
    has_tagger,
    is_combined,
    is_student,
    load_tagger,
    resolve_threshold,
    tagger_record,
)

THRESHOLD_STEP = 0.01  # finer than the cross-validation grid (0.02 .. 0.7): figures are shown for the nearest value
STALE_FIGURES = (
    "These figures were measured on an earlier build of this tagger; it has been rebuilt since. Measure them again "
    f"with {REMEASURE}."
)
NO_FIGURES = "No cross-validated figures are recorded for this tagger: measure them with `bench/phi_cv.py --record`."


@dataclass
class TaggerInfo:
    """The learned tagger as the console sees it (figures from tagger.json, never from notes)."""

    folder: Path
    available: bool
    problem: str = ""  # why it cannot be used and how to build it (empty when available)
    threshold: float = 0.5  # the default: chosen by cross-validation, else the fallback
    by_threshold: dict[float, dict] = field(default_factory=dict)  # measured threshold -> recall, precision, ...
    folds: int | None = None
    notes: int | None = None
    trained_at: str | None = None
    kind: str = "encoder"  # a TAGGER_KINDS key
    stale: bool = False  # the figures were measured on other weights (the tagger was rebuilt since)


TAGGER_KINDS = {  # what each kind of tagger is, for a user choosing between them
    "encoder": "Encoder tagger: the packaged MiniLM encoder with a LoRA adapter. More precise than the fast tagger.",
    "fast": "Fast tagger: a BiLSTM distilled from the encoder tagger. About 5x faster on a CPU, less precise at the "
    "same recall: for large datasets.",
    "combined": "Combined tagger: the encoder and fast taggers together, their probabilities averaged. More precise "
    "than either at the same recall, about 1.1x the encoder tagger's time.",
}


def tagger_kind(folder: Path) -> str:
    """`combined` or `fast` by what the folder holds, else `encoder` (a missing folder is named by where it should be)."""
    named = {Path(path): name for name, path in SHIPPED_TAGGERS.items()}.get(Path(folder))
    if is_combined(folder):
        return "combined"
    return "fast" if is_student(folder) else named or "encoder"


def tagger_choices() -> dict[str, Path]:
    """The taggers a user can pick: the default first (even when missing, so the page can say why), then each other
    shipped tagger that is built. Labels name the kind; the default's says so."""
    choices = {f"{tagger_kind(DEFAULT_TAGGER).capitalize()} tagger (default)": Path(DEFAULT_TAGGER)}
    for folder in SHIPPED_TAGGERS.values():
        if Path(folder) != Path(DEFAULT_TAGGER) and has_tagger(folder):
            choices[f"{tagger_kind(folder).capitalize()} tagger"] = Path(folder)
    return choices


def tagger_info(folder: Path | None = None) -> TaggerInfo:
    """The tagger in `folder` (the default one when None): whether it loads, its threshold and measured figures."""
    folder = Path(folder or DEFAULT_TAGGER)
    record = tagger_record(folder)
    cv = record.get("cross_validation") or {}
    info = TaggerInfo(
        folder=folder,
        available=has_tagger(folder),
        threshold=resolve_threshold(RedactionConfig(tagger=folder)),
        by_threshold={float(t): figures for t, figures in (cv.get("by_threshold") or {}).items()},
        folds=cv.get("folds"),
        notes=cv.get("notes"),
        trained_at=record.get("trained_at"),
        kind=tagger_kind(folder),
    )
    if info.available:
        info.stale = figures_are_current(folder) is False
    else:
        info.problem = missing_tagger_problem(folder)
    return info


def missing_tagger_problem(folder: Path) -> str:
    """load_tagger's own message for a folder without a tagger (it raises before loading anything)."""
    try:
        load_tagger(folder)
    except MedcoreError as exc:
        return str(exc)
    return ""


def measured_at(info: TaggerInfo, threshold: float) -> tuple[float, dict] | None:
    """The measured threshold nearest to `threshold` and its cross-validated figures; None when none were recorded."""
    if not info.by_threshold:
        return None
    nearest = min(info.by_threshold, key=lambda t: (abs(t - threshold), t))
    return nearest, info.by_threshold[nearest]


def threshold_range() -> tuple[float, float]:
    """The ends of a threshold control: one step inside RedactionConfig.threshold's open interval (0, 1)."""
    bounds = {name: getattr(m, name) for m in RedactionConfig.model_fields["threshold"].metadata
              for name in ("gt", "lt") if getattr(m, name, None) is not None}  # fmt: skip
    return round(bounds["gt"] + THRESHOLD_STEP, 2), round(bounds["lt"] - THRESHOLD_STEP, 2)


def methods_for_mode(mode: str) -> list[str]:
    """The replacement methods `mode` allows (RedactionConfig's validator decides), its default first."""
    allowed = []
    for method in get_args(Method):
        try:
            RedactionConfig(mode=mode, method=method, tagger=None)
        except ValueError:  # pydantic's ValidationError: e.g. Safe Harbor never surrogates
            continue
        allowed.append(method)
    default = RedactionConfig(mode=mode, tagger=None).method
    return sorted(allowed, key=lambda m: m != default)


def detector_config(mode: str, method: str | None, threshold: float | None, info: TaggerInfo) -> RedactionConfig:
    """The settings the page previews with: the tagger at `threshold`, or the rules alone when it is missing."""
    if not info.available:
        return build_config(mode=mode, method=method).model_copy(update={"tagger": None})
    return build_config(mode=mode, method=method, tagger=info.folder, threshold=threshold)


def span_source(recognizer: str) -> str:
    return "tagger" if recognizer == TAGGER_NAME else "rule"


def span_rows(spans) -> list[dict]:
    """One row per detected span: offsets, category, whether the tagger or a rule found it, and its score."""
    return [
        {"start": s.start, "end": s.end, "category": s.type, "source": span_source(s.recognizer),
         "found by": s.recognizer, "score": round(float(s.score), 3)}
        for s in sorted(spans, key=lambda s: s.start)
    ]  # fmt: skip
