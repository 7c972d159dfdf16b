"""`medcore docs [--check]`: write docs/config-reference.md from the config models' own fields and descriptions.

medcore docs                 # regenerate docs/config-reference.md (run from the repository root)
medcore docs --check         # exit 1 when the file differs from what the models say (tests/test_docs.py does this)

The reference is generated, never typed: a field added, renamed or re-described in a model changes the page, and the
test fails until it is regenerated. Defaults that depend on the machine (package paths, this Python) are written in
words that hold everywhere, so the page is the same on every checkout.
"""

from __future__ import annotations

import argparse
import sys
import types
import typing
from pathlib import Path

from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo

from medcore.cluster import LaunchConfig
from medcore.data.manifest import ColumnMapping
from medcore.errors import MedcoreError
from medcore.evaluate.bootstrap import BootstrapConfig
from medcore.evaluate.compare import CompareRunConfig
from medcore.evaluate.review_sources import ReviewConfig
from medcore.evaluate.runner import EvalRunConfig
from medcore.jobs.slurm import SlurmConfig
from medcore.phi.config import RedactionConfig
from medcore.serve.config import ServingConfig
from medcore.train.presets import LoraPresetConfig, describe_presets
from medcore.train.spec import RunSpec

DEFAULT_OUTPUT = Path("docs/config-reference.md")
PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # the folder holding medcore/
# (heading, model, where it is written and read). Order: the path of the data, then launching.
SECTIONS: tuple[tuple[str, type[BaseModel], str], ...] = (
    ("Run spec", RunSpec, "`medcore train SPEC key=value ...`, the Train page, `medcore.train.load_spec`; "
     "`spec.json` in every run folder."),
    ("LoRA preset", LoraPresetConfig, "`medcore/train/presets/lora/*.yaml`, or a YAML path in the spec's `lora`."),
    ("Column mapping (data import)", ColumnMapping, "`medcore data import` flags, the Data page; `manifest.json` "
     "of every dataset."),
    ("Redaction settings", RedactionConfig, "`medcore redact` and `medcore data redact` flags, the PHI page, "
     "`medcore.phi.config.build_config`."),
    ("Serving config", ServingConfig, "`medcore serve --config FILE` (e.g. `configs/serving.yaml`) and its flags."),
    ("Evaluation run", EvalRunConfig, "`medcore eval run` flags, the Evaluate page; `config.json` in every eval "
     "folder."),
    ("Comparison", CompareRunConfig, "`medcore eval run MODEL --compare OTHER`: the evaluation run's fields plus "
     "this one."),
    ("Confidence intervals", BootstrapConfig, "`medcore eval metrics --seed --resamples`."),
    ("Blinded review", ReviewConfig, "`medcore eval review create`, the Review page."),
    ("Cluster launch", LaunchConfig, "`medcore launch SPEC --target ...` flags."),
    ("SLURM resources", SlurmConfig, "`medcore launch --target slurm` flags (`--partition`, `--time`, ...)."),
)  # fmt: skip


def type_name(annotation: object) -> str:
    """A field's type as a reader writes it: `int`, `str | None`, `"fp32" | "bf16"`, `list[str]`."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Literal:
        return " \\| ".join(f"`{value}`" for value in args)
    if origin in (typing.Union, types.UnionType):
        return " \\| ".join(type_name(arg) for arg in args)
    if origin in (list, dict, tuple):
        return f"{origin.__name__}[{', '.join(type_name(arg) for arg in args)}]"
    if annotation is type(None):
        return "None"
    if annotation is SecretStr:
        return "secret"
    if annotation is Path:
        return "path"
    return getattr(annotation, "__name__", str(annotation))


# The metadata pydantic keeps for Field(gt=..., ge=..., lt=..., le=..., min_length=..., max_length=...).
BOUNDS = (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<="))


def constraints(field: FieldInfo) -> str:
    """The field's numeric bounds and length limits, e.g. `> 0, <= 1`."""
    found = []
    for item in field.metadata:
        found += [f"{sign} {getattr(item, name)}" for name, sign in BOUNDS if getattr(item, name, None) is not None]
        if getattr(item, "min_length", None) is not None:
            found.append(f"at least {item.min_length} item(s)")
        if getattr(item, "max_length", None) is not None:
            found.append(f"at most {item.max_length} characters")
    return ", ".join(found)


def default_text(field: FieldInfo) -> str:
    """The default as the page shows it: the same on every machine (package paths relative, no interpreter path)."""
    if field.is_required():
        return "required"
    value = field.default_factory() if field.default_factory is not None else field.default
    if isinstance(value, BaseModel):
        return f"see {type(value).__name__}"
    if isinstance(value, Path) and value.is_relative_to(PACKAGE_ROOT):
        return f"`{value.relative_to(PACKAGE_ROOT).as_posix()}`"
    if value == sys.executable:
        return "this Python"
    if value == "":
        return "empty"
    return f"`{value}`"


def cell(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    return " ".join(text.split()).replace("|", "\\|")


def render_model(heading: str, model: type[BaseModel], where: str) -> list[str]:
    doc = (model.__doc__ or "").strip().splitlines()[0]
    lines = [f"## {heading}", "", f"`{model.__module__}.{model.__name__}`: {doc}", "", f"Where: {where}", ""]
    lines += ["| field | type | default | description |", "|---|---|---|---|"]
    own = model.model_fields
    if model is CompareRunConfig:  # the inherited fields are in the evaluation run's table already
        own = {name: f for name, f in own.items() if name not in EvalRunConfig.model_fields}
    for name, field in own.items():
        kind = type_name(field.annotation)
        bounds = constraints(field)
        kind += f" ({bounds})" if bounds else ""
        lines.append(f"| `{name}` | {kind} | {cell(default_text(field))} | {cell(field.description or '')} |")
    return lines + [""]


PRESET_FILES = {"lora": "medcore/train/presets/lora/NAME.yaml", "zero": "medcore/train/presets/zero/NAME.json"}


def render_presets() -> list[str]:
    intro = "Named in the run spec's `lora` and `zero` fields. Each line is the preset file's own comment."
    lines = ["## Shipped presets", "", intro, ""]
    for kind, files in PRESET_FILES.items():
        lines += [f"`{kind}` (`{files}`):", ""]
        lines += [f"- `{name}`: {cell(text)}" for name, text in describe_presets(kind).items()]
        lines.append("")
    return lines


def render_reference() -> str:
    """The whole of docs/config-reference.md."""
    lines = [
        "# Configuration reference",
        "",
        "<!-- Generated by `medcore docs` from the pydantic models; do not edit by hand. "
        "tests/test_docs.py fails when this page is stale. -->",
        "",
        "Every setting MedCore reads, with its type, default and description. The descriptions are the same text "
        "the CLI's `--help` and the console's help show. Unknown keys are refused (every model forbids extras), "
        "and all problems of one config are reported together. Use them from the [user guide](guide.md); errors "
        "are explained in [troubleshooting](troubleshooting.md).",
        "",
        "Contents: " + ", ".join(f"[{h}](#{anchor(h)})" for h, _, _ in SECTIONS) + ", [Shipped presets]"
        "(#shipped-presets).",
        "",
    ]
    for heading, model, where in SECTIONS:
        lines += render_model(heading, model, where)
    lines += render_presets()
    return "\n".join(lines).rstrip() + "\n"


def anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces as hyphens."""
    kept = "".join(ch for ch in heading.lower() if ch.isalnum() or ch in " -_")
    return kept.replace(" ", "-")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="File to write (default: %(default)s).")
    parser.add_argument("--check", action="store_true", help="Write nothing; exit 1 when the file is stale.")


def run(args: argparse.Namespace) -> int:
    text = render_reference()
    if args.check:
        current = args.output.read_text() if args.output.exists() else ""
        if current != text:
            raise MedcoreError(f"{args.output} is stale: regenerate it with `medcore docs --output {args.output}`.")
        print(f"{args.output} is up to date.")
        return 0
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    print(f"Wrote {args.output} ({len(SECTIONS)} configs).")
    return 0
