"""medcore.jobs.diagnose: failure logs -> reason and hint, root cause first, no patient text copied."""

from __future__ import annotations

import pytest

from medcore.jobs.diagnose import PATTERNS, diagnose_log, diagnose_text

# The shape torchrun prints when a rank dies (torch.distributed.elastic ChildFailedError summary).
TORCHRUN_SIGKILL = """\
[rank0]: Traceback (most recent call last):
[rank0]: RuntimeError: [../third_party/gloo/gloo/transport/tcp/pair.cc:534] Connection closed by peer [127.0.0.1]:4242
E0101 12:00:00.000000 123 torch/distributed/elastic/multiprocessing/api.py:882] failed (exitcode: -9)
Traceback (most recent call last):
torch.distributed.elastic.multiprocessing.errors.ChildFailedError:
============================================================
medcore.train FAILED
------------------------------------------------------------
Root Cause (first observed failure):
[0]:
  time      : 2026-01-01_12:00:00
  host      : vm
  rank      : 1 (local_rank: 1)
  exitcode  : -9 (pid: 4242)
  error_file: <N/A>
  traceback : Signal 9 (SIGKILL) received by PID 4242
============================================================
"""


@pytest.mark.parametrize(
    ("log", "pattern", "in_reason", "in_hint"),
    [
        ("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB", "gpu_oom", "GPU memory", "ZeRO-3"),
        (
            "RuntimeError: [enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory: you tried "
            "to allocate 1073741824 bytes.",
            "host_oom",
            "host (CPU) memory",
            "gradient checkpointing",
        ),
        (
            "medcore.errors.MedcoreError: Column 'note' not found in train.parquet; columns are: id, text",
            "missing_column",
            "no column 'note'",
            "mapping",
        ),
        (
            "[E ProcessGroupNCCL.cpp:475] Watchdog caught collective operation timeout: WorkNCCL(SeqNum=12)",
            "nccl_timeout",
            "NCCL",
            "NCCL_SOCKET_IFNAME",
        ),
        (
            "torch.distributed.elastic.rendezvous.api.RendezvousTimeoutError",
            "rendezvous_timeout",
            "rendezvous",
            "HOST:PORT",
        ),
        (
            "torch.distributed.DistNetworkError: The server socket has failed to listen on any local network address. "
            "port: 29500, useIpv6: false, code: -98, name: EADDRINUSE, message: address already in use",
            "port_in_use",
            "already in use",
            "free one",
        ),
        ("OSError: [Errno 28] No space left on device", "disk_full", "full", "fewer checkpoints"),
        (TORCHRUN_SIGKILL, "rank_killed", "Rank 1 was killed by signal SIGKILL", "dmesg"),
        ("RuntimeError: Connection reset by peer", "peer_lost", "lost its connection", "first failing rank"),
        (
            "medcore.errors.MedcoreError: Dataset 'notes' has not passed PHI redaction.",
            "medcore_error",
            "has not passed PHI redaction",
            "Fix what the message names",
        ),
    ],
)
def test_known_failures_give_reason_and_hint(log, pattern, in_reason, in_hint):
    diag = diagnose_text(log, exit_code=1)
    assert diag.pattern == pattern
    assert in_reason in diag.reason
    assert in_hint in diag.hint


def test_root_cause_outranks_its_consequences():
    # A SIGKILLed rank breaks its peer's gloo connection; the kill is the cause, the peer error the effect.
    assert "Connection closed by peer" in TORCHRUN_SIGKILL
    assert diagnose_text(TORCHRUN_SIGKILL).pattern == "rank_killed"
    # An OOM that also leaves a killed rank is reported as the OOM.
    assert diagnose_text("CUDA out of memory.\n" + TORCHRUN_SIGKILL).pattern == "gpu_oom"


def test_unknown_exception_names_its_type_but_never_copies_its_message():
    # Messages of arbitrary exceptions may quote data (a note, a name); only the type is safe to store.
    log = (
        "[rank0]: Traceback (most recent call last):\n"
        "[rank0]: ValueError: could not convert string to float: 'Mrs Jane Canary, MRN 99887766'\n"
        "torch.distributed.elastic.multiprocessing.errors.ChildFailedError: \n"
    )
    diag = diagnose_text(log, exit_code=1)
    assert diag.pattern == "python_error"
    assert "ValueError" in diag.reason
    assert "Canary" not in diag.reason and "99887766" not in diag.reason + diag.hint
    assert "ChildFailedError" not in diag.reason


def test_fallbacks_use_the_exit_code():
    assert diagnose_text("", exit_code=-15).reason == "The job was killed by signal SIGTERM."
    assert diagnose_text("all good until here", exit_code=3).reason == "The job exited with code 3."
    assert diagnose_text("", exit_code=None).pattern == "vanished"


def test_every_pattern_has_a_reason_and_a_hint_and_a_unique_name():
    names = [p.name for p in PATTERNS]
    assert len(names) == len(set(names))
    assert all(p.reason and p.hint.endswith(".") for p in PATTERNS)


def test_only_the_log_tail_is_read(tmp_path):
    log = tmp_path / "train.log"
    # An old OOM far back (beyond the tail) must not be blamed for today's failure.
    log.write_text("CUDA out of memory\n" + "x" * 200_000 + "\nOSError: [Errno 28] No space left on device\n")
    assert diagnose_log(log, 1).pattern == "disk_full"
    assert diagnose_log(tmp_path / "missing.log", None).pattern == "vanished"


# Rank 1 hit a read-only run folder; torchrun then SIGTERMed rank 0, which its summary lists first.
TORCHRUN_READ_ONLY = """\
[medcore.jobs 12:00:00] slot 0 free; starting job: python -m torch.distributed.run ...
Traceback (most recent call last):
  File "medcore/rundir.py", line 70, in update_status
OSError: [Errno 30] Read-only file system: '/ws/runs/r1/.status.json.4243.tmp'
[medcore.train rank 1] error: OSError raised at medcore/rundir.py:70 on rank 1.
W0101 12:00:01.000000 123 torch/distributed/elastic/multiprocessing/api.py:900] Sending process 4242 closing signal SIGTERM
torch.distributed.elastic.multiprocessing.errors.ChildFailedError:
============================================================
medcore.train FAILED
------------------------------------------------------------
Failures:
[1]:
  time      : 2026-01-01_12:00:01
  host      : vm
  rank      : 0 (local_rank: 0)
  exitcode  : -15 (pid: 4242)
  error_file: <N/A>
  traceback : Signal 15 (SIGTERM) received by PID 4242
------------------------------------------------------------
Root Cause (first observed failure):
[0]:
  time      : 2026-01-01_12:00:00
  host      : vm
  rank      : 1 (local_rank: 1)
  exitcode  : 1 (pid: 4243)
  error_file: <N/A>
  traceback : To enable traceback see: https://pytorch.org/docs/stable/elastic/errors.html
============================================================
"""


def test_a_signal_torchrun_sent_the_survivors_never_outranks_the_real_error():
    diag = diagnose_text(TORCHRUN_READ_ONLY, exit_code=1)
    assert diag.pattern == "read_only" and "read-only" in diag.reason and "memory" not in diag.hint
    # Whatever the first rank died of, the survivors' SIGTERM is not "killed": the rank's own error is named.
    other = TORCHRUN_READ_ONLY.replace("OSError: [Errno 30] Read-only file system", "ValueError: bad value")
    assert diagnose_text(other, exit_code=1).reason == "The trainer raised ValueError (the message is in train.log)."
    # A root cause that was itself a polite signal names who may have sent it, without an out-of-memory guess.
    outside = TORCHRUN_SIGKILL.replace("exitcode  : -9", "exitcode  : -15")
    diag = diagnose_text(outside, exit_code=1)
    assert diag.pattern == "rank_signalled" and "SIGTERM" in diag.reason and "memory" not in diag.hint


def test_the_earliest_root_cause_wins_and_only_the_latest_attempt_counts():
    # The disk filled first; the NCCL timeout on the other rank followed from it.
    log = "OSError: [Errno 28] No space left on device\n[E ProcessGroupNCCL.cpp:475] Watchdog caught collective " \
          "operation timeout\n"  # fmt: skip
    assert diagnose_text(log).pattern == "disk_full"
    # An attempt that ran out of memory was resumed; today's failure is the killed rank, not that old OOM.
    resumed = (
        "CUDA out of memory\n[medcore.jobs 12:00:00] slot 0 free; starting job: torchrun ...\n" + TORCHRUN_SIGKILL
    )
    assert diagnose_text(resumed).pattern == "rank_killed"
