"""The embedded OpenAI-compatible server over real HTTP on 127.0.0.1, driven by the official `openai` client: tiny-llama
plus LoRA adapters trained here with peft; answers checked against the same adapters run in-process."""

from __future__ import annotations

import http.client
import json
import threading
import urllib.error
import urllib.request

import openai
import pytest
import torch
from polling import wait_for

from medcore.models import load_model, load_tokenizer
from medcore.procs import free_port
from medcore.serve.config import load_serving_config
from medcore.serve.engine import render_default_chat
from medcore.serve.generation import GenerationSettings, generate_text
from medcore.serve.server import serve_in_thread
from medcore.workspace import get_workspace

KEY = "test-key"
ASK = [{"role": "user", "content": "What does chest pain on exertion suggest?"}]
PLANTED = "Zebulon Quixote"  # stands in for patient text: must never come back in an error


def train_adapter(ws, folder, task: str, steps: int = 12):
    """A LoRA adapter on tiny-llama after a few AdamW steps (its loss must fall), saved with peft."""
    from peft import LoraConfig, get_peft_model

    tokenizer = load_tokenizer("tiny-llama", ws)
    torch.manual_seed(7)
    kind = "causal-lm" if task == "CAUSAL_LM" else "classification"
    model = load_model("tiny-llama", kind, workspace=ws, **({"num_labels": 3} if kind != "causal-lm" else {}))
    targets = ["q_proj", "v_proj", "o_proj", "up_proj", "down_proj"]
    peft_model = get_peft_model(
        model, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=targets, task_type=task)
    )
    if kind == "causal-lm":
        prompt = tokenizer(render_default_chat(ASK), add_special_tokens=False)["input_ids"]
        answer = tokenizer("cardiology referral", add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        ids = torch.tensor([[tokenizer.bos_token_id, *prompt, *answer]])
        batch = {
            "input_ids": ids,
            "labels": torch.cat([torch.full((1, len(prompt) + 1), -100), ids[:, len(prompt) + 1 :]], 1),
        }
    else:
        batch = dict(
            tokenizer(["chest pain", "rash on the arm", "fever and cough"], padding=True, return_tensors="pt")
        )
        batch["labels"] = torch.tensor([0, 1, 2])
    optimizer = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=3e-2)
    losses = []
    for _ in range(steps):
        loss = peft_model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < losses[0], losses
    peft_model.save_pretrained(folder)
    return folder


def adapter_on_other_base(root):
    """A LoRA adapter saved on a different base (another Llama shape and folder name)."""
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    base = LlamaForCausalLM(
        LlamaConfig(vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2)
    )
    base.save_pretrained(root / "other-llama")
    base = LlamaForCausalLM.from_pretrained(root / "other-llama")
    get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj"], task_type="CAUSAL_LM")).save_pretrained(
        root / "other"
    )
    return root / "other"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("serve")
    ws = get_workspace(root / "workspace")
    adapters = {"qa": train_adapter(ws, root / "qa", "CAUSAL_LM"), "cls": train_adapter(ws, root / "cls", "SEQ_CLS")}
    config = load_serving_config(model="tiny-llama", adapters=adapters, port=free_port(), api_key=KEY)
    server = serve_in_thread(config, ws)
    yield {"server": server, "ws": ws, "root": root, "adapters": adapters, "config": config}
    server.stop()


@pytest.fixture
def client(served):
    return openai.OpenAI(base_url=f"{served['server'].url}/v1", api_key=KEY, max_retries=0, timeout=60)


def post(url: str, body: bytes | dict, key: str | None = KEY) -> tuple[int, dict | str]:
    """POST raw bytes or JSON; (status, parsed JSON or text)."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})}
    request = urllib.request.Request(url, data=data, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            status, text = response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        status, text = exc.code, exc.read().decode()
    try:
        return status, json.loads(text)
    except json.JSONDecodeError:
        return status, text


def health(url: str) -> dict:
    with urllib.request.urlopen(f"{url}/health", timeout=10) as response:
        return json.loads(response.read())


def reference_answer(ws, adapter, max_tokens: int) -> str:
    """The same adapter, in-process with plain peft + transformers, greedy."""
    from peft import PeftModel

    tokenizer = load_tokenizer("tiny-llama", ws)
    model = load_model("tiny-llama", "causal-lm", workspace=ws)
    model = PeftModel.from_pretrained(model, adapter).eval() if adapter else model.eval()
    ids = [tokenizer.bos_token_id, *tokenizer(render_default_chat(ASK), add_special_tokens=False)["input_ids"]]
    out = model.generate(
        torch.tensor([ids]), max_new_tokens=max_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id
    )
    return tokenizer.decode(out[0, len(ids) :], skip_special_tokens=True)


def chat(client, model: str = "qa", max_tokens: int = 12, **extra) -> str:
    response = client.chat.completions.create(model=model, messages=ASK, max_tokens=max_tokens, temperature=0, **extra)
    return response.choices[0].message.content


def test_lists_the_base_and_each_adapter_as_a_model(client, served):
    models = {model.id: model for model in client.models.list().data}
    assert list(models) == ["tiny-llama", "qa", "cls"]
    assert models["qa"].parent == "tiny-llama" and models["qa"].root == str(served["adapters"]["qa"].resolve())
    assert models["tiny-llama"].parent is None


def test_chat_answers_as_the_adapter_run_in_process(client, served):
    response = client.chat.completions.create(model="qa", messages=ASK, max_tokens=12, temperature=0)
    choice = response.choices[0]
    assert choice.message.role == "assistant" and choice.finish_reason in ("stop", "length")
    assert choice.message.content == reference_answer(served["ws"], served["adapters"]["qa"], 12)
    assert response.usage.completion_tokens <= 12 and response.usage.prompt_tokens > 5
    assert response.model == "qa"


def test_streaming_sends_the_same_answer_in_pieces(client):
    stream = client.chat.completions.create(
        model="tiny-llama",
        messages=ASK,
        max_tokens=12,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    pieces = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(pieces) > 1 and "".join(pieces) == chat(client, "tiny-llama")
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] in ("stop", "length")
    assert chunks[-1].usage.completion_tokens >= len(pieces)  # a slow reader gets several tokens in one piece


def test_the_model_name_picks_the_adapter(client, served):
    base, tuned = chat(client, "tiny-llama"), chat(client, "qa")
    assert base != tuned
    assert base == reference_answer(served["ws"], None, 12)
    assert chat(client, "tiny-llama") == base and chat(client, "qa") == tuned  # greedy: repeatable


def test_text_completions_and_the_classify_endpoint(client, served):
    completion = client.completions.create(model="qa", prompt=render_default_chat(ASK), max_tokens=12, temperature=0)
    assert completion.choices[0].text == chat(client)  # the same prompt tokens, so the same greedy answer
    texts = ["chest pain", "rash on the arm"]
    status, body = post(f"{served['server'].url}/v1/classify", {"model": "cls", "input": texts})
    assert status == 200, body
    from peft import PeftModel

    ws = served["ws"]
    tokenizer = load_tokenizer("tiny-llama", ws)
    net = PeftModel.from_pretrained(
        load_model("tiny-llama", "classification", num_labels=3, workspace=ws), served["adapters"]["cls"]
    )
    with torch.inference_mode():
        expected = torch.softmax(net.eval()(**tokenizer(texts, padding=True, return_tensors="pt")).logits.double(), -1)
    for row, want in zip(body["data"], expected.tolist(), strict=True):
        assert row["labels"] == ["LABEL_0", "LABEL_1", "LABEL_2"] and abs(sum(row["probs"]) - 1) < 1e-9
        assert row["probs"] == pytest.approx(want, abs=1e-5)
        assert row["label"] == row["labels"][max(range(3), key=row["probs"].__getitem__)]
    status, body = post(f"{served['server'].url}/v1/classify", {"model": "tiny-llama", "input": "x"})
    assert status == 400 and body["error"]["param"] == "model"


def test_adapters_load_and_unload_at_run_time(client, served):
    url = served["server"].url
    tuned = chat(client, "qa")
    status, text = post(
        f"{url}/v1/load_lora_adapter", {"lora_name": "qa2", "lora_path": str(served["adapters"]["qa"])}
    )
    assert status == 200 and "qa2" in text
    assert "qa2" in [m.id for m in client.models.list().data] and chat(client, "qa2") == tuned
    status, body = post(
        f"{url}/v1/load_lora_adapter", {"lora_name": "qa2", "lora_path": str(served["adapters"]["qa"])}
    )
    assert status == 400 and body["error"]["param"] == "lora_name"
    assert post(f"{url}/v1/unload_lora_adapter", {"lora_name": "qa2"})[0] == 200
    with pytest.raises(openai.NotFoundError):
        chat(client, "qa2")
    status, body = post(f"{url}/v1/unload_lora_adapter", {"lora_name": "qa2"})
    assert status == 404 and body["error"]["param"] == "lora_name"
    assert chat(client, "qa") == tuned  # the other adapter is untouched


BAD_CHATS = {
    "empty messages": ({"messages": []}, 400, "messages"),
    "bad role": ({"messages": [{"role": "doctor", "content": PLANTED}]}, 400, "messages[0].role"),
    "unknown model": ({"model": "gpt-9"}, 404, "model"),
    "max_tokens 0": ({"max_tokens": 0}, 400, "max_tokens"),
    "max_tokens above the cap": ({"max_tokens": 100_000}, 400, "max_tokens"),
    "prompt longer than the context": (
        {"messages": [{"role": "user", "content": f"{PLANTED} " * 400}]},
        400,
        "messages",
    ),
    "stop sequences": ({"stop": ["\n"]}, 400, "stop"),
}


@pytest.mark.parametrize("case", BAD_CHATS, ids=str)
def test_bad_requests_get_openai_errors_naming_the_field(case, client, served):
    change, status, param = BAD_CHATS[case]
    body = {"model": "qa", "messages": ASK, "max_tokens": 4, **change}
    got, answer = post(f"{served['server'].url}/v1/chat/completions", body)
    assert got == status, answer
    assert set(answer["error"]) == {"message", "type", "param", "code"} and answer["error"]["param"] == param
    assert PLANTED.split()[0] not in answer["error"]["message"]  # no request text is echoed
    assert chat(client, max_tokens=2)  # and the server keeps serving


def test_malformed_json_and_bad_adapters_get_400(client, served):
    url, root = served["server"].url, served["root"]
    status, body = post(f"{url}/v1/chat/completions", b'{"model": "qa", "messages": [')
    assert status == 400 and "not a valid JSON object" in body["error"]["message"]
    status, body = post(f"{url}/v1/load_lora_adapter", {"lora_name": "x", "lora_path": str(root)})
    assert status == 400 and body["error"]["param"] == "lora_path" and "not a PEFT adapter" in body["error"]["message"]
    other = adapter_on_other_base(root)
    status, body = post(f"{url}/v1/load_lora_adapter", {"lora_name": "x", "lora_path": str(other)})
    assert status == 400 and body["error"]["param"] == "lora_path" and "other-llama" in body["error"]["message"]
    assert "x" not in [m.id for m in client.models.list().data] and chat(client, max_tokens=2)


def test_the_api_key_is_required_when_set(served):
    url = served["server"].url
    for key in (None, "wrong"):
        status, body = post(f"{url}/v1/chat/completions", {"model": "qa", "messages": ASK}, key=key)
        assert status == 401 and body["error"]["type"] == "authentication_error"
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{url}/v1", api_key="wrong", max_retries=0).models.list()
    assert health(url)["status"] == "ok"  # health stays open, as in vLLM


def test_a_cancel_event_stops_generation_after_the_current_token(served):
    pool, cancel, seen = served["server"].pool, threading.Event(), []

    def on_text(piece):
        seen.append(piece)
        if len(seen) == 3:
            cancel.set()

    _, ids = pool.encode_chat(ASK)
    with pool.lock, pool.selected("qa") as model:
        result = generate_text(model, pool.tokenizer, ids, GenerationSettings(400, 400, 0.0), cancel, on_text)
    assert result.finish_reason == "cancelled" and result.completion_tokens <= 5


def test_a_client_that_disconnects_mid_stream_stops_its_generation(served, monkeypatch):
    url, pool, results = served["server"].url, served["server"].pool, []
    generate = pool.generate
    monkeypatch.setattr(pool, "generate", lambda *a, **k: results.append(generate(*a, **k)) or results[-1])
    before = health(url)["cancelled"]
    conn = http.client.HTTPConnection("127.0.0.1", served["config"].port, timeout=30)
    body = {"model": "qa", "messages": ASK, "max_tokens": 480, "min_tokens": 480, "stream": True}
    conn.request(
        "POST",
        "/v1/chat/completions",
        json.dumps(body),
        {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"},
    )
    response = conn.getresponse()
    assert response.status == 200, response.read()
    line = b""
    while b'"content":"' not in line or b'"content":""' in line:
        line = response.fp.readline()  # until the first piece of text: generation is running
    conn.close()
    wait_for(lambda: health(url)["cancelled"] == before + 1 and health(url)["active"] == 0, 30, "the disconnect")
    wait_for(lambda: results, 30, "the generation to end")
    assert results[0].finish_reason == "cancelled" and results[0].completion_tokens < 480


def test_requests_over_time_are_stopped_with_408(served):
    config = served["config"].model_copy(update={"port": free_port(), "request_timeout_s": 0.2})
    server = serve_in_thread(config, served["ws"], pool=served["server"].pool)
    try:
        client = openai.OpenAI(base_url=f"{server.url}/v1", api_key=KEY, max_retries=0, timeout=60)
        with pytest.raises(openai.APIStatusError) as err:
            chat(client, max_tokens=480, extra_body={"min_tokens": 480})
        assert err.value.status_code == 408 and err.value.body["code"] == "timeout"
        with pytest.raises(openai.APIError, match="request_timeout_s"):
            list(
                client.chat.completions.create(
                    model="qa", messages=ASK, max_tokens=480, extra_body={"min_tokens": 480}, stream=True
                )
            )
        wait_for(lambda: health(server.url)["active"] == 0, 30, "the timed-out requests to end")
        assert health(server.url)["timed_out"] == 2
    finally:
        server.stop()


def test_fifty_concurrent_requests_each_get_an_answer_or_429(served):
    config = served["config"].model_copy(update={"port": free_port(), "queue_size": 4})
    server = serve_in_thread(config, served["ws"], pool=served["server"].pool)
    start, outcomes = threading.Barrier(50), [None] * 50

    def ask(i: int) -> None:
        client = openai.OpenAI(base_url=f"{server.url}/v1", api_key=KEY, max_retries=0, timeout=120)
        start.wait()
        try:
            if i % 2:
                stream = client.chat.completions.create(
                    model="qa", messages=ASK, max_tokens=32, extra_body={"min_tokens": 32}, stream=True
                )
                outcomes[i] = (
                    "ok" if "".join(c.choices[0].delta.content or "" for c in stream if c.choices) else "empty"
                )
            else:
                outcomes[i] = "ok" if chat(client, max_tokens=32, extra_body={"min_tokens": 32}) else "empty"
        except openai.RateLimitError:
            outcomes[i] = "429"
        except Exception as exc:  # noqa: BLE001 - recorded, then asserted
            outcomes[i] = repr(exc)

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(50)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        assert not any(thread.is_alive() for thread in threads), "a request hung"
        assert set(outcomes) <= {"ok", "429"}, outcomes
        assert outcomes.count("ok") >= 4 and outcomes.count("429") >= 1
        assert health(server.url)["rejected"] == outcomes.count("429") and health(server.url)["active"] == 0
    finally:
        server.stop()
