"""Evaluate page (placeholder): clinical metrics with confidence intervals, subgroups and A/B review."""

import streamlit as st

st.title("Evaluate")
st.info(
    "This page will score a trained run on a held-out split with clinical metrics and confidence intervals, "
    "break them down by subgroup, and let reviewers compare two models side by side."
)
