"""Benchmark medcore.store's live metric query and the cost of metric logging inside training.

1M metric rows across 100 runs in a temp workspace. The console's live chart polls 10 running runs
for rows past the last step it has; between polls each run appends one row. Measured against a
baseline in the same run: the naive query, one DuckDB read_json over the global runs/*/metrics.jsonl glob.
Logging cost: one JSON line appended and flushed (what rank 0 does per logging step) against one
optimizer step of tiny-llama on CPU, the smallest model MedCore trains (so the % is an upper bound).

    .venv/bin/python bench/store_bench.py      # last line: one JSON object with the figures
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
from pathlib import Path

RUNS, ROWS_PER_RUN, LIVE_RUNS, POLLS = 100, 10_000, 10, 200


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def metric_line(step: int) -> str:
    # The trainer's schema; every 100th step also carries eval metrics (a column most rows lack).
    line = (
        f'{{"step": {step}, "epoch": {step / 1000:.4f}, "loss": {2.5 / (1 + step / 500):.6f}, "lr": 0.0001, '
        f'"grad_norm": 1.25, "tokens_per_s": 1843.2, "samples_per_s": 14.4, "step_time_s": 0.0712, '
        f'"peak_mem_mb": 612.5, "time": {1.79e9 + step * 0.07:.3f}'
    )
    return line + (f', "eval_loss": {2.0 / (1 + step / 500):.6f}, "eval_f1": 0.71}}\n' if step % 100 == 0 else "}\n")


def build_workspace(root: Path) -> list[str]:
    run_ids = [f"run-{i:03d}" for i in range(RUNS)]
    body = "".join(metric_line(s) for s in range(1, ROWS_PER_RUN + 1))
    for run_id in run_ids:
        folder = root / "runs" / run_id
        folder.mkdir(parents=True)
        (folder / "metrics.jsonl").write_text(body)
    return run_ids


def bench_live(ws, live: list[str]) -> dict:
    from medcore import store

    start = time.perf_counter()
    frame = store.metrics(live, ws=ws)  # first poll of a fresh console process: parses the JSONL once
    cold_ms = (time.perf_counter() - start) * 1000
    last = frame.groupby("run_id")["step"].max().to_dict()
    times = []
    for _ in range(POLLS):
        for run_id in live:
            last_step = last[run_id] + 1
            with open(ws.runs / run_id / "metrics.jsonl", "a") as fh:
                fh.write(metric_line(last_step))
        start = time.perf_counter()
        new = store.metrics(live, since_step=last, ws=ws)
        times.append((time.perf_counter() - start) * 1000)
        assert len(new) == len(live), len(new)
        last = new.groupby("run_id")["step"].max().to_dict()
    for run_id in live:  # the runs end: compacted; a new process's first poll now reads Parquet
        store.compact_run_metrics(ws.runs / run_id)
    store.clear_cache()
    start = time.perf_counter()
    store.metrics(live, ws=ws)
    cold_parquet_ms = (time.perf_counter() - start) * 1000
    return {"p50": percentile(times, 50), "p95": percentile(times, 95), "cold_jsonl_ms": cold_ms,
            "cold_parquet_ms": cold_parquet_ms}  # fmt: skip


def bench_baseline(ws, live: list[str], repeats: int = 3) -> dict:
    import duckdb

    con = duckdb.connect()
    ids = ", ".join(f"'{r}'" for r in live)
    glob = str(ws.runs / "*" / "metrics.jsonl")
    sql = (
        f"SELECT * FROM (SELECT regexp_extract(filename, '([^/]+)/metrics.jsonl$', 1) AS run_id, * "
        f"FROM read_json('{glob}', format='newline_delimited', union_by_name=true, ignore_errors=true, "
        f"filename=true)) WHERE run_id IN ({ids}) AND step > {ROWS_PER_RUN + POLLS - 1}"
    )
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        rows = con.execute(sql).fetchall()
        times.append((time.perf_counter() - start) * 1000)
    assert len(rows) == len(live), len(rows)
    return {"p50": percentile(times, 50), "p95": percentile(times, 95)}


def bench_logging(root: Path) -> dict:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from medcore.models import TINY_LLAMA_SHAPE

    torch.manual_seed(0)
    torch.set_num_threads(2)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=30522, **TINY_LLAMA_SHAPE))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    batch = torch.randint(0, 30522, (4, 64))  # small on purpose: a short step makes the overhead % an upper bound
    steps = []
    for i in range(13):
        start = time.perf_counter()
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        if i >= 3:  # the first steps warm up allocator and kernels
            steps.append(time.perf_counter() - start)
    record = json.loads(metric_line(1234))
    writes = []
    with open(root / "metrics.jsonl", "a") as fh:
        for step in range(2000):
            start = time.perf_counter()
            fh.write(json.dumps({**record, "step": step}) + "\n")
            fh.flush()
            writes.append(time.perf_counter() - start)
    step_s, write_s = statistics.median(steps), statistics.median(writes)
    return {"step_time_ms": step_s * 1000, "log_line_us": write_s * 1e6, "pct": 100 * write_s / step_s}


def main() -> None:
    from medcore.workspace import get_workspace

    with tempfile.TemporaryDirectory(prefix="medcore-store-bench-") as tmp:
        ws = get_workspace(Path(tmp) / "workspace")
        os.environ["MEDCORE_HOME"] = str(ws.root)
        start = time.perf_counter()
        run_ids = build_workspace(ws.root)
        print(f"wrote {RUNS * ROWS_PER_RUN} rows in {RUNS} runs in {time.perf_counter() - start:.1f} s")
        live = run_ids[:: RUNS // LIVE_RUNS]
        live_ms = bench_live(ws, live)
        print(f"live query, {LIVE_RUNS} runs: p50 {live_ms['p50']:.2f} ms, p95 {live_ms['p95']:.2f} ms")
        baseline = bench_baseline(ws, live)
        print(f"baseline global-glob read_json: p50 {baseline['p50']:.0f} ms")
        logging_cost = bench_logging(Path(tmp))
        print(f"log line {logging_cost['log_line_us']:.1f} us vs step {logging_cost['step_time_ms']:.1f} ms")
    result = {
        "rows": RUNS * ROWS_PER_RUN,
        "runs": RUNS,
        "live_query_ms": {"p50": round(live_ms["p50"], 2), "p95": round(live_ms["p95"], 2)},
        "logging_overhead_pct": round(logging_cost["pct"], 4),
        "baseline_global_glob_ms": {"p50": round(baseline["p50"], 1), "p95": round(baseline["p95"], 1)},
        "speedup_p50_vs_baseline": round(baseline["p50"] / live_ms["p50"], 1),
        "cold_first_poll_ms": {
            "jsonl": round(live_ms["cold_jsonl_ms"], 1),
            "parquet": round(live_ms["cold_parquet_ms"], 1),
        },
        "step_time_ms": round(logging_cost["step_time_ms"], 2),
        "log_line_us": round(logging_cost["log_line_us"], 2),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
