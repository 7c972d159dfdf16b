"""Serving config, the vLLM command line built from it, the launcher, the CLI wiring; real vLLM where a GPU exists."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from medcore.cli import COMMANDS, main
from medcore.errors import MedcoreError
from medcore.serve.config import ServingConfig, load_serving_config, parse_adapter_args
from medcore.serve.model_server import ModelServer
from medcore.serve.vllm import build_vllm_command

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "configs" / "serving.yaml"


@pytest.mark.parametrize("path", [EXAMPLE], ids=lambda p: p.name)
def test_the_example_config_loads(path):
    config = load_serving_config(path)
    assert config.engine == "embedded" and config.host == "127.0.0.1" and config.model == "tiny-llama"
    assert config.max_model_len == 512 and config.api_key is None


def test_defaults_bind_this_machine_only():
    config = ServingConfig()
    assert config.host == "127.0.0.1" and config.port == 8000 and config.engine == "embedded"
    assert config.url == "http://127.0.0.1:8000" and not config.log_prompts


def test_every_bad_field_is_reported_at_once(tmp_path):
    bad = tmp_path / "serving.yaml"
    bad.write_text("prot: 8000\nport: 0\nengine: tgi\nqueue_size: 0\n")
    with pytest.raises(MedcoreError) as err:
        load_serving_config(bad)
    message = str(err.value)
    assert message.startswith("Invalid serving config (serving.yaml):")
    assert "unknown field 'prot'; did you mean 'port'" in message
    for field in ("'port'", "'engine'", "'queue_size'"):
        assert field in message


def test_adapter_names_are_checked():
    with pytest.raises(MedcoreError, match="adapter names 'my adapter' are not valid"):
        load_serving_config(adapters={"my adapter": "x"})
    with pytest.raises(MedcoreError, match="is the base model's name"):
        load_serving_config(model="tiny-llama", adapters={"tiny-llama": "x"})


def test_adapter_options_parse_and_refuse_bad_ones():
    assert parse_adapter_args(["qa=runs/a/adapter", "cls=/abs/b"]) == {
        "qa": Path("runs/a/adapter"),
        "cls": Path("/abs/b"),
    }
    with pytest.raises(MedcoreError, match="is not NAME=DIR"):
        parse_adapter_args(["runs/a/adapter"])
    with pytest.raises(MedcoreError, match="given twice"):
        parse_adapter_args(["qa=a", "qa=b"])


def test_the_api_key_comes_from_the_environment_and_is_never_dumped(monkeypatch):
    monkeypatch.setenv("MEDCORE_SERVE_API_KEY", "s3cret-key")
    config = load_serving_config()
    assert config.key() == "s3cret-key"
    assert "api_key" not in config.public_dict() and "s3cret-key" not in repr(config)


def test_vllm_command_is_built_from_the_config(tmp_path):
    adapter = tmp_path / "qa"
    config = load_serving_config(
        engine="vllm",
        model="org/clinical-7b",
        adapters={"qa": adapter, "triage": tmp_path / "t"},
        host="0.0.0.0",
        port=8100,
        max_model_len=4096,
        gpu_memory_utilization=0.85,
        tensor_parallel_size=2,
        max_lora_rank=32,
        api_key="k-123",
    )
    argv, env = build_vllm_command(config, "org/clinical-7b")
    assert argv == [
        "vllm", "serve", "org/clinical-7b", "--served-model-name", "clinical-7b",
        "--host", "0.0.0.0", "--port", "8100",
        "--gpu-memory-utilization", "0.85", "--tensor-parallel-size", "2", "--max-model-len", "4096",
        "--enable-lora", "--max-lora-rank", "32", "--max-loras", "4",
        "--lora-modules", f"qa={adapter.resolve()}", f"triage={(tmp_path / 't').resolve()}",
    ]  # fmt: skip
    assert env == {"VLLM_ALLOW_RUNTIME_LORA_UPDATING": "True", "VLLM_API_KEY": "k-123"}
    assert "k-123" not in " ".join(argv)  # the key stays out of the process list


def test_vllm_command_without_adapters_or_key_still_allows_runtime_adapters():
    argv, env = build_vllm_command(load_serving_config(engine="vllm", model="org/m"), "org/m")
    assert "--lora-modules" not in argv and "--max-model-len" not in argv and "--enable-lora" in argv
    assert env == {"VLLM_ALLOW_RUNTIME_LORA_UPDATING": "True"}


def test_the_launcher_prints_the_vllm_command(workspace, tmp_path):
    env = {**os.environ, "MEDCORE_PYTHON": sys.executable, "MEDCORE_SERVE_API_KEY": "hidden-key"}
    proc = subprocess.run(
        [str(ROOT / "launchers" / "serve_vllm.sh"), str(EXAMPLE), "--adapter", f"qa={tmp_path}", "--dry-run"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    line = proc.stdout.strip().splitlines()[-1]
    assert line.startswith("VLLM_ALLOW_RUNTIME_LORA_UPDATING=True VLLM_API_KEY=*** vllm serve ")
    assert f"--lora-modules qa={tmp_path}" in line and "--max-model-len 512" in line
    assert "hidden-key" not in proc.stdout + proc.stderr


def test_serve_is_a_cli_command_and_refuses_bad_options(workspace, capsys):
    assert COMMANDS["serve"][0] == "medcore.commands.serve"
    assert main(["serve", "stop"]) == 1
    assert "Name the server to stop" in capsys.readouterr().err
    assert main(["serve", "stop", "nope"]) == 1
    assert "No managed server 'nope'" in capsys.readouterr().err
    assert main(["serve", "--adapter", "no-equals-sign", "--dry-run"]) == 1
    assert "is not NAME=DIR" in capsys.readouterr().err
    assert main(["serve", "list"]) == 0
    assert "No managed servers" in capsys.readouterr().out


def test_model_server_maps_onto_the_serving_config(tmp_path):
    server = ModelServer("tiny-llama", EXAMPLE, adapters={"qa": tmp_path})
    config = server.config(host="127.0.0.1", port=8123)
    assert (config.model, config.port, config.max_model_len) == ("tiny-llama", 8123, 512)
    assert config.adapters == {"qa": tmp_path}
    with pytest.raises(MedcoreError, match="'port'"):
        server.config(port=70000)


def has_vllm_and_cuda() -> bool:
    import shutil

    import torch

    return torch.cuda.is_available() and shutil.which("vllm") is not None


@pytest.mark.gpu
@pytest.mark.skipif(not has_vllm_and_cuda(), reason="needs CUDA and vLLM (pip install medcore[gpu] on a GPU host)")
def test_real_vllm_serves_a_lora_adapter_and_loads_one_at_run_time(workspace, tmp_path):
    import torch
    from openai import OpenAI
    from peft import LoraConfig, get_peft_model
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from medcore.models import minilm_path
    from medcore.procs import free_port
    from medcore.serve.manage import start_server, stop_server

    # A small Llama with a head size vLLM's attention kernels take (64), random weights, MiniLM's tokenizer.
    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    tokenizer.eos_token, tokenizer.bos_token = tokenizer.sep_token, tokenizer.cls_token
    torch.manual_seed(0)
    base = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=len(tokenizer),
            hidden_size=256,
            intermediate_size=512,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=4,
            max_position_embeddings=512,
            eos_token_id=tokenizer.sep_token_id,
            bos_token_id=tokenizer.cls_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    )
    base_dir = tmp_path / "small-llama"
    base.save_pretrained(base_dir)
    tokenizer.save_pretrained(base_dir)
    lora = get_peft_model(
        base, LoraConfig(r=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False, task_type="CAUSAL_LM")
    )
    lora.save_pretrained(tmp_path / "qa")
    config = load_serving_config(
        engine="vllm",
        model=str(base_dir),
        adapters={"qa": tmp_path / "qa"},
        port=free_port(),
        gpu_memory_utilization=0.3,
        max_model_len=512,
    )
    info = start_server(config, name="gpu-test", ws=workspace)
    try:
        client = OpenAI(base_url=f"{info.url}/v1", api_key="none", max_retries=0, timeout=120)
        assert {"small-llama", "qa"} <= {model.id for model in client.models.list().data}
        base_answer = client.completions.create(model="small-llama", prompt="chest pain?", max_tokens=8, temperature=0)
        lora_answer = client.completions.create(model="qa", prompt="chest pain?", max_tokens=8, temperature=0)
        assert lora_answer.choices[0].text != base_answer.choices[0].text
        client.post("/load_lora_adapter", body={"lora_name": "qa2", "lora_path": str(tmp_path / "qa")}, cast_to=str)
        again = client.completions.create(model="qa2", prompt="chest pain?", max_tokens=8, temperature=0)
        assert again.choices[0].text == lora_answer.choices[0].text
    finally:
        stop_server("gpu-test", ws=workspace)
