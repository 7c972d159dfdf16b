"""The container images' recipes: no Docker engine runs on these machines, so the Dockerfiles are parsed and checked
for what matters (base image, pinned torch installed first, constraints, non-root user, health check, loopback)."""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from medcore.cluster.kubernetes import POD_SECURITY

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILES = ["Dockerfile", "Dockerfile.gpu"]


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order: comments dropped, continuation lines joined."""
    lines = [line for line in path.read_text().splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n\s*", " ", "\n".join(lines))
    found = []
    for line in joined.splitlines():
        if line.strip():
            keyword, _, rest = line.strip().partition(" ")
            found.append((keyword.upper(), rest.strip()))
    return found


def args_of(steps: list[tuple[str, str]]) -> dict[str, str]:
    """ARG NAME=default -> {NAME: default}."""
    return dict(rest.split("=", 1) for keyword, rest in steps if keyword == "ARG" and "=" in rest)


def expand(text: str, values: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}", lambda m: values.get(m.group(1), m.group(0)), text)


def pinned_torch() -> str:
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    return next(d.split("==")[1] for d in dependencies if d.startswith("torch=="))


@pytest.mark.parametrize("name", DOCKERFILES)
def test_image_installs_the_pinned_torch_first_then_medcore_with_the_constraints(name):
    steps = instructions(ROOT / name)
    values = args_of(steps)
    assert values["TORCH_VERSION"] == pinned_torch()
    runs = [expand(rest, values) for keyword, rest in steps if keyword == "RUN"]
    install = next(r for r in runs if "pip install -c constraints.txt ." in r)
    torch = re.search(r"pip install --index-url \"([^\"]+)\" \"torch==([^\"]+)\"", install)
    assert torch and torch.group(2) == pinned_torch()
    assert install.index("torch==") < install.index("-c constraints.txt")  # torch first, pinned, then the rest
    if name == "Dockerfile":
        assert torch.group(1) == "https://download.pytorch.org/whl/cpu"  # not the multi-GB CUDA build
    copied = " ".join(rest for keyword, rest in steps if keyword == "COPY")
    assert "constraints.txt" in copied


@pytest.mark.parametrize("name", DOCKERFILES)
def test_image_runs_as_a_non_root_user_with_a_health_check_on_loopback(name):
    steps = instructions(ROOT / name)
    keywords = [keyword for keyword, _ in steps]
    user = [rest for keyword, rest in steps if keyword == "USER"][-1]
    assert user not in ("root", "0") and keywords.index("USER") < keywords.index("CMD")
    creates = next(rest for keyword, rest in steps if keyword == "RUN" and "useradd" in rest)
    assert f"--uid {POD_SECURITY['runAsUser']}" in creates and user in creates  # the uid the manifests run as
    [health] = [rest for keyword, rest in steps if keyword == "HEALTHCHECK"]
    assert "/_stcore/health" in health and "127.0.0.1" in health
    values = args_of(steps)
    env = " ".join(rest for keyword, rest in steps if keyword == "ENV")
    assert "STREAMLIT_SERVER_ADDRESS=${MEDCORE_BIND_ADDRESS}" in env and values["MEDCORE_BIND_ADDRESS"] == "127.0.0.1"
    command = " ".join(rest for keyword, rest in steps if keyword in ("CMD", "ENTRYPOINT"))
    assert "0.0.0.0" not in command and "--server.address" not in command  # the address comes from the env only
    # the address is checked before the console starts: beyond loopback only with users (medcore.access.bind)
    assert command.index("medcore.access.bind") < command.index("streamlit run")
    text = (ROOT / name).read_text()
    assert "access control" in text  # the comment that says binding beyond loopback needs it


def test_gpu_image_is_cuda_with_vllm_beside_medcore():
    steps = instructions(ROOT / "Dockerfile.gpu")
    values = args_of(steps)
    base = expand(next(rest for keyword, rest in steps if keyword == "FROM"), values)
    assert re.match(r"^nvidia/cuda:[\d.]+-(cudnn-)?runtime-ubuntu[\d.]+$", base)
    assert values["TORCH_INDEX_URL"] == "https://pypi.org/simple"  # PyPI's Linux torch wheels are the CUDA builds
    runs = [expand(rest, values) for keyword, rest in steps if keyword == "RUN"]
    vllm = next(r for r in runs if "vllm==" in r)
    assert re.search(r"vllm==\d+\.\d+\.\d+", vllm) and "/usr/local/bin/vllm" in vllm  # `vllm serve` on PATH


def test_cpu_image_is_python_slim():
    steps = instructions(ROOT / "Dockerfile")
    assert next(rest for keyword, rest in steps if keyword == "FROM") == "python:3.11-slim"


@pytest.mark.parametrize("name", DOCKERFILES)
def test_hadolint_if_installed(name):
    if shutil.which("hadolint") is None:
        pytest.skip("hadolint is not packaged in Debian and not installed; the structure tests above stand in for it")
    done = subprocess.run(["hadolint", str(ROOT / name)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout
