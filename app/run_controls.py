"""The Runs page's controls of a running job (save and stop, checkpoint now): one audited engine call each."""

from __future__ import annotations

import services


def stop_run(run_id: str):
    """Save a checkpoint, then stop (medcore.jobs.stop_run); returns at once, the page polls the state."""
    from medcore.jobs import stop_run as stop

    info = stop(run_id, services.workspace(), actor=services.actor())  # checked and audited in the engine
    services.refresh_runs()
    return info


def checkpoint_now(run_id: str) -> None:
    """Ask the running trainer to save a checkpoint at its next step and keep training."""
    from medcore.jobs import checkpoint_now as checkpoint

    checkpoint(run_id, services.workspace(), actor=services.actor())
