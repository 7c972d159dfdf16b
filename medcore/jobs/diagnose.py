"""Why a job failed: known patterns in the log tail -> a PHI-free reason and a next step (hint)."""

from __future__ import annotations

import re
import signal
from dataclasses import dataclass
from pathlib import Path

# Enough for torchrun's failure summary plus the last tracebacks of every rank.
TAIL_BYTES = 64 * 1024

HINT_OOM = (
    "Lower micro_batch_size (keep the global batch with more gradient accumulation), use ZeRO-3, "
    "turn on CPU offload, or enable gradient checkpointing; shorter max_length helps too."
)
HINT_RENDEZVOUS = (
    "Check the rendezvous endpoint: every node must reach HOST:PORT of node 0 (same address and port, "
    "firewall open), nnodes must match the number of nodes started, and node 0 must be up first."
)
HINT_NCCL = (
    "Check the network settings: NCCL_SOCKET_IFNAME (the interface the nodes share), NCCL_IB_DISABLE=1 "
    "without InfiniBand, run with NCCL_DEBUG=INFO, and make sure no rank is stuck or much slower than the others."
)
HINT_COLUMN = "Fix the column mapping of the dataset (text and label columns) or re-import it with `medcore data`."
RESUME_TAIL = "resume from the newest checkpoint with `medcore runs resume RUN_ID`."
HINT_RESUME = RESUME_TAIL[0].upper() + RESUME_TAIL[1:]


@dataclass(frozen=True)
class Pattern:
    """One known failure: `regex` searched in the log tail; `reason` is formatted with its named groups."""

    name: str
    regex: re.Pattern
    reason: str
    hint: str


def _p(name: str, regex: str, reason: str, hint: str) -> Pattern:
    return Pattern(name, re.compile(regex, re.MULTILINE), reason, hint)


# torchrun's failure summary: "Root Cause (first observed failure):" then the first failed rank and its exit code.
ROOT_CAUSE_RANK = (
    r"Root Cause \(first observed failure\):\s*\n(?:[^\n]*\n){0,4}?\s*rank\s*:\s*(?P<rank>\d+)[^\n]*\n"
    r"\s*exitcode\s*:\s*"
)
# Written by the launcher (supervisor or foreground `medcore train`) as each attempt starts: a diagnosis reads only the
# log of the latest attempt, never an error a resumed run already got past.
ATTEMPT_MARK = "starting job: "

# Order matters: root causes before their consequences (an OOM-killed rank also breaks its peers'
# connections, so "out of memory" and "killed by signal" outrank "connection closed by peer").
# Reasons only quote what is safe to store: schema names, signal numbers, MedCore's own messages
# (which never hold patient text). Arbitrary exception messages are never copied.
PATTERNS: tuple[Pattern, ...] = (
    _p(
        "gpu_oom",
        r"CUDA out of memory|torch\.OutOfMemoryError|CUBLAS_STATUS_ALLOC_FAILED|HIP out of memory",
        "A rank ran out of GPU memory.",
        HINT_OOM,
    ),
    _p(
        "host_oom",
        r"DefaultCPUAllocator: can't allocate memory|std::bad_alloc|^MemoryError|Cannot allocate memory",
        "A rank ran out of host (CPU) memory.",
        HINT_OOM,
    ),
    _p(
        "missing_column",
        r"[Cc]olumn '(?P<column>[^'\n]{1,80})' (?:not found|is missing|does not exist)",
        "The dataset has no column '{column}'.",
        HINT_COLUMN,
    ),
    _p(
        "nccl_timeout",
        r"Watchdog caught collective operation timeout|NCCL[^\n]*[Tt]ime(?:d )?out|ProcessGroupNCCL[^\n]*timed out",
        "A collective operation timed out (NCCL).",
        HINT_NCCL,
    ),
    _p(
        "rendezvous_timeout",
        r"RendezvousTimeoutError|RendezvousConnectionError|The client socket has timed out"
        r"|DistNetworkError[^\n]*(?:timed out|[Cc]onnection refused)|[Rr]endezvous[^\n]*timed out",
        "The ranks could not meet at the rendezvous endpoint.",
        HINT_RENDEZVOUS,
    ),
    _p(
        "port_in_use",
        r"EADDRINUSE|[Aa]ddress already in use",
        "The rendezvous port is already in use.",
        "Pick another port, or leave the port empty so MedCore chooses a free one.",
    ),
    _p(
        "disk_full",
        r"No space left on device|Disk quota exceeded",
        "The disk holding the run folder is full.",
        "Free disk space or keep fewer checkpoints (the spec's keep_last_k), then resume.",
    ),
    _p(
        "read_only",
        r"Read-only file system|\[Errno 30\]",
        "The run folder is on a read-only filesystem: the job could not write its checkpoints, metrics or status.",
        "Make the run folder writable again (check the mount: `mount | grep <folder>`; a disk error can remount it "
        "read-only, see `dmesg`), then " + RESUME_TAIL,
    ),
    # Only torchrun's root cause (the first rank to fail), and only a signal nobody polite sends: once one rank fails,
    # torchrun SIGTERMs the survivors, and those -15s are consequences, never the cause.
    _p(
        "rank_killed",
        ROOT_CAUSE_RANK + r"-(?P<sig>(?!(?:1|2|15)\b)\d+)",
        "Rank {rank} was killed by signal {signal_name}.",
        "SIGKILL without a traceback is usually the kernel's out-of-memory killer (see `dmesg`) or a scheduler "
        "limit; " + RESUME_TAIL,
    ),
    _p(
        "rank_signalled",
        ROOT_CAUSE_RANK + r"-(?P<sig>1|2|15)\b",
        "Rank {rank} was stopped by signal {signal_name} from outside the job.",
        "Something other than MedCore stopped it (a closed terminal, `kill`, a scheduler or a shutdown); "
        + RESUME_TAIL,
    ),
    _p(
        "peer_lost",
        r"Connection closed by peer|Connection reset by peer|[Gg]loo[^\n]*(?:[Tt]imed out|[Tt]imeout)",
        "A rank lost its connection to a peer: another rank died or the network dropped.",
        "Look for the first failing rank in train.log; " + RESUME_TAIL,
    ),
    _p(
        "medcore_error",
        r"MedcoreError: (?P<message>[^\n]{1,400})",
        "{message}",
        "Fix what the message names, then launch again.",
    ),
    _p(
        "python_error",
        # torchrun always ends with its own ChildFailedError; the rank's exception is the one wanted.
        r"^(?:\[(?:rank|default)\d+\]:\s*)?(?P<exc>(?!\S*ChildFailedError)(?:[A-Za-z_]\w*\.)*[A-Za-z_]\w*(?:Error|Exception)): ",
        "The trainer raised {exc} (the message is in train.log).",
        "Read the traceback at the end of train.log (`medcore runs logs RUN_ID --tail 50`).",
    ),
)


@dataclass(frozen=True)
class Diagnosis:
    """What went wrong (`reason`), what to do (`hint`), and which pattern said so (`pattern`)."""

    reason: str
    hint: str
    pattern: str


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"#{number}"


def _format(pattern: Pattern, match: re.Match) -> str:
    fields = {key: (value or "").strip() for key, value in match.groupdict().items()}
    if "sig" in fields:
        fields["signal_name"] = _signal_name(int(fields["sig"]))
    return pattern.reason.format(**fields)


# Failures that cause others rather than follow from them; the earliest in the log is the root cause.
ROOT_CAUSES = ("gpu_oom", "host_oom", "disk_full", "read_only", "rank_killed", "nccl_timeout", "rendezvous_timeout",
               "port_in_use")  # fmt: skip


def diagnose_text(text: str, exit_code: int | None = None) -> Diagnosis:
    """The root cause that appears first in the latest attempt's log; else the first other known pattern (table
    order); else a reason from the exit code."""
    text = text[text.rfind(ATTEMPT_MARK) + 1 :] if ATTEMPT_MARK in text else text
    causes = [(m.start(), p, m) for p in PATTERNS if p.name in ROOT_CAUSES and (m := p.regex.search(text))]
    if causes:
        _, pattern, match = min(causes, key=lambda c: c[0])
        return Diagnosis(_format(pattern, match), pattern.hint, pattern.name)
    for pattern in PATTERNS:
        # python_error: the last exception raised is the most specific one.
        matches = list(pattern.regex.finditer(text))
        if matches:
            return Diagnosis(_format(pattern, matches[-1]), pattern.hint, pattern.name)
    if exit_code is not None and exit_code < 0:
        return Diagnosis(
            f"The job was killed by signal {_signal_name(-exit_code)}.",
            "If nobody cancelled it, the machine may be out of memory (see `dmesg`); " + RESUME_TAIL,
            "launcher_killed",
        )
    if exit_code is None:
        return Diagnosis(
            "The job's processes are gone and none of them recorded a final state.",
            "The machine may have rebooted or the processes were killed; " + RESUME_TAIL,
            "vanished",
        )
    return Diagnosis(
        f"The job exited with code {exit_code}.",
        "Read the end of train.log (`medcore runs logs RUN_ID --tail 50`).",
        "exit_code",
    )


def read_tail(path: Path, max_bytes: int = TAIL_BYTES) -> str:
    """The last `max_bytes` of a file as text ('' when it does not exist)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, 2)
            size = fh.tell()
            fh.seek(max(0, size - max_bytes))
            return fh.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return ""


def diagnose_log(path: Path, exit_code: int | None = None) -> Diagnosis:
    """Diagnose a run from the tail of its log file."""
    return diagnose_text(read_tail(path), exit_code)
