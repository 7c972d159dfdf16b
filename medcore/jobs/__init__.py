"""Training jobs as detached process groups whose state lives in the run folder (launch, queue, watch, resume)."""

from medcore.jobs.runs import (
    cancel_run,
    checkpoint_now,
    follow_logs,
    launch_run,
    list_runs,
    read_logs,
    resume_run,
    run_status,
    stop_run,
    submit_command,
)
from medcore.jobs.state import RunInfo

__all__ = [
    "RunInfo",
    "cancel_run",
    "checkpoint_now",
    "follow_logs",
    "launch_run",
    "list_runs",
    "read_logs",
    "resume_run",
    "run_status",
    "stop_run",
    "submit_command",
]
