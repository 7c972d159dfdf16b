"""What a value may look like before it is written into a launch file: #SBATCH lines, Kubernetes names, paths.

Launch files are read by a shell, by SLURM's directive parser or by Kubernetes. YAML is always written by a YAML
dumper and shell words are always quoted, but some values land where quoting does not exist (an #SBATCH line, a
Kubernetes object name, a volume's mount path): those are checked against the patterns below, which are the
formats SLURM and Kubernetes accept, narrowed to what needs no quoting anywhere.
"""

from __future__ import annotations

import re

# The run id rule lives with the run spec (its run_id field); launch files check it the same way.
from medcore.train.spec import RUN_ID, check_run_id  # noqa: F401

# An absolute path with no blank, quote, '%' (SLURM's filename patterns), ':' (Kubernetes mount paths) or '$'.
SAFE_PATH = re.compile(r"^/[A-Za-z0-9._+@/-]*$")
# sbatch values: partitions may be a comma-separated list; times are MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS.
SBATCH_PARTITION = re.compile(r"^[A-Za-z0-9_.-]+(?:,[A-Za-z0-9_.-]+)*$")
SBATCH_ACCOUNT = re.compile(r"^[A-Za-z0-9_.-]+$")
SBATCH_TIME = re.compile(r"^(?:\d+-\d{1,2}(?::\d{2}){0,2}|\d+(?::\d{2}){0,2})$")
SBATCH_MEM = re.compile(r"^\d+[KMGT]?$")
# Kubernetes: DNS-1123 labels (namespaces, most object names) and subdomains (PVC and Secret names).
DNS_LABEL = re.compile(r"^[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?$")
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9](?:[-a-z0-9.]{0,251}[a-z0-9])?$")
CPU_QUANTITY = re.compile(r"^\d+(?:\.\d+)?m?$")
MEMORY_QUANTITY = re.compile(r"^\d+(?:\.\d+)?(?:Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$")
# An image reference: [registry[:port]/]path[:tag][@sha256:digest], no blanks.
IMAGE = re.compile(r"^[a-z0-9][a-z0-9._/:-]*(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[a-f0-9]{64})?$")
CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def problem(value: str | None, pattern: re.Pattern, name: str, expected: str) -> str | None:
    """A message naming `name` when `value` (if given) does not match `pattern`, else None."""
    if value is None or pattern.match(value):
        return None
    return f"{name} {value!r} is not {expected}"


def check_path(value: str) -> str:
    if not SAFE_PATH.match(value):
        raise ValueError("must be an absolute path of letters, digits and . _ + @ - / only (no blanks or quotes)")
    return value


def check_line(value: str) -> str:
    """A shell line or command word: one line, no control characters."""
    if CONTROL.search(value):
        raise ValueError("must be one line without control characters")
    return value


def kubernetes_name(text: str, limit: int) -> str:
    """`text` as a DNS-1035 label (lowercase, starts with a letter) of at most `limit` characters."""
    slug = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")
    name = slug if slug[:1].isalpha() else f"medcore-{slug}"
    if len(name) > limit:
        import hashlib

        # Cut names keep a short digest of the whole, so two long run ids never share a job name.
        digest = hashlib.sha256(text.encode()).hexdigest()[:6]
        name = f"{name[: limit - 7].rstrip('-')}-{digest}"
    return name
