"""GPUs from one ledger under the queue's lock: a job gets n devices no live job holds or waits; jobs of different
sizes never share a device; devices come back when the job ends, however it ends. Fake device counts, no GPU."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading

import pytest

from medcore.errors import MedcoreError
from medcore.jobs import queue

K = 8  # slots are not the limit here: the devices are


def test_jobs_of_different_sizes_get_disjoint_devices_or_wait(workspace):
    one = queue.try_slot(workspace, K, gpus=1, device_count=4)
    two = queue.try_slot(workspace, K, gpus=2, device_count=4)
    assert (one.devices, two.devices) == ((0,), (1, 2))
    assert queue.try_slot(workspace, K, gpus=2, device_count=4) is None  # one device left: wait, holding nothing
    three = queue.try_slot(workspace, K, gpus=1, device_count=4)
    assert three.devices == (3,)
    assert queue.busy_slots(workspace, K) == 3
    two.release()
    four = queue.try_slot(workspace, K, gpus=2, device_count=4)
    assert four.devices == (1, 2) and four.index == two.index  # the released slot's devices, and its slot
    assert queue.held_gpus(workspace) == {0: one.index, 1: four.index, 2: four.index, 3: three.index}
    for slot in (one, three, four):
        slot.release()
    assert queue.held_gpus(workspace) == {}


def test_a_cpu_job_takes_a_slot_and_no_device(workspace):
    held = queue.try_slot(workspace, K, gpus=2, device_count=2)
    cpu = queue.try_slot(workspace, K)
    assert cpu is not None and cpu.devices == () and queue.held_gpus(workspace) == {0: held.index, 1: held.index}


def test_devices_come_back_when_the_job_is_killed(workspace):
    slot = queue.try_slot(workspace, K, gpus=2, device_count=2)
    # The job inherits the slot's lock (as torchrun does from the supervisor), then both ends of it go away.
    job = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], pass_fds=(slot.fd,))
    slot.release()
    assert queue.try_slot(workspace, K, gpus=1, device_count=2) is None  # the running job still holds both
    os.kill(job.pid, signal.SIGKILL)
    job.wait(timeout=10)
    again = queue.try_slot(workspace, K, gpus=2, device_count=2)
    assert again is not None and again.devices == (0, 1)


def test_a_waiting_job_starts_when_devices_free(workspace):
    ticket = queue.enqueue(workspace, "waiting")
    big = queue.try_slot(workspace, K, gpus=3, device_count=4)
    got = []
    waiter = threading.Thread(
        target=lambda: got.append(queue.wait_for_slot(workspace, ticket, K, lambda: False, gpus=2, device_count=4))
    )
    waiter.start()
    waiter.join(timeout=1.0)
    assert waiter.is_alive() and not got  # 1 of 4 free: it waits
    big.release()
    waiter.join(timeout=10)
    assert got and got[0].devices == (0, 1)


def test_fake_device_count_from_the_environment(workspace, monkeypatch):
    monkeypatch.setenv(queue.GPU_COUNT_ENV, "3")
    assert queue.count_gpus() == 3
    assert queue.try_slot(workspace, K, gpus=3).devices == (0, 1, 2)
    ticket = queue.enqueue(workspace, "too-big")
    with pytest.raises(MedcoreError, match="needs 4 GPUs but this machine has 3: set nproc_per_node=3 or fewer"):
        queue.wait_for_slot(workspace, ticket, K, lambda: False, gpus=4)
    monkeypatch.setenv(queue.GPU_COUNT_ENV, "two")
    with pytest.raises(MedcoreError, match="MEDCORE_GPU_COUNT='two' is not a whole number"):
        queue.count_gpus()


def test_the_supervisor_gives_a_job_the_devices_its_slot_holds(workspace, monkeypatch):
    """job_env sets CUDA_VISIBLE_DEVICES from the ledger's devices, not from the slot number."""
    from medcore.jobs.supervisor import job_env
    from medcore.rundir import RunDir

    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    first = queue.try_slot(workspace, K, gpus=1, device_count=4)
    second = queue.try_slot(workspace, K, gpus=2, device_count=4)  # slot 1: slot*n would have given devices 2,3
    rd = RunDir(workspace.runs / "r")
    assert job_env(rd, {"gpus_per_job": 2}, second, "tag")["CUDA_VISIBLE_DEVICES"] == "1,2"
    cpu = queue.try_slot(workspace, K)
    assert "CUDA_VISIBLE_DEVICES" not in job_env(rd, {"gpus_per_job": 0}, cpu, "tag")
    for slot in (first, second, cpu):
        slot.release()
