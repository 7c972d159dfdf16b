"""Build DeepSpeed's C++ ops ahead of the first run, so no rank compiles them while the others wait.

On the CPU accelerator DeepSpeed compiles two ops with gcc the first time they are used: the shared-memory
all-reduce (every DeepSpeed run) and CPU Adam (any preset that offloads the optimizer, such as multi_node).
On a 2-core machine that is about 30 s and 45 s inside a launched job, under torchrun's timeouts, in front of a
user watching a run that shows no step. `make install` calls this module once; the builds land in torch's
extension cache (TORCH_EXTENSIONS_DIR, else ~/.cache/torch_extensions), where every later run finds them.
If a build fails here the run still works: DeepSpeed tries again when the op is first needed.

Every process that may build an op first puts its own interpreter's folder first on PATH
(`prefer_this_environments_tools`): torch runs whichever `ninja` PATH finds, and the venv's (pip) ninja and the
system's log build commands differently, so a run started from an activated venv and one started by the console
each took the other's build for out of date and compiled it again, 25 to 45 s every time.

    python -m medcore.deepspeed_ops          # build what this machine's accelerator uses
    python -m medcore.deepspeed_ops --check  # say which are built; exit 1 when one is missing
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

# DeepSpeed builder class -> the extension name it compiles under. On CUDA, NCCL replaces the shm op.
CPU_OPS = {"ShareMemCommBuilder": "deepspeed_shm_comm", "CPUAdamBuilder": "cpu_adam"}


def prefer_this_environments_tools() -> None:
    """Put this interpreter's bin folder first on PATH (as activating the venv does), so `ninja` is always the same."""
    bin_dir = str(Path(sys.executable).parent)
    rest = [part for part in os.environ.get("PATH", "").split(os.pathsep) if part and part != bin_dir]
    os.environ["PATH"] = os.pathsep.join([bin_dir, *rest])


def extensions_root() -> Path:
    """Where torch keeps JIT-built extensions (below the default root it adds a py<version>_<device> folder)."""
    from torch.utils.cpp_extension import get_default_build_root

    return Path(os.environ.get("TORCH_EXTENSIONS_DIR") or get_default_build_root())


def wanted_ops() -> dict[str, str]:
    """The ops DeepSpeed would JIT-build for this machine's accelerator: the CPU ones when no GPU is in use."""
    from deepspeed.accelerator import get_accelerator

    return CPU_OPS if get_accelerator().device_name() == "cpu" else {}


def missing_ops(root: Path | None = None) -> list[str]:
    """Extension names wanted here but not in the build cache (a check only: creates nothing)."""
    root = root or extensions_root()
    patterns = ("{0}/{0}.so", "*/{0}/{0}.so")  # TORCH_EXTENSIONS_DIR holds the ops directly
    return [name for name in wanted_ops().values() if not any(any(root.glob(p.format(name))) for p in patterns)]


def build_ops(log: Callable[[str], None] = print) -> None:
    """Build each wanted op, or let ninja confirm the cached build is current (a few ms). A failure is logged, not
    raised: the run that needs the op builds it again and reports the cause in context."""
    from deepspeed.accelerator import get_accelerator

    prefer_this_environments_tools()
    accelerator = get_accelerator()
    for builder_name, name in wanted_ops().items():
        builder = accelerator.create_op_builder(builder_name)
        if builder is None or not builder.is_compatible(verbose=False):
            log(f"deepspeed op {name}: not buildable on this machine; runs that need it will say why")
            continue
        started = time.monotonic()
        try:
            builder.load(verbose=False)
        except Exception as exc:  # a missing compiler raises many kinds
            log(f"deepspeed op {name}: build failed ({type(exc).__name__}: {exc}); the first run will try again")
            continue
        log(f"deepspeed op {name}: ready ({time.monotonic() - started:.0f} s)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="Only say which ops are missing; build nothing.")
    args = parser.parse_args(argv)
    if args.check:
        missing = missing_ops()
        print(f"missing: {', '.join(missing)}" if missing else "all built")
        return 1 if missing else 0
    build_ops()
    return 0  # a failed build is not an install failure: DeepSpeed builds on first use as before


if __name__ == "__main__":
    sys.exit(main())
