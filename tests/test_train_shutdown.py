"""Two jobs in one process (a notebook, the test suite): the second must not reuse groups the first destroyed."""

from __future__ import annotations

import os

import pytest
import torch

from medcore.procs import free_port
from medcore.train.distributed import init_distributed, shutdown

RANK_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@pytest.fixture
def world_of_one(monkeypatch):
    for key in RANK_ENV:
        monkeypatch.delenv(key, raising=False)
    yield
    shutdown()
    for key in RANK_ENV:
        os.environ.pop(key, None)


def test_deepspeed_broadcasts_again_after_a_shutdown(world_of_one, monkeypatch):
    from deepspeed.utils import groups

    for attempt in range(2):
        monkeypatch.setenv("MASTER_PORT", str(free_port()))
        for key, value in zip(RANK_ENV[:4], ("0", "1", "0", "127.0.0.1"), strict=True):
            monkeypatch.setenv(key, value)
        init_distributed(timeout_s=30)
        # What deepspeed.initialize does first: broadcast from the data-parallel group's rank 0 (its cached clone).
        assert groups._get_broadcast_src_rank() == 0, f"attempt {attempt}"
        tensor = torch.ones(1)
        torch.distributed.broadcast(tensor, groups._get_broadcast_src_rank(), group=groups._get_data_parallel_group())
        shutdown()
        assert not torch.distributed.is_initialized()
