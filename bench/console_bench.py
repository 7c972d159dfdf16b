"""Console page-load benchmark: server time of every page for a workspace with 100 runs and 1M metric rows.

Each page is opened with streamlit's AppTest (the script run a browser triggers, without the network),
first cold (a new session, engine caches empty) and then warm (a rerun in the same session). The
baseline is the same pages over an empty workspace, measured in the same process.

    .venv/bin/python bench/console_bench.py [--runs 100] [--rows 1000000]

Last line: one JSON object {"pages": {page: {"cold_s", "warm_s", "errors"}}, "baseline": {...}, "max_s", "ok", ...}.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PAGES = ("data", "phi", "train", "runs", "evaluate", "chat")
BUDGET_S = 2.0  # issue 6: every page under 2 s of server time


def write_runs(ws, n_runs: int, n_rows: int) -> None:
    """n_runs run folders sharing n_rows metric rows, shaped like the trainer's (most completed and compacted)."""
    from medcore.rundir import RunDir, write_json_atomic
    from medcore.store import compact_run_metrics

    rng = np.random.default_rng(0)
    per_run = n_rows // n_runs
    now = time.time()
    for i in range(n_runs):
        rd = RunDir(ws.runs / f"run-{i:03d}")
        rd.path.mkdir(parents=True)
        # A few older runs failed; the newest (opened by default) completed. No run is "running": without a
        # live process the console would rightly settle it as failed.
        state = "failed" if i % 33 == 5 and i < n_runs - 1 else "completed"
        spec = {"model": "tiny-llama", "task": "causal-lm", "dataset": "demo", "lora_preset": "small"}
        write_json_atomic(rd.spec, {**spec, "zero_preset": "zero2", "max_steps": per_run})
        write_json_atomic(rd.launch, {"queued_at": now - (n_runs - i) * 60, "started_at": now - (n_runs - i) * 60})
        rd.update_status(
            state=state, step=per_run, max_steps=per_run, error="Out of memory." if state == "failed" else None
        )
        steps = np.arange(1, per_run + 1)
        loss = 3.0 * np.exp(-steps / per_run) + rng.normal(0, 0.05, per_run)
        lines = [
            f'{{"step": {s}, "epoch": {s / per_run:.4f}, "loss": {v:.5f}, "lr": {1e-4 * (1 - s / per_run):.3e}, '
            f'"grad_norm": 1.0, "tokens_per_s": 512.0, "memory_mb": 900.0}}\n'
            for s, v in zip(steps.tolist(), loss.tolist(), strict=True)
        ]
        rd.metrics.write_text("".join(lines))
        rd.log.write_text("".join(f"step {s}\n" for s in range(1, 200)))
        if i < n_runs - 2:
            compact_run_metrics(rd)  # what a run's end does; the two newest are left JSONL-only (just ended)


def write_datasets(ws) -> None:
    """The demo notes (2,000) imported raw, plus a copy marked redacted, as the Data/PHI/Train pages would see."""
    from medcore.data.importer import import_dataset
    from medcore.data.manifest import RedactionInfo
    from medcore.data.readers import read_upload
    from medcore.data.validate import suggest_mapping
    from medcore.demo.build import NOTES_CSV, build_demo_workspace

    build_demo_workspace(ws, seed=0)
    frame = read_upload(ws.datasets / NOTES_CSV)
    mapping = suggest_mapping(frame)
    import_dataset(ws, frame, "demo-notes", mapping)
    marked = RedactionInfo(status="redacted", mode="safe-harbor", method="mask", parent="demo-notes")
    import_dataset(ws, frame, "demo-notes-redacted", mapping, redaction=marked)


def warm_up_process() -> float:
    """Load the PHI detector once, as a console process does in the background when it starts (app/main.py).

    Timed and reported on its own: it is paid once per server process, not per page load.
    """
    from medcore.phi.detect import detect_text

    start = time.perf_counter()
    detect_text("Warm-up.")
    return time.perf_counter() - start


def time_pages(root: Path) -> dict[str, dict[str, float]]:
    """Cold (fresh session) and warm (rerun) server time of each page over the workspace at `root`."""
    from streamlit.testing.v1 import AppTest

    os.environ["MEDCORE_HOME"] = str(root)
    from medcore.store import clear_cache

    clear_cache()
    results = {}
    for page in PAGES:
        at = AppTest.from_file(str(ROOT / "app" / "main.py"), default_timeout=120).run()
        at.switch_page(f"views/{page}.py")
        start = time.perf_counter()
        at.run()
        cold = time.perf_counter() - start
        if at.exception:
            raise SystemExit(f"page {page} raised: {at.exception[0].message}")
        start = time.perf_counter()
        at.run()
        warm = time.perf_counter() - start
        # A page that only rendered an error message was fast for the wrong reason: count it.
        results[page] = {"cold_s": round(cold, 3), "warm_s": round(warm, 3), "errors": len(at.error)}
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from medcore.workspace import get_workspace

    with tempfile.TemporaryDirectory() as tmp:
        empty = get_workspace(Path(tmp) / "empty")
        big = get_workspace(Path(tmp) / "big")
        start = time.perf_counter()
        write_runs(big, args.runs, args.rows)
        write_datasets(big)
        build_s = time.perf_counter() - start
        warmup_s = warm_up_process()
        baseline = time_pages(empty.root)
        pages = time_pages(big.root)
    worst = max(max(v["cold_s"], v["warm_s"]) for v in pages.values())
    errors = sum(v["errors"] for v in pages.values())
    report = {
        "bench": "console_page_load",
        "runs": args.runs,
        "metric_rows": args.rows,
        "workspace_build_s": round(build_s, 1),
        "process_warmup_s": round(warmup_s, 1),
        "budget_s": BUDGET_S,
        "pages": pages,
        "baseline": baseline,
        "max_s": round(worst, 3),
        "ok": worst < BUDGET_S and errors == 0,
    }
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
