"""Chat page: served models over the OpenAI protocol, one or two side by side, each prompt PHI-guarded before it leaves."""

import components as ui
import services
import streamlit as st

from medcore.serve.config import ServingConfig
from medcore.serve.protocol import SamplingFields

SERVING = "chat_serving"  # session key: the serve request followed (Runs' "Serve this adapter" sets it too)
CHAT_SERVER, CHAT_MODEL = "chat_server", "chat_model"  # session keys: select this server and model once, then forget
TURNS, CHAT_ID, PAIRS = "chat_turns", "chat_id", "chat_pairs"  # the conversation, its transcript, pairs for review
MANAGED, TYPED = "Managed server", "Any OpenAI-compatible URL"
SAMPLING, SERVING_FIELDS = SamplingFields.model_fields, ServingConfig.model_fields

st.title("Chat")
st.caption(
    "Chat with served models over the OpenAI protocol, one model or two side by side. With the PHI guard on (the "
    "default) each prompt is masked by MedCore's detector before it is sent; saved transcripts hold masked text only."
)


def select(label: str, options: list[str], key: str, wanted_key: str | None = None, where=st, **kwargs) -> str:
    """A selectbox opening on the value another step asked for (taken once from session state), else the user's."""
    wanted = st.session_state.pop(wanted_key, None) if wanted_key else None
    if wanted in options:
        st.session_state[key] = wanted
    elif st.session_state.get(key) not in options:
        st.session_state.pop(key, None)
    return where.selectbox(label, options, key=key, **kwargs)


def serving_pending() -> bool:
    """Whether this session's serve request is still starting its server."""
    request = services.serve_progress(st.session_state[SERVING]) if SERVING in st.session_state else None
    return bool(request) and not request["done"]


def follow_serving(request_id: str) -> None:
    """The serve request in flight: a note while the server loads, then its server and model selected, or the error."""
    request = services.serve_progress(request_id)
    if request is None:  # started by an earlier console process: the server, if it came up, is listed below
        st.session_state.pop(SERVING, None)
    elif not request["done"]:
        st.info(f"Serving {request['model']}: loading the model, waiting for the server...", icon=":material/pending:")
    elif request["error"]:
        st.error(request["error"], icon=":material/error:")
    else:
        served = request["served"]
        st.session_state.pop(SERVING, None)
        st.session_state[CHAT_SERVER], st.session_state[CHAT_MODEL] = served.server, served.model
        st.rerun(scope="app")


def start_form(expanded: bool) -> None:
    with st.expander("Start a server", expanded=expanded):
        models = services.servable_models()
        model = st.selectbox("Model to serve", models, key="chat-serve-model",
                             help="tiny-llama, or a completed causal-lm run: its adapter is loaded into a running "
                             "server of its base, else a server is started with it (embedded, on this machine).")  # fmt: skip
        if st.button("Start", icon=":material/play_arrow:", disabled=serving_pending()):
            st.session_state[SERVING] = services.serve_model(model)
            st.rerun()


def pick_endpoint() -> tuple[str, str | None] | None:
    """(URL, API key) of the chosen endpoint; None when there is none to talk to yet."""
    if CHAT_SERVER in st.session_state:
        st.session_state["chat-endpoint"] = MANAGED
    kind = st.radio("Endpoint", [MANAGED, TYPED], horizontal=True, key="chat-endpoint")
    if kind == TYPED:
        left, right = st.columns([3, 1])
        url = left.text_input("Server URL", placeholder="http://127.0.0.1:8000", key="chat-url",
                              help="The root (or /v1 URL) of any OpenAI-compatible server: vLLM, MedCore's, others.")  # fmt: skip
        key = right.text_input("API key", type="password", key="chat-key", help=SERVING_FIELDS["api_key"].description)
        if not url.strip():
            st.info("Type the URL of an OpenAI-compatible server, e.g. http://127.0.0.1:8000.")
            return None
        return url.strip(), key or None
    running = {s.name: s for s in services.list_servers() if s.state == "running"}
    if not running:
        st.info("No managed server is running. Start one below, or pick 'Any OpenAI-compatible URL'.")
        start_form(expanded=True)
        return None
    left, right = st.columns([4, 1], vertical_alignment="bottom")
    name = select("Server", list(running), "chat-server", CHAT_SERVER, where=left,
                  format_func=lambda n: f"{n}: {running[n].url} ({running[n].engine})")  # fmt: skip
    if right.button("Stop server", icon=":material/stop_circle:"):
        with ui.guard("Stopping the server"), st.spinner(f"Stopping {name}..."):
            services.stop_server(name)
            st.rerun()
    start_form(expanded=False)
    return running[name].url, services.env_api_key()


def pick_models(url: str, key: str | None) -> list[str]:
    """The model (or two, side by side) each prompt goes to, from the server's /v1/models."""
    models = services.list_models(url, key)
    if not models:
        st.warning("The server lists no models.")
        st.stop()
    side = st.toggle("Two models side by side", key="chat-side", disabled=len(models) < 2,
                     help="Send each prompt to two models and show the answers next to each other; the pairs can "
                     "go to a blinded review.")  # fmt: skip
    left, right = st.columns(2)
    first = select("Model", models, "chat-model-a", CHAT_MODEL, where=left,
                   help=SAMPLING["model"].description)  # fmt: skip
    if not side or len(models) < 2:
        return [first]
    return [first, select("Second model", [m for m in models if m != first], "chat-model-b", where=right)]


def pick_settings() -> dict:
    system = st.text_area("System prompt", key="chat-system", height=68,
                          help="Sent first in every request; the PHI guard masks it like a prompt.")  # fmt: skip
    left, middle, right = st.columns(3)
    temperature = left.slider("Temperature", 0.0, 2.0, 0.0, 0.1, key="chat-temperature",
                              help=SAMPLING["temperature"].description)  # fmt: skip
    max_tokens = middle.number_input("Max tokens", min_value=1, value=128, step=32, key="chat-max-tokens",
                                     help=f"{SAMPLING['max_tokens'].description} A MedCore server refuses more than "
                                     f"its max_tokens_cap: {SERVING_FIELDS['max_tokens_cap'].description}")  # fmt: skip
    guard = right.toggle("PHI guard", value=True, key="chat-guard",
                         help="Mask PHI (names, dates, contacts, identifiers...) in the system prompt and each prompt "
                         "with MedCore's detector before it is sent; each message shows what was masked.")  # fmt: skip
    if not guard:
        st.warning("PHI guard is off: prompts are sent to the model as typed, PHI included. Saved transcripts are "
                   "still masked.", icon=":material/warning:")  # fmt: skip
    return {"system": system, "temperature": float(temperature), "max_tokens": int(max_tokens), "guard": guard}


def guard_note(turn: dict) -> str:
    """What the guard did to a prompt: off, nothing found, or the masked categories with counts."""
    if not turn["guarded"]:
        return "PHI guard off: sent as typed."
    if not turn["counts"]:
        return "PHI guard on: nothing to mask; sent as shown."
    masked = ", ".join(f"{kind} x{count}" for kind, count in sorted(turn["counts"].items()))
    return f"PHI guard masked {masked}; sent as shown."


def show_user(turn: dict) -> None:
    with st.chat_message("user"):
        st.markdown(turn["content"])
        st.caption(guard_note(turn))
        if turn.get("system"):
            st.caption(f"System prompt sent masked: {turn['system']}")


def answer_slots(count: int) -> list:
    return list(st.columns(count)) if count > 1 else [st.container()]


def show_answers(answers: list[dict]) -> None:
    for slot, answer in zip(answer_slots(len(answers)), answers, strict=True):
        with slot.chat_message("assistant"):
            st.caption(answer["model"])
            st.markdown(answer["content"])


def send(prompt: str, url: str, key: str | None, models: list[str], settings: dict) -> None:
    """Guard the prompt, stream each model's answer (one after the other), then keep and save the exchange."""
    with st.spinner("PHI guard: scanning the prompt..."):
        guarded = services.guard_prompt(settings["system"], prompt, settings["guard"])
    user = {"role": "user", "content": guarded.prompt, "guarded": guarded.guarded, "counts": guarded.counts,
            "system": guarded.system if guarded.system_counts else None}  # fmt: skip
    show_user(user)
    history, answers = [*st.session_state[TURNS], user], []
    options = {"api_key": key, "temperature": settings["temperature"], "max_tokens": settings["max_tokens"]}
    for slot, model in zip(answer_slots(len(models)), models, strict=True):
        with slot.chat_message("assistant"):
            st.caption(model)
            messages = services.messages_for(history, model, guarded.system)
            text = st.write_stream(services.stream_chat(url, model, messages, **options))
        answers.append({"model": model, "content": text if isinstance(text, str) else "".join(map(str, text))})
    st.session_state[TURNS] = [*history, {"role": "assistant", "answers": answers}]
    keep(guarded, answers)


def keep(guarded, answers: list[dict]) -> None:
    """Save the exchange to the transcript (the store masks it again) and, side by side, queue it for review."""
    chat_id = st.session_state.setdefault(CHAT_ID, services.new_chat_id())
    if guarded.system.strip() and st.session_state.get("chat-saved-system") != guarded.system:
        services.save_transcript(chat_id, "system", guarded.system)
        st.session_state["chat-saved-system"] = guarded.system
    services.save_transcript(chat_id, "user", guarded.prompt)
    for answer in answers:
        services.save_transcript(chat_id, "assistant", answer["content"], model=answer["model"])
    if len(answers) == 2:
        models = (answers[0]["model"], answers[1]["model"])
        queued = st.session_state.get(PAIRS)
        queued = queued if queued and queued["models"] == models else {"models": models, "pairs": []}
        pair = {"prompt": guarded.prompt, "model_a": models[0], "output_a": answers[0]["content"],
                "model_b": models[1], "output_b": answers[1]["content"]}  # fmt: skip
        st.session_state[PAIRS] = {**queued, "pairs": [*queued["pairs"], pair]}


def review_form() -> None:
    """Send the side-by-side answers of this conversation (the last two models') to a new blinded review."""
    queued = st.session_state.get(PAIRS)
    if not queued:
        return
    count, (model_a, model_b) = len(queued["pairs"]), queued["models"]
    st.markdown(f"**{count}** side-by-side answer(s) of {model_a} and {model_b} not yet sent to review.")
    name = st.text_input("Review name (reviewers see it: no model names)", key="chat-review-name",
                         help="Empty: 'pairs' and the date. Each send creates a new review.")  # fmt: skip
    if st.button("Send to review", icon=":material/rate_review:"):
        with ui.guard("Sending to review"), st.spinner("Masking PHI in every item..."):
            review = services.send_pairs_to_review(queued["pairs"], name)
            st.session_state.pop(PAIRS)
            st.session_state["open_review"] = review.review_id
            st.success(f"Review {review.review_id} holds {count} item(s); judge it on the Review page (model names "
                       "stay sealed until it is closed).", icon=":material/rate_review:")  # fmt: skip


def conversation_tools() -> None:
    left, right = st.columns(2)
    chat_id = st.session_state.get(CHAT_ID)
    if chat_id:
        with ui.guard("Exporting the conversation"):
            left.download_button("Export the conversation (JSONL, PHI-masked)", services.export_transcript(chat_id),
                                 file_name=f"chat-{chat_id}.jsonl", mime="application/jsonl")  # fmt: skip
    if st.session_state[TURNS] and right.button("New conversation", icon=":material/add_comment:"):
        for key in (TURNS, CHAT_ID, PAIRS, "chat-saved-system"):
            st.session_state.pop(key, None)
        st.rerun()


st.session_state.setdefault(TURNS, [])
if SERVING in st.session_state:
    st.fragment(run_every=1 if serving_pending() else None)(follow_serving)(st.session_state[SERVING])

with ui.guard("Finding the endpoint", stop=True):
    endpoint = pick_endpoint()
if endpoint is None:
    st.stop()
url, api_key = endpoint
with ui.guard("Listing the server's models", stop=True):
    models = pick_models(url, api_key)
settings = pick_settings()

for turn in st.session_state[TURNS]:
    if turn["role"] == "user":
        show_user(turn)
    else:
        show_answers(turn["answers"])
prompt = st.chat_input("Ask both models" if len(models) > 1 else "Ask the model")
if prompt:
    with ui.guard("Chatting"):
        send(prompt, url, api_key, models, settings)
review_form()
conversation_tools()
