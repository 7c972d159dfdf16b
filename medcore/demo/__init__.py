"""The deterministic synthetic demo workspace: clinical notes with gold PHI spans, labels, subgroups and QA.

    from medcore.demo import build_demo_workspace
    summary = build_demo_workspace(get_workspace(), seed=0, n_notes=2000)

`medcore demo` (medcore.commands.demo) is the command-line entry point.
"""

from medcore.demo.build import build_demo_workspace

__all__ = ["build_demo_workspace"]
