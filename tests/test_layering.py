"""Imports point down: the engine's packages in one documented order, command modules and the console on top."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ENGINE = Path(__file__).resolve().parents[1] / "medcore"
# Bottom first. A module may import its own package and any package of a lower layer, never one of its layer
# or above: so `train` hands `jobs` a plan and `jobs` never reaches back into the trainer's launch.
LAYERS: list[set[str]] = [
    {"errors"},
    {"__init__"},  # the package root: __version__ and MedcoreError
    {"fileio"},
    {"workspace"},
    {"access"},  # users, roles, Actor, the signed audit log: below every package that takes an Actor
    {"deepspeed_ops"},  # DeepSpeed's C++ ops built ahead, with the same ninja in every process
    {"zero3_load"},  # ZeRO-3 partitioned loading, used by models.load_model
    {"rundir", "procs", "models", "cls_only"},
    {"model_limits"},  # read from a model's config.json, found through models
    {"token_windows", "job_folder"},
    {"store"},
    {"data"},
    {"demo"},
    {"phi"},
    {"train"},
    {"jobs"},
    {"evaluate"},
    {"serve"},
    {"cluster"},  # launch files for SLURM and Kubernetes: built from train's commands, jobs' sbatch, serve's vLLM argv
    {"doctor"},
    {"commands"},
    {"cli", "__main__"},
]
ENTRY_SHIMS = {"__main__"}  # `python -m medcore.<package>` shims may call the dispatcher


def layer_of(part: str) -> int:
    for index, names in enumerate(LAYERS):
        if part in names:
            return index
    raise AssertionError(f"medcore.{part} is in no layer: add it to LAYERS here and to the order in the README")


def medcore_imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every `medcore.*` import in the file, at any depth (deferred imports count too)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and node.module.startswith("medcore"):
            names = [node.module] if node.module != "medcore" else [submodule(a.name) for a in node.names]
            found += [(node.lineno, name) for name in names]
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("medcore.")]
    return found


def submodule(name: str) -> str:
    """`from medcore import X`: the module medcore.X when X is one, else the package root (`__version__`)."""
    is_module = (ENGINE / f"{name}.py").exists() or (ENGINE / name / "__init__.py").exists()
    return f"medcore.{name}" if is_module else "medcore"


def top_part(path: Path) -> str:
    parts = path.relative_to(ENGINE).with_suffix("").parts
    return parts[0]


MODULES = sorted(ENGINE.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ENGINE)))
def test_imports_point_down(path):
    own = top_part(path)
    if path.stem in ENTRY_SHIMS:
        return
    wrong = []
    for line, module in medcore_imports(path):
        target = module.split(".")[1] if "." in module else "__init__"
        if target == own:
            continue
        if layer_of(target) >= layer_of(own):
            wrong.append(f"line {line}: {module}")
    assert not wrong, f"{path.relative_to(ENGINE)} imports upward or sideways: {wrong}"


def test_every_package_has_a_layer():
    for path in MODULES:
        layer_of(top_part(path))


def test_the_layering_check_catches_an_upward_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from medcore.commands.train import run\n")
    assert medcore_imports(bad) == [(2, "medcore.commands.train")]
    assert layer_of("commands") > layer_of("phi")
