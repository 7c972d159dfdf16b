"""The combined PHI tagger: a record naming the shipped encoder and fast taggers, their probabilities averaged."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from medcore.cli import main
from medcore.errors import MedcoreError
from medcore.phi.config import COMBINED_TAGGER, ENCODER_TAGGER, FAST_TAGGER, RedactionConfig, tagger_folder
from medcore.phi.console_info import tagger_choices, tagger_info
from medcore.phi.tagger import (
    TAGGER_RECORD,
    CombinedTagger,
    combined_members,
    describe_settings,
    figures_are_current,
    has_tagger,
    load_tagger,
    require_tagger,
    resolve_threshold,
    tagger_sha256,
)

NOTE = "PT SEEN BY DR JONES 8/30. WIFE MARY CALLED FROM KERNAN HOSPITAL, TEL 410-555-0199."

pytestmark = pytest.mark.skipif(
    not (has_tagger(ENCODER_TAGGER) and has_tagger(FAST_TAGGER)),
    reason="the shipped taggers are missing: build them with `medcore phi train-tagger`",
)


def write_combined(folder, members):
    folder.mkdir(parents=True, exist_ok=True)
    record = {"kind": "combined", "members": [{"folder": str(f), "weight": w} for f, w in members]}
    (folder / TAGGER_RECORD).write_text(json.dumps(record))
    return folder


def test_the_combined_tagger_averages_its_members_probabilities():
    combined = load_tagger(COMBINED_TAGGER)
    encoder, fast = load_tagger(ENCODER_TAGGER), load_tagger(FAST_TAGGER)
    assert isinstance(combined, CombinedTagger) and combined.members == (encoder, fast)
    assert [w for _, w in combined_members(COMBINED_TAGGER)] == [0.7, 0.3]
    windows = combined.windows(NOTE * 40)  # several windows
    assert len(windows) > 1
    expected = [0.7 * e + 0.3 * f for e, f in zip(encoder.forward(windows), fast.forward(windows), strict=True)]
    for got, want in zip(combined.forward(windows), expected, strict=True):
        assert np.allclose(got, want, atol=1e-6)
        assert np.allclose(got.sum(axis=-1), 1.0, atol=1e-3)  # still a distribution per piece
    (spans,) = combined.tag_texts([NOTE], threshold=resolve_threshold(RedactionConfig(tagger="combined")))
    assert "NAME" in {s.type for s in spans}


def test_the_combined_tagger_is_chosen_by_name_with_its_own_threshold_and_figures():
    assert tagger_folder("combined") == COMBINED_TAGGER == RedactionConfig(tagger="combined").tagger
    info = tagger_info(COMBINED_TAGGER)
    assert info.available and info.kind == "combined"
    assert info.threshold == json.loads((COMBINED_TAGGER / TAGGER_RECORD).read_text())["threshold"]
    assert info.by_threshold and all({"recall", "precision"} <= set(f) for f in info.by_threshold.values())
    assert tagger_choices()["Combined tagger (default)"] == COMBINED_TAGGER


def test_its_identity_is_its_members_and_their_weights(tmp_path):
    combined = describe_settings(RedactionConfig(tagger="combined"))["tagger"]["sha256"]
    assert combined == tagger_sha256(COMBINED_TAGGER)
    assert combined not in {tagger_sha256(ENCODER_TAGGER), tagger_sha256(FAST_TAGGER)}
    other = write_combined(tmp_path / "other", [(ENCODER_TAGGER, 0.5), (FAST_TAGGER, 0.5)])
    assert tagger_sha256(other) != combined  # other weights redact differently, so they are another tagger


def test_a_missing_member_is_named_before_anything_loads(tmp_path):
    folder = write_combined(tmp_path / "combined", [(ENCODER_TAGGER, 0.7), (tmp_path / "no-student", 0.3)])
    assert not has_tagger(folder)
    with pytest.raises(MedcoreError, match="no-student") as refused:
        require_tagger(folder)
    assert "--tagger encoder or fast" in str(refused.value)
    info = tagger_info(folder)
    assert not info.available and "no-student" in info.problem
    nested = write_combined(tmp_path / "nested", [(COMBINED_TAGGER, 0.5), (ENCODER_TAGGER, 0.5)])
    assert not has_tagger(nested)  # a combined tagger's members are taggers of their own


@pytest.mark.parametrize(
    "members", [[], [{"folder": "../tagger"}], [{"folder": "../tagger", "weight": 0}], "../tagger"]
)
def test_a_malformed_record_says_how_to_write_it(tmp_path, members):
    folder = tmp_path / "combined"
    folder.mkdir()
    (folder / TAGGER_RECORD).write_text(json.dumps({"kind": "combined", "members": members}))
    assert not has_tagger(folder) and not tagger_info(folder).available
    with pytest.raises(MedcoreError, match="must list its members"):
        load_tagger(folder)


def test_members_that_read_other_windows_are_refused(tmp_path):
    student = tmp_path / "student"
    shutil.copytree(FAST_TAGGER, student)
    tags = json.loads((student / "token_tags.json").read_text())
    tags["max_length"] = tags["max_length"] // 2
    (student / "token_tags.json").write_text(json.dumps(tags))
    folder = write_combined(tmp_path / "combined", [(ENCODER_TAGGER, 0.7), (student, 0.3)])
    load_tagger.cache_clear()
    with pytest.raises(MedcoreError, match="read different windows"):
        load_tagger(folder)


def test_cli_redacts_with_the_combined_tagger(workspace, tmp_path):
    src, out, report = tmp_path / "in.jsonl", tmp_path / "out.jsonl", tmp_path / "report.json"
    src.write_text(json.dumps({"text": NOTE}) + "\n")
    assert main(["redact", str(src), str(out), "--tagger", "combined", "--report", str(report)]) == 0
    settings = json.loads(report.read_text())["config"]
    assert settings["tagger"]["sha256"] == tagger_sha256(COMBINED_TAGGER)
    assert settings["threshold"] == resolve_threshold(RedactionConfig(tagger="combined"))
    redacted = out.read_text()
    assert "JONES" not in redacted and "410-555-0199" not in redacted


def test_recorded_figures_go_stale_when_a_member_or_weight_changes(tmp_path):
    from medcore.train.phi_tagger import record_cross_validation

    folder = write_combined(tmp_path / "combined", [(ENCODER_TAGGER, 0.7), (FAST_TAGGER, 0.3)])
    assert figures_are_current(folder) is None  # nothing measured yet
    results = {"folds": 5, "notes": 944, "by_threshold": {"0.3": {"recall": 0.97, "precision": 0.91}}}
    record_cross_validation(folder, 0.3, results)
    assert figures_are_current(folder) is True and not tagger_info(folder).stale
    record = json.loads((folder / TAGGER_RECORD).read_text())
    record["members"][1]["weight"] = 0.5
    (folder / TAGGER_RECORD).write_text(json.dumps(record))
    assert figures_are_current(folder) is False and tagger_info(folder).stale


@pytest.mark.parametrize("folder", [ENCODER_TAGGER, FAST_TAGGER, COMBINED_TAGGER], ids=["encoder", "fast", "combined"])
def test_the_shipped_taggers_figures_were_measured_on_their_weights(folder):
    assert figures_are_current(folder) is True, (
        f"{folder} was rebuilt after its figures were measured: run bench/phi_cv.py --record "
        "(--student for the fast tagger, --combined for the combined one)"
    )
