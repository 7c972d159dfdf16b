"""Serving overhead: the embedded OpenAI-compatible server vs `model.generate` in-process, same model, same prompts.

    python bench/serve_bench.py [--model tiny-llama|bench-llama] [--tokens 128] [--prompts 6] [--rounds 3]

The server runs as a managed detached process (as `medcore serve --detach` starts it) and is called with the official
`openai` client; the baseline loads the same weights in this process and calls `model.generate` on the same prompt
token ids. Every generation is greedy and exactly `--tokens` long on both sides (min_tokens = max_tokens), so the
work is equal. The two sides alternate prompt by prompt so machine load drifts hit both alike; medians of the
per-prompt rates are reported. Time to first token: a streamed request's first text chunk vs the first token a
streamer gets in-process. Under load: 8 clients at once (no batching: the server runs one generation at a time)
against 8 sequential in-process calls. `bench-llama` is a slightly larger Llama built from a config with random
weights (hidden 256, 4 layers). The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

PROMPTS = [
    "What does chest pain on exertion suggest?",
    "Summarise the discharge plan for a patient after knee replacement.",
    "Which labs should be checked before starting metformin?",
    "List red flags in a patient with new headache.",
    "How is community-acquired pneumonia treated in adults?",
    "Explain the difference between type 1 and type 2 diabetes.",
    "What follow-up is needed after a transient ischaemic attack?",
    "When should a fever in an infant prompt admission?",
]
BENCH_LLAMA = dict(hidden_size=256, intermediate_size=512, num_hidden_layers=4, num_attention_heads=4)


def build_bench_llama(ws) -> str:
    """tiny-llama's tokenizer and config, scaled up (random weights, seeded): a model folder in the workspace."""
    import torch
    from transformers import AutoConfig, AutoTokenizer, LlamaForCausalLM

    from medcore.models import resolve_model_path

    tiny = resolve_model_path("tiny-llama", ws)
    config = AutoConfig.from_pretrained(tiny)
    for key, value in {**BENCH_LLAMA, "num_key_value_heads": BENCH_LLAMA["num_attention_heads"]}.items():
        setattr(config, key, value)
    torch.manual_seed(0)
    target = ws.models / "bench-llama"
    LlamaForCausalLM(config).save_pretrained(target)
    AutoTokenizer.from_pretrained(tiny).save_pretrained(target)
    return str(target)


def direct_run(model, ids: list[int], tokens: int, pad: int) -> tuple[float, float]:
    """(seconds, seconds to the first generated token) of one in-process greedy generation of `tokens` tokens."""
    import torch
    from transformers.generation.streamers import BaseStreamer

    marks: list[float] = []

    class FirstToken(BaseStreamer):
        def put(self, value):
            marks.append(time.perf_counter())

        def end(self):
            pass

    began = time.perf_counter()
    with torch.inference_mode():
        model.generate(
            torch.tensor([ids]),
            max_new_tokens=tokens,
            min_new_tokens=tokens,
            do_sample=False,
            pad_token_id=pad,
            streamer=FirstToken(),
        )
    # marks[0] is the prompt handed to the streamer; marks[1] is the first generated token.
    return time.perf_counter() - began, marks[1] - began


def server_run(client, model: str, messages: list[dict], tokens: int) -> tuple[float, int]:
    """(seconds, completion tokens) of one whole (not streamed) chat completion."""
    began = time.perf_counter()
    response = client.chat.completions.create(
        model=model, messages=messages, max_tokens=tokens, temperature=0, extra_body={"min_tokens": tokens}
    )
    return time.perf_counter() - began, response.usage.completion_tokens


def server_ttft(client, model: str, messages: list[dict], tokens: int) -> float:
    """Seconds until the first streamed text chunk arrives."""
    began = time.perf_counter()
    stream = client.chat.completions.create(
        model=model,
        messages=messages,
        max_tokens=tokens,
        temperature=0,
        stream=True,
        extra_body={"min_tokens": tokens},
    )
    first = None
    for chunk in stream:
        if first is None and chunk.choices and chunk.choices[0].delta.content:
            first = time.perf_counter() - began
    return first


def concurrent_run(url: str, model: str, prompts: list[list[dict]], tokens: int) -> tuple[float, list[float], int]:
    """8 clients at once: (wall seconds, each request's latency, completion tokens)."""
    import openai

    start, latencies, counts = threading.Barrier(len(prompts)), [0.0] * len(prompts), [0] * len(prompts)

    def ask(i: int) -> None:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="none", max_retries=0, timeout=600)
        start.wait()
        latencies[i], counts[i] = server_run(client, model, prompts[i], tokens)

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(prompts))]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - began, latencies, sum(counts)


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


@dataclass
class Sides:
    """The running server's client and the in-process baseline, over the same prompts."""

    url: str
    name: str
    client: object
    model: object
    pad: int
    chats: list
    ids: list


def one_by_one(sides: Sides, args) -> dict:
    """Each prompt in-process, then through the server (whole and streamed), alternating; median rates."""
    server_rates, direct_rates, server_first, direct_first = [], [], [], []
    for _ in range(args.rounds):
        for chat, prompt_ids in list(zip(sides.chats, sides.ids, strict=True))[: args.prompts]:
            seconds, first = direct_run(sides.model, prompt_ids, args.tokens, sides.pad)
            direct_rates.append(args.tokens / seconds)
            direct_first.append(first)
            seconds, count = server_run(sides.client, sides.name, chat, args.tokens)
            assert count == args.tokens, count  # equal work on both sides
            server_rates.append(count / seconds)
            server_first.append(server_ttft(sides.client, sides.name, chat, args.tokens))
    server_tps, direct_tps = statistics.median(server_rates), statistics.median(direct_rates)
    return {
        "server_tokens_per_s": round(server_tps, 1),
        "direct_tokens_per_s": round(direct_tps, 1),
        "overhead_pct": round((direct_tps - server_tps) / direct_tps * 100, 1),
        "ttft_ms": {
            "server": round(statistics.median(server_first) * 1000, 1),
            "direct": round(statistics.median(direct_first) * 1000, 1),
        },
    }


def eight_at_once(sides: Sides, args) -> dict:
    """8 clients at once vs 8 sequential in-process calls, alternating rounds; medians and the p95 latency."""
    concurrent_rates, sequential_rates, latencies = [], [], []
    for _ in range(args.rounds):
        wall, round_latencies, count = concurrent_run(sides.url, sides.name, sides.chats[:8], args.tokens)
        concurrent_rates.append(count / wall)
        latencies += round_latencies
        began = time.perf_counter()
        for prompt_ids in sides.ids[:8]:
            direct_run(sides.model, prompt_ids, args.tokens, sides.pad)
        sequential_rates.append(8 * args.tokens / (time.perf_counter() - began))
    return {
        "tokens_per_s": round(statistics.median(concurrent_rates), 1),
        "p95_ms": round(p95(latencies) * 1000, 1),
        "sequential_tokens_per_s": round(statistics.median(sequential_rates), 1),
    }


def measure(args, ws) -> dict:
    import openai

    from medcore.procs import free_port
    from medcore.serve.config import load_serving_config
    from medcore.serve.engine import ModelPool
    from medcore.serve.manage import start_server, stop_server

    model_ref = build_bench_llama(ws) if args.model == "bench-llama" else args.model
    config = load_serving_config(model=model_ref, port=free_port(), max_tokens_cap=args.tokens, queue_size=16)
    info = start_server(config, name="bench", ws=ws)
    try:
        pool = ModelPool(config, ws)  # the server's prompt encoding; pool.causal is the plain transformers baseline
        chats = [[{"role": "user", "content": p}] for p in PROMPTS]
        client = openai.OpenAI(base_url=f"{info.url}/v1", api_key="none", max_retries=0, timeout=600)
        sides = Sides(
            info.url, config.base_name, client, pool.causal, pool.tokenizer.pad_token_id, chats,
            [pool.encode_chat(chat)[1] for chat in chats],
        )  # fmt: skip
        server_run(client, sides.name, chats[0], 8), direct_run(sides.model, sides.ids[0], 8, sides.pad)  # warm-up
        result = {"model": args.model, "tokens_per_request": args.tokens, **one_by_one(sides, args)}
        result["concurrent8"] = eight_at_once(sides, args)
    finally:
        stop_server("bench", ws=ws)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny-llama", choices=("tiny-llama", "bench-llama"), help="Model to serve.")
    parser.add_argument("--tokens", type=int, default=128, help="Tokens generated per request (default 128).")
    parser.add_argument("--prompts", type=int, default=6, help="Prompts per round (at most 8, default 6).")
    parser.add_argument("--rounds", type=int, default=3, help="Rounds over the prompts and of 8 clients (default 3).")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from medcore.workspace import get_workspace

    with tempfile.TemporaryDirectory() as tmp:
        ws = get_workspace(Path(tmp) / "workspace")
        os.environ["MEDCORE_HOME"] = str(ws.root)
        result = measure(args, ws)
    print(
        f"server {result['server_tokens_per_s']} tok/s vs direct {result['direct_tokens_per_s']} tok/s "
        f"(overhead {result['overhead_pct']}%), time to first token {result['ttft_ms']['server']} ms vs "
        f"{result['ttft_ms']['direct']} ms; 8 clients at once: {result['concurrent8']['tokens_per_s']} tok/s, "
        f"p95 {result['concurrent8']['p95_ms']} ms vs 8 sequential in-process calls "
        f"{result['concurrent8']['sequential_tokens_per_s']} tok/s",
        file=sys.stderr,
    )
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
