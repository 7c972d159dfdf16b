"""A managed (detached) embedded server started, listed and stopped through the CLI, and the chat PHI guard end to end:
planted PHI is masked before it reaches the server (its prompt log proves it) and never lands in the workspace."""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
from pathlib import Path

import psutil
import pytest
from polling import wait_for

from medcore.cli import main
from medcore.errors import MedcoreError
from medcore.procs import free_port, python_module, spawn_detached
from medcore.rundir import write_json_atomic
from medcore.serve.client import guard_messages, list_models, stream_chat
from medcore.serve.config import load_serving_config
from medcore.serve.manage import list_servers, server_status, servers_dir, start_server
from medcore.serve.transcripts import append_turn, new_chat_id, read_transcript
from medcore.workspace import get_workspace

pytestmark = pytest.mark.slow

GUARD = Path(__file__).parent / "net_guard"
KEY = "managed-key-93"
NAME, PHONE = "John Smith", "617-555-0199"  # planted PHI
PROMPT = f"Patient {NAME} (call {PHONE}) has chest pain on exertion. What next?"


def untrained_adapter(ws, folder: Path) -> Path:
    from peft import LoraConfig, get_peft_model

    from medcore.models import load_model

    model = load_model("tiny-llama", "causal-lm", workspace=ws)
    get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")).save_pretrained(
        folder
    )
    return folder


@pytest.fixture(scope="module")
def managed(tmp_path_factory):
    """`medcore serve ... --detach --log-prompts` in a fresh workspace, Python networking refused in the server."""
    root = tmp_path_factory.mktemp("managed")
    patch = pytest.MonkeyPatch()
    patch.setenv("MEDCORE_HOME", str(root / "workspace"))
    patch.setenv("PYTHONPATH", os.pathsep.join([str(GUARD), os.environ.get("PYTHONPATH", "")]))
    patch.setenv("MEDCORE_NET_GUARD_LOG", str(root / "connections.log"))
    ws = get_workspace(root / "workspace")
    adapter = untrained_adapter(ws, root / "qa")
    port = free_port()
    argv = ["serve", "--model", "tiny-llama", "--adapter", f"qa={adapter}", "--port", str(port), "--api-key", KEY]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main([*argv, "--detach", "--name", "chat", "--log-prompts"])
    try:
        assert code == 0
        yield {"ws": ws, "root": root, "port": port, "printed": out.getvalue(), "url": f"http://127.0.0.1:{port}"}
    finally:
        with contextlib.suppress(MedcoreError):
            main(["serve", "stop", "chat"])
        patch.undo()


def test_a_detached_server_is_up_and_recorded(managed, capsys):
    assert f"is up at {managed['url']}" in managed["printed"] and "tiny-llama, qa" in managed["printed"]
    assert main(["serve", "list", "--json"]) == 0
    listed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(s["name"], s["state"], s["url"], s["models"]) for s in listed] == [
        ("chat", "running", managed["url"], ["tiny-llama", "qa"])
    ]
    folder = servers_dir(managed["ws"]) / "chat"
    state = json.loads((folder / "state.json").read_text())
    assert state["api_key_required"] is True and psutil.pid_exists(state["process"]["pid"])
    assert list_models(managed["url"], api_key=KEY) == ["tiny-llama", "qa"]
    cmdline = " ".join(psutil.Process(state["process"]["pid"]).cmdline())
    for text in ((folder / "state.json").read_text(), (folder / "serving.json").read_text(), cmdline):
        assert KEY not in text  # the key travels in the environment only


def test_a_second_start_is_refused_while_the_first_runs(managed):
    config = load_serving_config(model="tiny-llama", port=managed["port"])
    with pytest.raises(MedcoreError, match="already running"):
        start_server(config, name="chat", ws=managed["ws"])
    with pytest.raises(MedcoreError, match="already in use"):
        start_server(config, name="other", ws=managed["ws"])


def test_the_phi_guard_masks_prompts_before_they_leave_and_in_the_transcript(managed):
    guarded = guard_messages([{"role": "system", "content": "Be brief."}, {"role": "user", "content": PROMPT}])
    assert guarded.counts.get("NAME", 0) >= 1 and guarded.counts.get("CONTACT", 0) >= 1
    sent = guarded.messages[1]["content"]
    assert "[NAME]" in sent and "[CONTACT]" in sent and NAME not in sent and PHONE not in sent
    assert [r.index for r in guarded.redactions] == [1] and guarded.redactions[0].redacted_text == sent
    answer = "".join(stream_chat(managed["url"], "qa", guarded.messages, api_key=KEY, max_tokens=8))
    chat_id = new_chat_id()
    append_turn(chat_id, "user", PROMPT, model="qa")  # the store guards whatever it is given
    append_turn(chat_id, "assistant", answer, model="qa")
    turns = read_transcript(chat_id)
    assert turns[0]["content"] == sent and turns[0]["redacted"] == guarded.redactions[0].counts
    log = (servers_dir(managed["ws"]) / "chat" / "server.log").read_text()
    assert "prompt for qa:" in log and "[NAME]" in log and "[CONTACT]" in log  # the server saw the masked prompt
    planted = (NAME.encode(), PHONE.encode())
    leaks = [
        str(p) for p in managed["ws"].root.rglob("*") if p.is_file() and any(s in p.read_bytes() for s in planted)
    ]
    assert leaks == []
    assert not (managed["root"] / "connections.log").exists()  # no connection left this machine


def test_a_server_whose_process_died_is_listed_dead(managed):
    folder = servers_dir(managed["ws"]) / "ghost"
    folder.mkdir(parents=True)
    ref = spawn_detached(python_module("http.server", "--bind", "127.0.0.1", "0"), folder / "server.log")
    state = {"name": "ghost", "engine": "embedded", "url": "http://127.0.0.1:9", "process": ref, "state": "running"}
    write_json_atomic(folder / "state.json", {**state, "models": ["x"], "started": 1.0})
    assert server_status("ghost", managed["ws"]).state == "running"
    os.kill(ref["pid"], signal.SIGKILL)
    wait_for(lambda: server_status("ghost", managed["ws"]).state == "dead", 30, "the dead server to be noticed")
    assert {s.name: s.state for s in list_servers(managed["ws"])}["ghost"] == "dead"


def test_stop_through_the_cli_ends_the_process(managed, capsys):
    pid = server_status("chat", managed["ws"]).pid
    assert main(["serve", "stop", "chat"]) == 0
    assert "Server chat stopped" in capsys.readouterr().out
    wait_for(lambda: not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE, 30, "exit")
    assert server_status("chat", managed["ws"]).state == "stopped"
