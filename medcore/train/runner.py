"""One training run top to bottom on every rank: set up, resume, step loop, eval, checkpoint, stop or finish."""

from __future__ import annotations

import contextlib
import json
import os
import resource
import sys
import time

from medcore.fileio import write_bytes_atomic
from medcore.rundir import RunDir
from medcore.token_windows import TAG_FILE, TagFile, default_stride
from medcore.train import checkpoint as ckpt
from medcore.train.distributed import DistContext, all_reduce_sum, barrier
from medcore.train.loop import (
    STATUS_EVERY_S,
    STEP_DELAY_ENV,
    Job,
    build_engine,
    build_model,
    engine_config,
    evaluate,
    install_signal_handlers,
    prepare_job,
    train_step,
)
from medcore.train.metrics import MetricsWriter, improved, peak_mem_mb
from medcore.train.trackers import open_trackers


def resume_from_checkpoint(job: Job) -> int:
    """Load the newest checkpoint; returns the step to continue from (0 when there is none)."""
    latest = job.rd.latest_checkpoint()
    if latest is None:
        if job.ctx.is_main:
            print("[medcore.train] --resume: no checkpoint yet, starting from step 0", file=sys.stderr, flush=True)
        return 0
    job.state.update(ckpt.load_checkpoint(job.engine, job.ctx, latest))
    step = int(job.state["step"])
    if job.ctx.is_main:
        trim_metrics(job.rd, step)
        print(f"[medcore.train] resumed from {latest.name} at step {step}", file=sys.stderr, flush=True)
    return step


def trim_metrics(rd: RunDir, step: int) -> None:
    """Drop metrics lines past the resumed step (the killed attempt's), so each step appears once; a line the kill
    tore in half is dropped too."""
    if not rd.metrics.exists():
        return
    kept = []
    for line in rd.metrics.read_text(errors="replace").splitlines():
        with contextlib.suppress(ValueError, AttributeError):
            kept += [line] if json.loads(line).get("step", 0) <= step else []
    write_bytes_atomic(rd.metrics, "".join(line + "\n" for line in kept).encode())


def save(job: Job, step: int) -> str:
    # A checkpoint request is taken before the save starts: one made during the save gets a save of its own, and no
    # one sees the new checkpoint while the request that asked for it still stands.
    if job.ctx.is_main:
        job.rd.checkpoint_trigger.unlink(missing_ok=True)
    path = ckpt.save_checkpoint(job.engine, job.ctx, job.rd, step, job.state, job.spec.keep_last_k)
    job.state["last_checkpoint"] = str(path)
    if job.ctx.is_main:
        job.rd.update_status(last_checkpoint=str(path), step=step)
    return str(path)


def record_eval(job: Job, step: int, record: dict) -> bool:
    """Evaluate into `record`; True when early stopping says stop."""
    record.update(evaluate(job))
    metric = job.spec.early_stopping_metric
    if not metric:
        return False
    if improved(metric, record[metric], job.state["best"]):
        job.state.update(best=record[metric], bad_evals=0)
        return False
    job.state["bad_evals"] += 1
    return job.state["bad_evals"] >= job.spec.early_stopping_patience


def log_step(job: Job, step: int, out: dict, step_time: float, record: dict) -> None:
    lr = job.engine.get_lr()[0]
    epoch = step / job.plan.steps_per_epoch
    record.update(
        step=step,
        epoch=round(epoch, 4),
        loss=out["loss"],
        lr=lr,
        grad_norm=out["grad_norm"],
        tokens_per_s=out["tokens"] / step_time,
        samples_per_s=out["samples"] / step_time,
        step_time_s=step_time,
        peak_mem_mb=peak_mem_mb(job.ctx.device),
    )


def run_steps(job: Job, start: int, progress) -> tuple[str, int]:
    """The step loop. Returns why it ended (completed, stopped on a signal, early_stopped) and the last step."""
    spec, is_main = job.spec, job.ctx.is_main
    delay = float(os.environ.get(STEP_DELAY_ENV) or 0)
    last_status = 0.0
    for step in range(start + 1, job.total_steps + 1):
        began = time.perf_counter()
        out = train_step(job, step - 1)
        record: dict = {}
        log_step(job, step, out, time.perf_counter() - began, record)
        stop_early = False
        if spec.eval_interval and step % spec.eval_interval == 0 and job.eval_units:
            stop_early = record_eval(job, step, record)
        if out["checkpoint_now"] or (spec.save_interval and step % spec.save_interval == 0):
            save(job, step)
        if is_main and (step % spec.log_interval == 0 or "eval_loss" in record):
            job.metrics.write(record)
        if is_main:
            progress.update(1)
            progress.set_postfix(loss=f"{out['loss']:.4f}", refresh=False)
            if time.time() - last_status > STATUS_EVERY_S or step == job.total_steps:
                job.rd.update_status(state="running", step=step, max_steps=job.total_steps, epoch=record["epoch"])
                last_status = time.time()
        if out["stop"]:
            if not (spec.save_interval and step % spec.save_interval == 0) and not out["checkpoint_now"]:
                save(job, step)
            return "stopped", step
        if stop_early:
            job.state["early_stopped"] = True
            return "early_stopped", step
        if delay:
            time.sleep(delay)
    return "completed", job.total_steps


def finish(job: Job, step: int) -> None:
    """Final eval (unless just done), the adapter, the optional merged export, and state completed."""
    from medcore.models import resolve_model_path

    if job.eval_units and not (job.spec.eval_interval and step % job.spec.eval_interval == 0):
        record = {"step": step, "epoch": round(step / job.plan.steps_per_epoch, 4)}
        record.update(evaluate(job))
        if job.ctx.is_main:
            job.metrics.write(record)
    target = job.rd.adapter if job.spec.lora != "full" else job.rd.path / "model"
    extra = None
    if job.spec.task == "token-classification":
        tags = TagFile(job.label_set, job.spec.max_length, default_stride(job.spec.max_length))
        extra = {TAG_FILE: tags.as_json()}  # inference rebuilds the head and the windows from it
    ckpt.save_adapter(job.engine, job.ctx, target, job.tokenizer, extra_json=extra)
    if job.ctx.is_main and job.spec.export_merged and job.spec.lora != "full":
        id2label = dict(enumerate(job.label_set))
        kwargs = {"id2label": id2label, "label2id": {v: k for k, v in id2label.items()}} if job.label_set else {}
        source = resolve_model_path(job.spec.model, job.ws)
        ckpt.export_merged(job.rd.adapter, source, job.spec.task, job.rd.path / "merged", kwargs)
    barrier()
    if job.ctx.is_main:
        job.rd.update_status(
            state="completed",
            step=step,
            max_steps=job.total_steps,
            error=None,
            hint=None,
            early_stopped=job.state["early_stopped"],
            adapter=str(target),
            last_checkpoint=job.state.get("last_checkpoint"),
        )


def host_peak_mb() -> float:
    """This process's peak resident memory so far, in MB (ru_maxrss is KiB on Linux): host RAM even on GPU runs."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def report_load_memory(ctx: DistContext, grown_mb: float) -> None:
    """Log how far each rank's peak host memory rose while loading the model and handing it to DeepSpeed (what the
    memory estimate's loading figure predicts), one figure per rank, so a rank that held the whole model shows."""
    by_rank = [0.0] * ctx.world_size
    by_rank[ctx.rank] = grown_mb
    by_rank = all_reduce_sum(by_rank, ctx)
    if ctx.is_main:
        figures = ", ".join(f"{mb:.0f}" for mb in by_rank)
        print(
            f"[medcore.train] model load and engine set-up: peak host MB rose by {figures} (by rank)",
            file=sys.stderr,
            flush=True,
        )


def run_training(rd: RunDir, ctx: DistContext, resume: bool) -> int:
    """Set up, (resume,) train, then finish or save-and-stop. Exit code 0 in both cases."""
    from tqdm import tqdm

    began = time.perf_counter()
    job = prepare_job(rd, ctx)
    install_signal_handlers(job)
    data_s = time.perf_counter() - began
    rss_before = host_peak_mb()
    model = build_model(job.spec, job.ws, job.label_set, engine_config(job))
    model_s = time.perf_counter() - began - data_s
    build_engine(job, model)
    report_load_memory(ctx, host_peak_mb() - rss_before)
    start = resume_from_checkpoint(job) if (resume or job.spec.resume) else 0
    if ctx.is_main:
        print(
            f"[medcore.train] world {ctx.world_size}, {job.total_steps} steps; set-up {time.perf_counter() - began:.1f}s "
            f"(data {data_s:.1f}s, model {model_s:.1f}s)",
            file=sys.stderr,
            flush=True,
        )
    trackers = None
    if ctx.is_main and job.spec.report_to:  # rank 0 only, like metrics.jsonl
        trackers = open_trackers(job.spec.report_to, rd.path, rd.run_id, job.spec.model_dump(mode="json"))
    job.metrics = MetricsWriter(rd.metrics, enabled=ctx.is_main, trackers=trackers)
    if ctx.is_main:
        rd.update_status(
            state="running",
            step=start,
            max_steps=job.total_steps,
            world_size=ctx.world_size,
            error=None,
            hint=None,
            pid=os.getpid(),
            started_at=time.time(),
        )
    progress = tqdm(
        total=job.total_steps, initial=start, disable=not ctx.is_main, file=sys.stderr, mininterval=1.0, desc="train"
    )
    try:
        outcome, step = run_steps(job, start, progress)
    finally:
        progress.close()
    if outcome == "stopped":
        if ctx.is_main:
            rd.update_status(
                state="stopped",
                step=step,  # the last status write may be a second (several steps) old
                error=None,
                hint=f"Saved on request. Resume with `medcore runs resume {rd.run_id}`.",
            )
    else:
        finish(job, step)
    job.metrics.close()
    return 0
