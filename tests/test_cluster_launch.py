"""medcore launch: the generated torchrun script, sbatch script, PyTorchJob and vLLM manifests, and the examples.

No cluster runs here: scripts are checked with `bash -n` and shellcheck (Debian package), sbatch directives are
parsed the way sbatch reads them, and manifests are parsed back with a YAML loader and checked for the fields the
Kubeflow training operator and Kubernetes require. tests/test_cluster_prepare.py runs generated files for real.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from medcore import __version__
from medcore.cli import main
from medcore.cluster import LaunchConfig, generate_launch
from medcore.cluster.slurm import parse_sbatch_directives
from medcore.errors import MedcoreError
from medcore.jobs.slurm import SlurmConfig
from medcore.serve.config import load_serving_config
from medcore.serve.vllm import build_vllm_command
from medcore.train import load_spec

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "configs" / "runs" / "minilm_classification.yaml"
LLAMA_SPEC = ROOT / "configs" / "runs" / "tiny_llama_qa.yaml"
SERVING = ROOT / "configs" / "serving.yaml"
WS = "/srv/medcore/workspace"
DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")


def config(target: str, **fields) -> LaunchConfig:
    return LaunchConfig(**{"target": target, "run_id": "r-2026", "workspace": WS, "python": "python", **fields})


def assert_clean_shell(text: str, tmp_path: Path, name: str = "script.sh") -> None:
    """`bash -n` always; shellcheck when installed (the Debian package: apt-get install shellcheck)."""
    path = tmp_path / name
    path.write_text(text)
    syntax = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
    assert syntax.returncode == 0, syntax.stderr
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck is not installed (apt-get install shellcheck); only `bash -n` was checked")
    lint = subprocess.run(["shellcheck", "--shell=bash", str(path)], capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout


def command_lines(text: str) -> list[str]:
    """The script's commands, continuation lines joined (comments and #SBATCH lines dropped)."""
    joined = text.replace("\\\n", " ")
    return [line.strip() for line in joined.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def prepare_spec(argv: list[str]) -> dict:
    """The run spec JSON a launch file hands to `python -m medcore.cluster.prepare`."""
    return json.loads(argv[argv.index("--spec") + 1])


# --- local ---------------------------------------------------------------------------------------------------------


def test_local_script_prepares_then_runs_torchrun_with_the_fixed_run_id(tmp_path):
    item = generate_launch(SPEC, config("local"))
    assert item.name == "r-2026.torchrun.sh" and item.executable
    commands = command_lines(item.text)
    assert f"export MEDCORE_HOME={WS}" in commands
    prepare = next(c for c in commands if "medcore.cluster.prepare" in c)
    train = next(c for c in commands if "torch.distributed.run" in c)
    assert commands.index(prepare) < commands.index(train)
    assert train.startswith("exec python -m torch.distributed.run --nnodes=1 --nproc-per-node=2")
    assert f"-m medcore.train {WS}/runs/r-2026 --resume >>{WS}/runs/r-2026/train.log 2>&1" in train
    assert_clean_shell(item.text, tmp_path)


def test_local_multinode_scripts_share_one_run_id_and_only_node_0_prepares(tmp_path):
    topology = ["nnodes=2", "rdzv_endpoint=10.0.0.1:29400"]
    node0 = generate_launch(SPEC, config("local"), [*topology, "node_rank=0"])
    node1 = generate_launch(SPEC, config("local"), [*topology, "node_rank=1"])
    for item in (node0, node1):
        assert "--rdzv-id=r-2026" in item.text and "--rdzv-endpoint=10.0.0.1:29400" in item.text
        assert_clean_shell(item.text, tmp_path)
    assert "medcore.cluster.prepare" in node0.text and "medcore.cluster.prepare" not in node1.text
    assert "train.node1.log" in node1.text  # nodes sharing the run folder write their own logs


# --- slurm ---------------------------------------------------------------------------------------------------------


def test_sbatch_allocates_from_the_spec_and_prepares_on_the_first_node(tmp_path):
    slurm = SlurmConfig(python="python", partition="gpu", account="med", mem="128G", time_limit="1-00:00:00")
    item = generate_launch(SPEC, config("slurm", slurm=slurm), ["nnodes=2", "nproc_per_node=4"])
    directives = parse_sbatch_directives(item.text)
    assert directives == {
        "job-name": "medcore-r-2026",
        "nodes": "2",
        "ntasks-per-node": "1",
        "cpus-per-task": "8",
        "time": "1-00:00:00",
        "output": f"{WS}/runs/r-2026/train.log",
        "open-mode": "append",
        "gpus-per-node": "4",
        "partition": "gpu",
        "account": "med",
        "mem": "128G",
    }
    commands = command_lines(item.text)
    prepare = next(c for c in commands if "medcore.cluster.prepare" in c)
    srun = next(c for c in commands if c.startswith("srun"))
    assert commands.index(prepare) < commands.index(srun)
    assert prepare.endswith('--rdzv-endpoint "$head_node:29500"')  # the batch step runs on the first node
    spec = load_spec(json.loads(re.search(r"--spec '([^']*)'", prepare).group(1)), {"rdzv_endpoint": "n1:29500"})
    assert (spec.nnodes, spec.nproc_per_node, spec.node_rank) == (2, 4, 0)
    assert "--rdzv-backend=c10d" in srun and '--rdzv-endpoint="$head_node:$rdzv_port"' in srun
    assert srun.endswith(f"-m medcore.train {WS}/runs/r-2026 --resume")
    assert_clean_shell(item.text, tmp_path, "job.sbatch")


def test_sbatch_for_a_cpu_spec_requests_no_gpus(tmp_path):
    item = generate_launch(SPEC, config("slurm"), ["device=cpu"])
    assert "gpus-per-node" not in parse_sbatch_directives(item.text)
    assert "--rdzv-endpoint" not in next(c for c in command_lines(item.text) if "prepare" in c)  # one node


@pytest.mark.parametrize(
    ("slurm", "expected"),
    [
        ({"partition": "gpu\nrm -rf ~", "time_limit": "4 hours"}, ["slurm partition", "slurm time limit"]),
        ({"account": "med lab", "mem": "64 GB"}, ["slurm account", "slurm mem"]),
        ({"setup": ["module load cuda", "echo a\necho b"]}, ["slurm setup line 2"]),
    ],
)
def test_sbatch_values_that_cannot_sit_on_an_sbatch_line_are_refused_together(slurm, expected):
    with pytest.raises(ValueError) as caught:
        LaunchConfig(target="slurm", slurm=SlurmConfig(python="python", **slurm))
    for name in expected:
        assert name in str(caught.value)


def test_a_bad_sbatch_line_is_caught_by_the_directive_parser():
    with pytest.raises(MedcoreError, match="line 3"):
        parse_sbatch_directives("#!/bin/bash\n#SBATCH --nodes=2\n#SBATCH --partition=a b\n")
    with pytest.raises(MedcoreError, match="line 3"):  # after the first command sbatch would silently ignore it
        parse_sbatch_directives("#!/bin/bash\nset -e\n#SBATCH --nodes=2\n")


# --- k8s PyTorchJob ------------------------------------------------------------------------------------------------


def load_manifest(text: str) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(text) if doc is not None]


def test_pytorchjob_has_master_workers_gpus_volume_and_one_rendezvous(tmp_path):
    cfg = config("k8s", workspace=None, image="registry.example.org/medcore-gpu:0.1.0", pvc="ws-claim", namespace="ml")
    item = generate_launch(LLAMA_SPEC, cfg, ["nnodes=3", "nproc_per_node=4"])
    [job] = load_manifest(item.text)
    assert (job["apiVersion"], job["kind"]) == ("kubeflow.org/v1", "PyTorchJob")
    assert DNS_1035.match(job["metadata"]["name"]) and job["metadata"]["namespace"] == "ml"
    assert job["metadata"]["labels"]["medcore/run-id"] == "r-2026"
    assert job["spec"]["nprocPerNode"] == "4"
    replicas = job["spec"]["pytorchReplicaSpecs"]
    assert set(replicas) == {"Master", "Worker"}
    assert (replicas["Master"]["replicas"], replicas["Worker"]["replicas"]) == (1, 2)
    commands = []
    for kind, replica in replicas.items():
        pod = replica["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        [trainer] = pod["containers"]
        assert trainer["name"] == "pytorch" and trainer["image"] == "registry.example.org/medcore-gpu:0.1.0"
        assert {"name": "pytorchjob-port", "containerPort": 29500} in trainer["ports"]
        assert trainer["resources"]["limits"]["nvidia.com/gpu"] == 4
        assert {"cpu", "memory"} <= set(trainer["resources"]["requests"])
        env = {e["name"]: e["value"] for e in trainer["env"]}
        assert env["MEDCORE_HOME"] == "/workspace"
        assert {"name": "workspace", "mountPath": "/workspace"} in trainer["volumeMounts"]
        assert {"name": "workspace", "persistentVolumeClaim": {"claimName": "ws-claim"}} in pod["volumes"]
        assert ("initContainers" in pod) == (kind == "Master")
        commands.append(trainer["command"])
    assert commands[0] == commands[1]  # one command, one run id, for every pod
    command = commands[0]
    assert command[:3] == ["python", "-m", "torch.distributed.run"]
    master = f"{job['metadata']['name']}-master-0:29500"
    assert {"--nnodes=3", "--nproc-per-node=4", "--rdzv-backend=c10d", f"--rdzv-endpoint={master}"} <= set(command)
    assert "--rdzv-id=r-2026" in command and command[-3:] == ["medcore.train", "/workspace/runs/r-2026", "--resume"]
    [prepare] = replicas["Master"]["template"]["spec"]["initContainers"]
    assert prepare["command"][:4] == ["python", "-m", "medcore.cluster.prepare", "r-2026"]
    assert prepare["resources"] == replicas["Master"]["template"]["spec"]["containers"][0]["resources"]
    spec = load_spec(prepare_spec(prepare["command"]))
    assert (spec.nnodes, spec.rdzv_endpoint, spec.model) == (3, master, "tiny-llama")


def test_pytorchjob_on_one_cpu_pod_has_no_workers_and_no_gpu():
    [job] = load_manifest(generate_launch(SPEC, config("k8s", workspace=None), ["device=cpu"]).text)
    replicas = job["spec"]["pytorchReplicaSpecs"]
    assert set(replicas) == {"Master"}
    [trainer] = replicas["Master"]["template"]["spec"]["containers"]
    assert "nvidia.com/gpu" not in trainer["resources"]["limits"]
    assert trainer["image"] == f"medcore:{__version__}"  # the CPU image (Dockerfile)
    assert "--master-addr=127.0.0.1" in trainer["command"]


STAND_INS = {
    # Records every call's arguments, NUL-separated, one call per line of the record file.
    "python": 'for a in "$@"; do printf "%s\\0" "$a"; done >>"$CALLS"; printf "\\n" >>"$CALLS"',
    "scontrol": "echo node1",
    "srun": 'while [[ "$1" == --* ]]; do shift; done; exec "$@"',
}


def run_with_stand_ins(text: str, tmp_path: Path) -> list[list[str]]:
    """Run a generated script with python, scontrol and srun replaced by recorders; the python calls' arguments."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name, body in STAND_INS.items():
        (bin_dir / name).write_text(f"#!/bin/bash\n{body}\n")
        (bin_dir / name).chmod(0o755)
    script = tmp_path / "launch.sh"
    script.write_text(text)
    calls = tmp_path / "calls"
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "CALLS": str(calls), "SLURM_JOB_NODELIST": "node[1-2]",
           "SLURM_JOB_NUM_NODES": "2", "SLURM_JOB_ID": "77"}  # fmt: skip
    subprocess.run(["bash", str(script)], cwd=tmp_path, env=env, check=True, capture_output=True)
    return [line.split("\0")[:-1] for line in calls.read_text().splitlines()]


@pytest.mark.parametrize("target", ["local", "slurm"])
def test_shell_passes_every_value_through_as_one_word(tmp_path, target):
    name = "ward 7: 'night' \"shift\" $(touch PWNED) # notes"
    workspace = tmp_path / "ws"
    cfg = LaunchConfig(target=target, run_id="r-2026", workspace=str(workspace), python="python")
    (workspace / "runs" / "r-2026").mkdir(parents=True)  # SLURM and torchrun write their logs there
    item = generate_launch(SPEC, cfg, [f"name={json.dumps(name)}", "nnodes=2", "rdzv_endpoint=node1:29400"])
    prepare, train = run_with_stand_ins(item.text, tmp_path)
    assert prepare[:4] == ["-m", "medcore.cluster.prepare", "r-2026", "--spec"]
    assert prepare_spec(prepare)["name"] == name and not (tmp_path / "PWNED").exists()
    assert train[:2] == ["-m", "torch.distributed.run"]
    assert train[-2:] == [str(workspace / "runs" / "r-2026"), "--resume"]
    if target == "slurm":  # the first node's own name, worked out from the allocation
        assert prepare[-2:] == ["--rdzv-endpoint", "node1:29500"] and "--rdzv-endpoint=node1:29500" in train


def test_yaml_carries_every_value_intact():
    name = "ward 7: 'night' \"shift\"\n- kind: Secret # notes"
    [job] = load_manifest(generate_launch(SPEC, config("k8s"), [f"name={json.dumps(name)}"]).text)
    argv = job["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["initContainers"][0]["command"]
    assert prepare_spec(argv)["name"] == name


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"run_id": "run one"}, "run_id"),
        ({"workspace": "relative/ws"}, "workspace"),
        ({"workspace": "/srv/my ws"}, "workspace"),
        ({"image": "Registry/Medcore GPU"}, "image"),
        ({"pvc": "Work_Space"}, "pvc"),
        ({"memory": "64 gigs"}, "memory"),
        ({"namespace": "ML-team"}, "namespace"),
    ],
)
def test_launch_settings_kubernetes_or_a_shell_would_misread_are_refused(fields, field):
    with pytest.raises(ValueError, match=field):
        LaunchConfig(target="k8s", **fields)


def test_long_run_ids_make_valid_and_distinct_kubernetes_names():
    base = "20261130-101500-" + "a-very-long-clinical-specialty-classifier"[:40]  # new_run_id's longest: 61
    names = set()
    for suffix in ("1a2b", "3c4d"):
        [job] = load_manifest(generate_launch(SPEC, config("k8s", run_id=f"{base}-{suffix}")).text)
        name = job["metadata"]["name"]
        assert DNS_1035.match(name) and len(f"{name}-worker-99") <= 63
        names.add(name)
    assert len(names) == 2


# --- k8s vLLM ------------------------------------------------------------------------------------------------------


def test_vllm_deployment_runs_the_vllm_command_with_adapters_from_the_volume(monkeypatch):
    monkeypatch.setenv("MEDCORE_SERVE_API_KEY", "sk-never-in-a-manifest")
    cfg = LaunchConfig(target="k8s-vllm", image="registry.example.org/medcore-gpu:0.1.0", api_key_secret="vllm-key")
    item = generate_launch(SERVING, cfg, ["tensor_parallel_size=2"], {"qa": "r-2026", "notes": "/models/notes-lora"})
    assert "sk-never-in-a-manifest" not in item.text
    deployment, service = load_manifest(item.text)
    assert (deployment["apiVersion"], deployment["kind"]) == ("apps/v1", "Deployment")
    assert (service["apiVersion"], service["kind"]) == ("v1", "Service")
    pod = deployment["spec"]["template"]["spec"]
    [server] = pod["containers"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"] == labels == service["spec"]["selector"]
    expected = load_serving_config(
        SERVING, engine="vllm", tensor_parallel_size=2, host="0.0.0.0",
        adapters={"qa": "/workspace/runs/r-2026/adapter", "notes": "/models/notes-lora"},
    )  # fmt: skip
    argv, env = build_vllm_command(expected.model_copy(update={"api_key": None}), "/workspace/models/tiny-llama")
    assert server["command"] == argv
    assert "--lora-modules" in argv and "qa=/workspace/runs/r-2026/adapter" in argv and "--enable-lora" in argv
    values = {e["name"]: e.get("value") for e in server["env"]}
    assert values["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] == env["VLLM_ALLOW_RUNTIME_LORA_UPDATING"]
    key = next(e for e in server["env"] if e["name"] == "VLLM_API_KEY")
    assert key["valueFrom"]["secretKeyRef"] == {"name": "vllm-key", "key": "api-key"}
    assert server["resources"]["limits"]["nvidia.com/gpu"] == 2
    [port] = server["ports"]
    assert service["spec"]["ports"][0]["targetPort"] == port["name"] and port["containerPort"] == 8000
    assert server["readinessProbe"]["httpGet"]["path"] == "/health"
    assert {"name": "workspace", "mountPath": "/workspace", "readOnly": True} in server["volumeMounts"]


@pytest.mark.parametrize(
    ("overrides", "adapters", "message"),
    [
        (["model=minilm"], None, "embedded server"),
        (["model=./models/mine"], None, "absolute path"),
        ([], {"qa": "workspace/runs/r1/adapter"}, "qa=workspace/runs/r1/adapter"),
    ],
)
def test_vllm_refuses_what_the_pod_could_not_find(overrides, adapters, message):
    with pytest.raises(MedcoreError, match=re.escape(message)):
        generate_launch(SERVING, LaunchConfig(target="k8s-vllm"), overrides, adapters)


# --- the command ---------------------------------------------------------------------------------------------------


def test_cli_dry_run_prints_and_writes_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = main(
        ["launch", str(SPEC), "--target", "slurm", "nnodes=2", "--run-id", "r-2026", "--workspace", WS, "--dry-run"]
    )
    assert code == 0 and list(tmp_path.iterdir()) == []
    assert "#SBATCH --nodes=2" in capsys.readouterr().out


def test_cli_writes_the_file_and_says_how_to_start_it(tmp_path, capsys):
    code = main(
        ["launch", str(SPEC), "--target", "local", "--run-id", "r-2026", "--workspace", WS, "--out", str(tmp_path)]
    )
    assert code == 0
    path = tmp_path / "r-2026.torchrun.sh"
    assert path.stat().st_mode & 0o111 and capsys.readouterr().out.endswith(f"next: bash {path}\n")


def test_cli_reports_spec_and_setting_problems_in_one_line(tmp_path, capsys):
    code = main(["launch", str(SPEC), "--target", "k8s", "learning_rate=1", "--out", str(tmp_path)])
    assert code == 1 and "unknown field 'learning_rate'" in capsys.readouterr().err
    code = main(["launch", str(SPEC), "--target", "k8s", "--memory", "lots", "--pvc", "A B", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 1 and "memory 'lots'" in err and "pvc 'A B'" in err and list(tmp_path.iterdir()) == []


# --- the committed examples ----------------------------------------------------------------------------------------


def load_examples_script():
    location = ROOT / "launchers" / "make_examples.py"
    module_spec = importlib.util.spec_from_file_location("make_examples", location)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def test_committed_examples_match_what_medcore_launch_writes_now(tmp_path):
    examples = load_examples_script()
    fresh = {p.name: p for p in examples.write_examples(tmp_path)}
    committed = {p.name: p for p in examples.OUT.iterdir()}
    hint = "launchers/generated/ is stale: run `python launchers/make_examples.py` and commit the result"
    assert sorted(fresh) == sorted(committed), hint
    for name, path in fresh.items():
        assert path.read_text() == committed[name].read_text(), f"{name}: {hint}"
        assert path.stat().st_mode & 0o111 == committed[name].stat().st_mode & 0o111, f"{name} mode: {hint}"


def test_committed_examples_validate(tmp_path):
    files = sorted((ROOT / "launchers" / "generated").iterdir())
    kinds = set()
    for path in files:
        if path.suffix == ".yaml":
            kinds |= {doc["kind"] for doc in load_manifest(path.read_text())}
        else:
            if path.suffix == ".sbatch":
                assert parse_sbatch_directives(path.read_text())["nodes"] == "2"
            assert_clean_shell(path.read_text(), tmp_path, path.name)
    assert kinds == {"PyTorchJob", "Deployment", "Service"}
