"""Blinded clinician review of two models' outputs: the review folder contract, writing a review, judging its items.

    review = create_review_from_evals(ws, EVAL_A, EVAL_B)   # medcore.evaluate.review_sources (or from pairs)
    item = next_item(review, "dr-hall"); record_verdict(review, item.item, "dr-hall", "first_better", "comment")
    close_review(review)  # then medcore.evaluate.review_summary unblinds: win rates, kappa, preference export

reviews/<review_id>/       review_id = review-<YYYYmmdd-HHMMSS>-<6 hex>
  review.json              name, source, dataset/split, item count, redaction, created_at, closed_at (null while open)
  items.jsonl              per item, in review order: item, prompt, response_1, response_2, reference; PHI-redacted
                           at creation, and no model name (the order of the two responses is random per item)
  sealed.json              (mode 0600) the two models, their sources, the seed, per item which model is shown first
                           and the dataset row: read through read_sealed only, and only after the review is closed
  verdicts.jsonl           append-only, one whole line per os.write under a lock: item, reviewer, verdict (in shown
                           order), comment (redacted), at (UTC). A reviewer's latest line on an item supersedes earlier
  preferences.jsonl        written by review_summary.export_preferences after close

Blinding: reviewers see only "Response 1 / Response 2". Verdicts are stored in that shown order and mapped to the
models only after close, through sealed.json. A review is written into reviews/.tmp-<id>/ and renamed into place.
"""

from __future__ import annotations

import json
import logging
import numbers
import os
import random
import re
import secrets
import shutil
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from medcore.access.acting import acting_for
from medcore.access.actor import Actor
from medcore.errors import MedcoreError
from medcore.fileio import file_lock, write_bytes_atomic
from medcore.rundir import read_json, write_json_atomic
from medcore.workspace import Workspace

log = logging.getLogger(__name__)

REVIEWS_DIR = "reviews"  # under the workspace root
MANIFEST = "review.json"
ITEMS = "items.jsonl"
SEALED = "sealed.json"
VERDICTS = "verdicts.jsonl"
PREFERENCES = "preferences.jsonl"
LOCK = ".lock"
TMP_PREFIX = ".tmp-"
VERDICT_CHOICES = ("first_better", "second_better", "both_acceptable", "both_wrong")
DECISIVE = {"first_better": 0, "second_better": 1}  # verdict -> shown position of the better response
# The console may label the shown responses A and B: "A better" is the first shown, never a model.
VERDICT_ALIASES = {"a_better": "first_better", "b_better": "second_better"}
REDACTION = {"mode": "safe-harbor", "method": "mask"}  # what reviewers see: Safe Harbor masks, e.g. [NAME]
MAX_REVIEWER = 80
MAX_COMMENT = 4000


@dataclass(frozen=True)
class RawItem:
    """An item before redaction and blinding: outputs[k] is models[k]'s output."""

    prompt: str
    outputs: tuple[str, str]
    reference: str | None = None
    row: int | None = None


@dataclass(frozen=True)
class ReviewItem:
    """What a reviewer sees: redacted text, two responses in shown order, no model names."""

    review_id: str
    item: int
    prompt: str
    response_1: str
    response_2: str
    reference: str | None
    judged: int  # items this reviewer has judged so far
    total: int


@dataclass(frozen=True)
class Review:
    """Paths of one review folder."""

    path: Path

    @property
    def review_id(self) -> str:
        return self.path.name

    manifest = property(lambda self: self.path / MANIFEST)
    items = property(lambda self: self.path / ITEMS)
    sealed = property(lambda self: self.path / SEALED)
    verdicts = property(lambda self: self.path / VERDICTS)
    preferences = property(lambda self: self.path / PREFERENCES)
    lock = property(lambda self: self.path / LOCK)

    def read_manifest(self) -> dict[str, Any]:
        return read_json(self.manifest, default={}) or {}

    @property
    def closed(self) -> bool:
        return self.read_manifest().get("closed_at") is not None


def reviews_dir(ws: Workspace) -> Path:
    return ws.root / REVIEWS_DIR


def open_review(ws: Workspace, review_id: str) -> Review:
    """The review folder of `review_id`; an unknown id fails with the ids that exist."""
    folder = reviews_dir(ws) / review_id
    if review_id and "/" not in review_id and not review_id.startswith(".") and (folder / MANIFEST).exists():
        return Review(folder)
    base = reviews_dir(ws)
    known = sorted(p.parent.name for p in base.glob(f"*/{MANIFEST}")) if base.exists() else []
    listing = ", ".join(known[-10:]) if known else "none yet"
    raise MedcoreError(
        f"No review '{review_id}' in {base}. Reviews are: {listing}. See `medcore eval review list`, or create "
        "one with `medcore eval review create --evals EVAL_A EVAL_B`."
    )


def new_review_id() -> str:
    return f"review-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"


def redact_all(ws: Workspace, texts: list[str]) -> tuple[dict[str, str], dict[str, int]]:
    """Each distinct text -> its Safe Harbor masked form, and the count of redacted spans per PHI type."""
    # Deferred: medcore.phi.redact loads Presidio, spaCy and torch (seconds); judging without a comment needs none.
    from medcore.phi.audit import load_salt
    from medcore.phi.config import build_config
    from medcore.phi.redact import count_types, redact_texts

    distinct = sorted(set(texts))
    redacted, counts = {}, {}
    for text, (clean, spans) in zip(
        distinct, redact_texts(distinct, build_config(**REDACTION), load_salt(ws)), strict=True
    ):
        redacted[text] = clean
        for kind, count in count_types(spans).items():
            counts[kind] = counts.get(kind, 0) + count
    return redacted, counts


def write_review(
    ws: Workspace, items: list[RawItem], sealed: dict[str, Any], meta: dict[str, Any], seed: int
) -> Review:
    """Blind (seeded order per item), redact and write a new review folder atomically; returns it."""
    order = random.Random(f"order-{seed}")  # str seeds hash with sha512: the same order in every process
    firsts = [order.randrange(2) for _ in items]  # index into sealed["models"] of the model shown first
    texts = [t for it in items for t in (it.prompt, *it.outputs, it.reference) if t is not None]
    redacted, counts = redact_all(ws, texts)
    lines = [
        {
            "item": k,
            "prompt": redacted[it.prompt],
            "response_1": redacted[it.outputs[first]],
            "response_2": redacted[it.outputs[1 - first]],
            "reference": None if it.reference is None else redacted[it.reference],
        }
        for k, (it, first) in enumerate(zip(items, firsts, strict=True))
    ]
    base = reviews_dir(ws)
    base.mkdir(parents=True, exist_ok=True)
    review_id = new_review_id()
    while (base / review_id).exists():
        review_id = new_review_id()
    tmp, final = base / f"{TMP_PREFIX}{review_id}", base / review_id
    try:
        tmp.mkdir()
        write_bytes_atomic(tmp / ITEMS, "".join(json.dumps(line) + "\n" for line in lines).encode())
        rows = [it.row for it in items]
        write_json_atomic(tmp / SEALED, {**sealed, "seed": seed, "first": firsts, "rows": rows})
        os.chmod(tmp / SEALED, 0o600)
        (tmp / VERDICTS).touch()
        manifest = {"review_id": review_id, **meta, "items": len(items), "redaction": {**REDACTION, "spans": counts}}
        write_json_atomic(tmp / MANIFEST, {**manifest, "created_at": time.time(), "closed_at": None})
        tmp.rename(final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return Review(final)


def read_items(review: Review) -> list[dict[str, Any]]:
    return [json.loads(line) for line in review.items.read_text().splitlines() if line.strip()]


def read_verdicts(review: Review) -> list[dict[str, Any]]:
    """Every verdict record in file order (superseded ones too)."""
    records = []
    for number, line in enumerate(review.verdicts.read_text().splitlines(), start=1):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            log.warning("review %s: unreadable verdict line %d skipped", review.review_id, number)
    return records


def latest_verdicts(review: Review) -> dict[tuple[str, int], dict[str, Any]]:
    """(reviewer, item) -> that reviewer's latest verdict on the item: later lines supersede earlier ones."""
    return {(r["reviewer"], r["item"]): r for r in read_verdicts(review)}


def show_item(review: Review, item: int, reviewer: str | None = None) -> ReviewItem:
    """Item `item` as a reviewer sees it (blinded; `judged` counts `reviewer`'s judged items)."""
    items = read_items(review)
    item = check_item(review, item, len(items))
    judged = {i for (who, i) in latest_verdicts(review) if who == reviewer}
    line = items[item]
    return ReviewItem(
        review_id=review.review_id,
        item=item,
        prompt=line["prompt"],
        response_1=line["response_1"],
        response_2=line["response_2"],
        reference=line["reference"],
        judged=len(judged),
        total=len(items),
    )


def next_item(review: Review, reviewer: str) -> ReviewItem | None:
    """The first item `reviewer` has not judged, blinded; None when every item is judged or the review is closed."""
    reviewer = check_reviewer(reviewer)
    if review.closed:
        return None
    judged = {i for (who, i) in latest_verdicts(review) if who == reviewer}
    total = len(read_items(review))
    left = [k for k in range(total) if k not in judged]
    return show_item(review, left[0], reviewer) if left else None


def check_item(review: Review, item: int, total: int) -> int:
    """`item` as a plain int (a numpy integer from a table is fine), after checking the review has it."""
    if isinstance(item, bool) or not isinstance(item, numbers.Integral) or not 0 <= item < total:
        raise MedcoreError(f"Review '{review.review_id}' has items 0 to {total - 1}; there is no item {item!r}.")
    return int(item)


def check_reviewer(reviewer: str) -> str:
    name = (reviewer or "").strip()
    if not name or len(name) > MAX_REVIEWER or not name.isprintable():
        raise MedcoreError(
            f"A reviewer name must be 1 to {MAX_REVIEWER} printable characters on one line; got {len(name)} "
            "characters. Sign verdicts with your user name."
        )
    return name


def check_verdict(verdict: str) -> str:
    key = re.sub(r"[\s-]+", "_", (verdict or "").strip().lower())
    key = VERDICT_ALIASES.get(key, key)
    if key not in VERDICT_CHOICES:
        raise MedcoreError(
            f"Unknown verdict {verdict!r}. Verdicts are: {', '.join(VERDICT_CHOICES)} (or a_better / b_better for "
            "the first / second response shown)."
        )
    return key


def record_verdict(
    review: Review, item: int, reviewer: str, verdict: str, comment: str = "", *, actor: Actor | None = None
) -> dict[str, Any]:
    """Record a verdict (_record_verdict); for `actor`, checked and audited (the verdict, never the comment)."""
    with acting_for(
        review_workspace(review),
        actor,
        "review_eval",
        kind="review_verdict",
        review_id=review.review_id,
        item=item,
        verdict=verdict,
    ):
        return _record_verdict(review, item, reviewer, verdict, comment)


def _record_verdict(review: Review, item: int, reviewer: str, verdict: str, comment: str = "") -> dict[str, Any]:
    """Append a verdict on `item` (in shown order) to verdicts.jsonl; a later one by the same reviewer supersedes it.

    The comment is PHI-redacted first. The line is one os.write under the review's lock, so verdicts from several
    processes never interleave. Returns the record written.

    Raises:
        MedcoreError: the review is closed, an unknown item or verdict, a bad reviewer name or a comment too long.
    """
    reviewer, verdict = check_reviewer(reviewer), check_verdict(verdict)
    item = check_item(review, item, len(read_items(review)))
    if len(comment or "") > MAX_COMMENT:
        raise MedcoreError(f"The comment has {len(comment)} characters; keep it under {MAX_COMMENT}.")
    comment = redact_all(review_workspace(review), [comment])[0][comment] if (comment or "").strip() else ""
    record = {"item": item, "reviewer": reviewer, "verdict": verdict, "comment": comment, "at": utc_now()}
    line = (json.dumps(record) + "\n").encode()
    with file_lock(review.lock):
        check_open(review)
        fd = os.open(review.verdicts, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)  # one write of one whole line: O_APPEND puts it at the end, intact
            os.fsync(fd)
        finally:
            os.close(fd)
    return record


def review_workspace(review: Review) -> Workspace:
    return Workspace(review.path.parent.parent)  # reviews/<id>/ sits in the workspace root


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def check_open(review: Review) -> None:
    if review.closed:
        raise MedcoreError(
            f"Review '{review.review_id}' is closed: it takes no more verdicts. Read its results with "
            f"`medcore eval review summary {review.review_id}`, or create a new review."
        )


def close_review(review: Review, *, actor: Actor | None = None) -> dict[str, Any]:
    """Close the review (_close_review); for `actor`, checked and audited."""
    with acting_for(
        review_workspace(review), actor, "manage_reviews", kind="review_closed", review_id=review.review_id
    ):
        return _close_review(review)


def _close_review(review: Review) -> dict[str, Any]:
    """Close the review: no more verdicts, and the model identities may be read. Closing twice keeps the first time.

    Returns:
        review.json after closing.
    """
    with file_lock(review.lock):
        manifest = review.read_manifest()
        if manifest.get("closed_at") is None:
            manifest["closed_at"] = time.time()
            write_json_atomic(review.manifest, manifest)
    return manifest


def read_sealed(review: Review) -> dict[str, Any]:
    """The sealed identities: models, sources, seed, first (per item, the index of the model shown first), rows.

    Raises:
        MedcoreError: the review is still open.
    """
    if not review.closed:
        raise MedcoreError(
            f"Review '{review.review_id}' is still open: its models, results and preference export stay sealed until "
            f"it is closed. Close it with `medcore eval review close {review.review_id}` (it then takes no more "
            "verdicts), then read the summary."
        )
    return json.loads(review.sealed.read_text())
