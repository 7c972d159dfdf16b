"""Chat page (placeholder): talk to a fine-tuned adapter through an OpenAI-compatible endpoint."""

import streamlit as st

st.title("Chat")
st.info(
    "This page will chat with a fine-tuned adapter served by vLLM or the embedded CPU server, "
    "through the OpenAI protocol, without keeping PHI in the chat history."
)
