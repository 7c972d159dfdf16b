"""Chat page (AppTest) against a real embedded server on 127.0.0.1: models listed, answers streamed, the PHI guard
masking planted PHI before it leaves (the server's prompt log and the workspace prove it), two models side by side
sent to a blinded review, no server -> a message; and the Runs page's "Serve this adapter" on a managed server."""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
from pathlib import Path

import pytest
from app_helpers import open_page, texts, widget
from polling import wait_for
from test_serve_managed import untrained_adapter

from medcore.errors import MedcoreError
from medcore.procs import free_port
from medcore.rundir import RunDir, write_json_atomic
from medcore.serve.client import complete_chat
from medcore.serve.config import load_serving_config
from medcore.serve.manage import list_servers, stop_server
from medcore.serve.server import serve_in_thread
from medcore.train import RunSpec
from medcore.workspace import get_workspace

ADAPTER = "zulu-adapter"  # a name no random tiny-llama output will contain (the review must not show it)
NAME, PHONE = "John Smith", "617-555-0199"  # planted PHI
PROMPT = f"Patient {NAME} (call {PHONE}) has chest pain on exertion. What next?"
PLAIN = "What does chest pain on exertion suggest?"
URL_MODE = "Any OpenAI-compatible URL"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """tiny-llama plus an untrained LoRA adapter, in a thread of this process, logging the prompts it receives."""
    root = tmp_path_factory.mktemp("chat-server")
    ws = get_workspace(root / "workspace")
    adapter = untrained_adapter(ws, root / "zulu")
    config = load_serving_config(model="tiny-llama", adapters={ADAPTER: adapter}, port=free_port(), log_prompts=True)
    server = serve_in_thread(config, ws)
    yield {"url": server.url, "ws": ws}
    server.stop()


@pytest.fixture
def prompts(caplog):
    """The prompt texts the in-thread server logged (log_prompts), in order."""
    caplog.set_level(logging.INFO, logger="medcore.serve")
    return lambda: [r.getMessage() for r in caplog.records if r.getMessage().startswith("prompt for ")]


def open_chat(url: str, max_tokens: int = 12):
    at = open_page("chat", timeout=180)
    widget(at.radio, "Endpoint").set_value(URL_MODE).run()
    widget(at.text_input, "Server URL").input(url).run()
    widget(at.number_input, "Max tokens").set_value(max_tokens).run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    return at


def ask(at, prompt: str):
    at.chat_input[0].set_value(prompt).run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    return at


def message_texts(at, role: str) -> list[str]:
    """The markdown of each chat message of `role` (its model name or guard note is a caption, not included)."""
    return ["".join(m.value for m in msg.markdown) for msg in at.chat_message if msg.name == role]


def planted_files(*roots: Path) -> list[str]:
    planted = (NAME.encode(), PHONE.encode())
    return [
        str(p) for root in roots for p in root.rglob("*") if p.is_file() and any(s in p.read_bytes() for s in planted)
    ]


def test_lists_the_models_and_streams_an_answer(workspace, served):
    at = open_chat(served["url"])
    assert widget(at.selectbox, "Model").options == ["tiny-llama", ADAPTER]
    ask(at, PLAIN)
    assert message_texts(at, "user") == [PLAIN]
    expected = complete_chat(served["url"], "tiny-llama", [{"role": "user", "content": PLAIN}], max_tokens=12)
    assert expected.strip()  # the tiny model says something, so the comparison below means something
    assert message_texts(at, "assistant") == [expected]  # the streamed pieces, joined, are the whole answer
    turns = [json.loads(line) for line in next(workspace.root.glob("chats/*.jsonl")).read_text().splitlines()]
    assert [(t["role"], t["model"]) for t in turns] == [("user", None), ("assistant", "tiny-llama")]
    ask(at, "And then?")  # the second turn carries the first exchange
    assert len(message_texts(at, "assistant")) == 2


def test_the_guard_masks_planted_phi_before_it_is_sent(workspace, served, prompts):
    at = ask(open_chat(served["url"]), PROMPT)
    shown = message_texts(at, "user")[0]
    assert "[NAME]" in shown and "[CONTACT]" in shown and NAME not in shown and PHONE not in shown
    note = [c for c in texts(at, "caption") if c.startswith("PHI guard masked")][0]
    assert "NAME x1" in note and "CONTACT x1" in note
    received = prompts()
    assert received and "[NAME]" in received[-1] and "[CONTACT]" in received[-1]
    assert not any(NAME in p or PHONE in p for p in received)  # nothing planted reached the server
    assert planted_files(workspace.root, served["ws"].root) == []
    assert NAME not in json.dumps(at.session_state["chat_turns"])


def test_with_the_guard_off_the_raw_prompt_is_sent_and_the_page_says_so(workspace, served, prompts):
    at = open_chat(served["url"])
    widget(at.toggle, "PHI guard").set_value(False).run()
    assert any(w.startswith("PHI guard is off") for w in texts(at, "warning"))
    ask(at, PROMPT)
    assert message_texts(at, "user") == [PROMPT]
    assert "PHI guard off: sent as typed." in texts(at, "caption")
    assert NAME in prompts()[-1] and PHONE in prompts()[-1]  # sent as typed
    assert planted_files(workspace.root) == []  # the transcript store masks whatever it is given


def test_two_models_side_by_side_go_to_a_blinded_review(workspace, served):
    at = open_chat(served["url"])
    widget(at.toggle, "Two models side by side").set_value(True).run()
    assert widget(at.selectbox, "Second model").value == ADAPTER
    ask(at, PROMPT)
    answers = message_texts(at, "assistant")
    assert len(answers) == 2 and all(a.strip() for a in answers)
    assert {c for c in texts(at, "caption") if c in ("tiny-llama", ADAPTER)} == {"tiny-llama", ADAPTER}
    widget(at.text_input, "Review name (reviewers see it: no model names)").input(f"ward {ADAPTER}").run()
    widget(at.button, "Send to review").click().run()
    assert any("contains the model name" in e for e in texts(at, "error"))  # a name that would unblind
    widget(at.text_input, "Review name (reviewers see it: no model names)").input("ward chat").run()
    widget(at.button, "Send to review").click().run()
    assert not at.exception and any("holds 1 item(s)" in s for s in texts(at, "success"))
    folder = next((workspace.root / "reviews").glob("review-*"))
    sealed = json.loads((folder / "sealed.json").read_text())
    assert sorted(sealed["models"]) == sorted(["tiny-llama", ADAPTER])
    outside = [p for p in folder.iterdir() if p.is_file() and p.name != "sealed.json"]
    assert not [p.name for p in outside if any(m in p.read_text() for m in ("tiny-llama", ADAPTER))]
    item = json.loads((folder / "items.jsonl").read_text().splitlines()[0])
    assert "[NAME]" in item["prompt"] and item["response_1"].strip() and item["response_2"].strip()
    assert planted_files(workspace.root) == []


def test_no_server_reachable_says_so(workspace):
    at = open_page("chat", timeout=60)
    assert any("No managed server is running" in i for i in texts(at, "info"))
    widget(at.radio, "Endpoint").set_value(URL_MODE).run()
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    widget(at.text_input, "Server URL").input(url).run()
    assert not at.exception
    assert any(e.startswith(f"Cannot reach a server at {url}") for e in texts(at, "error"))
    assert not at.chat_input  # nothing to chat with


def completed_run(ws, run_id: str, task: str, adapter_from: Path | None = None) -> RunDir:
    """A finished run folder as the trainer leaves it: spec, launch, status, log, and the adapter."""
    rd = RunDir(ws.runs / run_id)
    rd.path.mkdir(parents=True)
    spec = RunSpec(model="tiny-llama" if task == "causal-lm" else "minilm", task=task, dataset="qa")
    write_json_atomic(rd.spec, spec.model_dump())
    write_json_atomic(rd.launch, {"queued_at": 1.0, "started_at": 1.0})
    rd.update_status(state="completed", step=4, max_steps=4)
    rd.log.write_text("done\n")
    if adapter_from is not None:
        shutil.copytree(adapter_from, rd.adapter)
    return rd


def follow_until_served(at, what: str):
    """Rerun the Chat page until the serve request it follows has ended (the page polls it once a second)."""
    assert at.title[0].value == "Chat"  # st.switch_page went there; AppTest's next run needs telling
    at.switch_page("views/chat.py")

    def served():
        at.run()
        return not any(i.startswith("Serving ") for i in texts(at, "info"))

    wait_for(served, 240, what, interval=1.0)
    assert not at.exception and not at.error, [e.value for e in at.error]
    return at


@pytest.mark.slow
def test_serve_this_adapter_starts_a_managed_server_then_loads_into_it(workspace, tmp_path):
    adapter = untrained_adapter(workspace, tmp_path / "adapter")
    first, second = "20261130-100000-qa-a1b2", "20261130-110000-qa-c3d4"
    completed_run(workspace, first, "causal-lm", adapter)
    completed_run(workspace, "20261130-090000-notes-e5f6", "classification")
    try:
        at = open_page("runs", timeout=120)
        widget(at.selectbox, "Run").set_value("20261130-090000-notes-e5f6").run()
        assert not [b for b in at.button if b.label == "Serve this adapter"]  # classification: not for chat
        widget(at.selectbox, "Run").set_value(first).run()
        widget(at.button, "Serve this adapter").click().run()
        follow_until_served(at, "the managed server to start")
        assert [(s.name, s.state) for s in list_servers(workspace)] == [("tiny-llama", "running")]
        assert widget(at.selectbox, "Model").value == first  # the Chat page opens on the adapter
        ask(at, PLAIN)
        assert message_texts(at, "assistant")[0].strip()
        completed_run(workspace, second, "causal-lm", adapter)  # a second run of the same base: loaded, not started
        at.switch_page("views/runs.py").run()
        widget(at.selectbox, "Run").set_value(second).run()
        widget(at.button, "Serve this adapter").click().run()
        follow_until_served(at, "the adapter to load")
        assert len(list_servers(workspace)) == 1
        assert widget(at.selectbox, "Model").value == second
        assert set(widget(at.selectbox, "Model").options) == {"tiny-llama", first, second}
        widget(at.button, "Stop server").click().run()
        assert [s.state for s in list_servers(workspace)] == ["stopped"]
        assert any("No managed server is running" in i for i in texts(at, "info"))
    finally:
        with contextlib.suppress(MedcoreError):
            stop_server("tiny-llama", workspace)
