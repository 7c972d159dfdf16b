"""Create a generated launch's run folder where the job runs, once, before torchrun starts (first node only).

    python -m medcore.cluster.prepare RUN_ID --spec '{"dataset": "notes", ...}' [--rdzv-endpoint HOST:PORT]

The launch files of `medcore launch` carry the run spec and the run id and run this first: on the SLURM allocation's
first node, in the Kubernetes master pod's init container, or on node 0 of a local launch. The spec is checked
against the workspace there ($MEDCORE_HOME: the dataset, the model, the GPUs that node sees), and device and
precision are resolved on that hardware, not on the machine that generated the file. A run folder that already
holds a spec is left as it is: a requeued SLURM job or a restarted pod continues it (`--resume`). Other nodes need
no run folder of their own: their trainers start only once this node has joined the rendezvous.
"""

from __future__ import annotations

import argparse
import json
import sys

from medcore.errors import MedcoreError
from medcore.rundir import RunDir
from medcore.train import load_spec, prepare_run_dir, validate_spec
from medcore.workspace import Workspace, get_workspace


def prepare_job_run(run_id: str, spec_data: dict, ws: Workspace, rdzv_endpoint: str | None = None) -> RunDir:
    """The run folder runs/RUN_ID with spec.json and ds_config.json, created unless it exists already.

    Raises:
        MedcoreError: every problem with the spec against this workspace and machine, in one message.
    """
    rd = RunDir(ws.runs / run_id)
    if rd.spec.exists() and rd.ds_config.exists():
        return rd
    spec = load_spec(spec_data, {"rdzv_endpoint": rdzv_endpoint} if rdzv_endpoint else {})
    validate_spec(spec, ws)
    return prepare_run_dir(spec, ws, run_id)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m medcore.cluster.prepare", description=__doc__.splitlines()[0])
    parser.add_argument("run_id", help="The run id the launch file chose (the folder runs/RUN_ID).")
    parser.add_argument("--spec", required=True, help="The run spec as JSON (RunSpec fields).")
    parser.add_argument("--rdzv-endpoint", default=None, help="HOST:PORT of the rendezvous, for several nodes.")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        spec_data = json.loads(args.spec)
    except json.JSONDecodeError:
        spec_data = None
    if not isinstance(spec_data, dict):
        print("error: --spec is not a JSON object of run spec fields; regenerate the launch file.", file=sys.stderr)
        return 2
    ws = get_workspace()
    existed = RunDir(ws.runs / args.run_id).spec.exists()
    try:
        rd = prepare_job_run(args.run_id, spec_data, ws, args.rdzv_endpoint)
    except MedcoreError as exc:
        print(f"error: run {args.run_id}: {exc}", file=sys.stderr)
        return 1
    print(
        f"[medcore.cluster.prepare] run folder {rd.path} {'kept (continuing)' if existed else 'created'}", flush=True
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
