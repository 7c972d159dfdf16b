"""Train page: build a run spec (model, task, LoRA and ZeRO presets, hyper-parameters), estimate memory, launch."""

from typing import get_args

import components as ui
import services
import streamlit as st

from medcore.errors import MedcoreError
from medcore.models import REGISTRY_NAMES
from medcore.train.launch import join_commands, new_run_id
from medcore.train.spec import RunSpec

FIELDS = RunSpec.model_fields
LOCAL_FOLDER = "Local model folder..."
TASKS = list(get_args(FIELDS["task"].annotation))

st.title("Train")
st.caption("Fine-tune a model with LoRA under DeepSpeed on a redacted dataset; the run opens in Runs.")


def default(field: str):
    return FIELDS[field].default


def choose_data() -> dict:
    manifests = services.list_datasets()
    if not manifests:
        st.info("No datasets yet: import one on the Data page, then redact it on the PHI page.")
        st.page_link("views/data.py", label="Go to Data", icon=":material/upload_file:")
        st.stop()
    names = [m.name for m in manifests]
    preferred = st.session_state.get("phi_dataset")
    redacted = [m.name for m in manifests if m.redaction.status == "redacted"]
    index = names.index(preferred) if preferred in names else names.index(redacted[0]) if redacted else 0
    cols = st.columns(3)
    name = cols[0].selectbox("Dataset", names, index=index, key="train_dataset", help=FIELDS["dataset"].description)
    manifest = next(m for m in manifests if m.name == name)
    task_index = TASKS.index(manifest.task) if manifest.task in TASKS else 0
    task = cols[1].selectbox(
        "Task", TASKS, index=task_index, key=f"train_task_{name}", help=FIELDS["task"].description
    )
    model_choice = cols[2].selectbox(
        "Model", [*REGISTRY_NAMES, LOCAL_FOLDER], index=1 if task == "causal-lm" else 0, key=f"train_model_{task}"
    )
    model = model_choice
    if model_choice == LOCAL_FOLDER:
        model = st.text_input("Model folder", placeholder="/models/my-llama", key="train_model_path")
    weighting = "none"
    if task == "classification" and manifest.mapping.label:
        note = services.imbalance_note(services.label_counts(manifest))
        if note:
            st.warning(note, icon=":material/balance:")
        # Offered on every classification dataset, on by default where the labels are imbalanced.
        balanced = st.checkbox("Weigh classes by their rarity (balanced)", value=bool(note), key=f"train_weigh_{name}",
                               help=FIELDS["class_weighting"].description)  # fmt: skip
        weighting = "balanced" if balanced else "none"
    allow = False
    if manifest.redaction.status != "redacted":
        st.warning(
            f"'{name}' has not been through PHI redaction. Training refuses it unless you confirm it is already "
            "de-identified; that choice is written to the audit log.",
            icon=":material/gpp_maybe:",
        )
        allow = st.checkbox(
            ui.LABELS["allow_unredacted"],
            key="train_allow",
            help=FIELDS["allow_unredacted"].description,
        )
    return {"dataset": name, "task": task, "model": model, "allow_unredacted": allow, "class_weighting": weighting}


def choose_presets() -> dict:
    cols = st.columns(2)
    chosen = {}
    for col, kind, field in ((cols[0], "lora", "lora"), (cols[1], "zero", "zero")):
        presets = services.list_presets(kind)
        names = list(presets)
        start = names.index(default(field)) if default(field) in names else 0
        label = "LoRA preset" if kind == "lora" else "ZeRO preset"
        chosen[field] = col.selectbox(label, names, index=start, key=f"train_{kind}", help=FIELDS[field].description)
        col.caption(presets[chosen[field]])
    return chosen


def choose_topology(fields: dict) -> dict:
    cols = st.columns(3)
    nproc = cols[0].number_input(
        ui.LABELS["nproc_per_node"], value=1, step=1, key="train_nproc", help=FIELDS["nproc_per_node"].description
    )
    nnodes = cols[1].number_input("Nodes", value=1, step=1, key="train_nnodes", help=FIELDS["nnodes"].description)
    out = {"nproc_per_node": int(nproc), "nnodes": int(nnodes)}
    if nnodes > 1:
        out["rdzv_endpoint"] = cols[2].text_input(
            "Rendezvous HOST:PORT", key="train_rdzv", help=FIELDS["rdzv_endpoint"].description
        )
        if "train_run_id" not in st.session_state:  # chosen once: every node's command carries it
            st.session_state["train_run_id"] = new_run_id(services.build_spec(fields))
        out["run_id"] = st.text_input(ui.LABELS["run_id"], key="train_run_id",
                                      help=FIELDS["run_id"].description)  # fmt: skip
    return out


def show_other_nodes(spec) -> None:
    """What to run on the other nodes: Launch starts node 0 here, in this workspace's run folder."""
    if spec.nnodes == 1:
        return
    st.markdown(f"**Other nodes:** Launch starts node 0 here; then run one line per other node ({spec.nnodes - 1}), "
                "each on its own machine with this workspace mounted at the same path:")  # fmt: skip
    st.code("\n".join(join_commands(services.workspace(), spec.run_id, spec.nnodes)), language="bash")


# Number boxes carry no min/max of their own: a browser refuses an out-of-range value silently and keeps the
# previous one, so Launch would send something other than what the form shows. The engine checks every value
# (RunSpec, validate_spec) and says what is wrong instead.


def choose_hyperparameters() -> dict:
    cols = st.columns(4)
    out = {
        "micro_batch": cols[0].number_input("Micro-batch", value=default("micro_batch"), step=1, key="train_micro"),
        "grad_accum": cols[1].number_input(
            "Gradient accumulation", value=default("grad_accum"), step=1, key="train_accum"
        ),
        "lr": cols[2].number_input("Learning rate", value=default("lr"), step=1e-5, format="%.1e", key="train_lr"),
        "max_length": cols[3].number_input(
            ui.LABELS["max_length"], value=default("max_length"), step=8, key="train_len"
        ),
    }
    cols = st.columns(4)
    steps = cols[0].number_input("Max steps (0: use epochs)", value=0, step=1, key="train_steps")
    out["epochs"] = cols[1].number_input("Epochs", value=float(default("epochs")), step=0.5, key="train_epochs")
    out["eval_interval"] = cols[2].number_input("Eval every N steps", value=0, step=1, key="train_eval")
    out["seed"] = cols[3].number_input("Seed", value=default("seed"), step=1, key="train_seed")
    out["save_interval"] = st.columns(4)[0].number_input(
        "Checkpoint every N steps (0: none)", value=default("save_interval"), step=1, key="train_save",
        help=FIELDS["save_interval"].description,
    )  # fmt: skip
    if steps:
        out["max_steps"] = int(steps)
    return out


def show_estimate(spec) -> None:
    try:
        estimate = services.estimate_memory(spec)
    except MedcoreError as exc:
        st.caption(f"Memory estimate unavailable: {exc}")
        return
    st.markdown(f"**Memory estimate:** {estimate.summary}")
    if not estimate.fits:
        st.warning(estimate.advice, icon=":material/memory:")


with ui.guard("Building the run spec", stop=True):
    st.subheader("Data and model")
    fields = choose_data()
    st.subheader("Presets")
    fields |= choose_presets()
    st.subheader("Processes")
    fields |= choose_topology(fields)
    st.subheader("Hyper-parameters")
    fields |= choose_hyperparameters()
    spec = services.build_spec(fields)

with ui.guard("Estimating memory"):
    show_estimate(spec)
show_other_nodes(spec)
limits = services.model_limit_problems(spec)
for problem in limits:  # before Launch: the run would fail a few steps in, and resuming would fail the same way
    st.error(MedcoreError(problem).render(ui.CONSOLE_OPTIONS), icon=":material/error:")

with st.expander("Run spec (spec.json)"):
    st.json(spec.model_dump(exclude_defaults=True))

if st.button("Launch", type="primary", key="train_launch", icon=":material/rocket_launch:", disabled=bool(limits)):
    with ui.guard("The launch"), st.spinner("Validating the spec and queueing the job..."):
        run_id = services.launch_run(spec)
        st.session_state["open_run"] = run_id
        st.switch_page("views/runs.py")
