"""The Evaluate page's tables and plotly figures, drawn from what medcore.evaluate computed (no metric maths here)."""

from __future__ import annotations

from typing import Any

import pandas as pd
import plotly.graph_objects as go

METRIC_NAMES = {
    "accuracy": "Accuracy",
    "balanced_accuracy": "Balanced accuracy",
    "macro_f1": "Macro F1",
    "micro_f1": "Micro F1",
    "weighted_f1": "Weighted F1",
    "auroc": "AUROC (macro one-vs-rest)",
    "auprc": "AUPRC",
    "brier": "Brier score (lower is better)",
    "ece": "ECE, 15 bins (lower is better)",
    "sensitivity": "Sensitivity",
    "specificity": "Specificity",
    "ppv": "PPV",
    "npv": "NPV",
    "f1": "F1",
    "support": "Support",
}
PLOT_CONFIG = {"displaylogo": False}


def interval_text(estimate: dict[str, Any]) -> str:
    """'0.812 [0.771, 0.850]', 'undefined', or a bare count."""
    value = estimate.get("value")
    if value is None:
        return "undefined"
    if estimate.get("ci_low") is None:
        return f"{value:g}" if isinstance(value, int) else f"{value:.3f}"
    return f"{value:.3f} [{estimate['ci_low']:.3f}, {estimate['ci_high']:.3f}]"


def metrics_table(metrics: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """Metric, value and 95% CI, one row per headline metric."""
    rows = [
        {"Metric": METRIC_NAMES.get(name, name), "Value": m.get("value"), "95% CI low": m.get("ci_low"),
         "95% CI high": m.get("ci_high")}
        for name, m in metrics.items()
    ]  # fmt: skip
    return pd.DataFrame(rows)


def per_class_table(per_class: dict[str, dict[str, dict[str, Any]]]) -> pd.DataFrame:
    """Classes down, per-class metrics across, each 'value [low, high]'."""
    return pd.DataFrame(
        {
            label: {METRIC_NAMES.get(n, n): interval_text(e) for n, e in scores.items()}
            for label, scores in per_class.items()
        }
    ).T.rename_axis("Class")


def subgroup_table(groups: dict[str, dict[str, Any]], metric: str) -> pd.DataFrame:
    """One row per subgroup value: n, the metric with its CI, and whether the group is small (< 30)."""
    rows = []
    for value, scores in groups.items():
        estimate = scores.get(metric) or {}
        rows.append({"Group": value, "n": scores.get("n"), "Value": estimate.get("value"),
                     "95% CI low": estimate.get("ci_low"), "95% CI high": estimate.get("ci_high"),
                     "Small (< 30)": bool(scores.get("small"))})  # fmt: skip
    return pd.DataFrame(rows)


def subgroup_figure(table: pd.DataFrame, metric: str) -> go.Figure:
    """The metric per group with its 95% CI as error bars; small groups drawn paler."""
    defined = table.dropna(subset=["Value"])
    upper = (defined["95% CI high"] - defined["Value"]).fillna(0)
    lower = (defined["Value"] - defined["95% CI low"]).fillna(0)
    colors = ["#9ecae1" if small else "#3182bd" for small in defined["Small (< 30)"]]
    fig = go.Figure(
        go.Bar(
            x=defined["Group"].astype(str),
            y=defined["Value"],
            marker_color=colors,
            error_y={"type": "data", "array": upper, "arrayminus": lower, "visible": True},
        )
    )
    fig.update_layout(yaxis_title=METRIC_NAMES.get(metric, metric), height=320, margin={"t": 20, "b": 20})
    return fig


def confusion_figure(confusion: pd.DataFrame) -> go.Figure:
    fig = go.Figure(
        go.Heatmap(
            z=confusion.to_numpy(),
            x=[str(c) for c in confusion.columns],
            y=[str(i) for i in confusion.index],
            colorscale="Blues",
            text=confusion.to_numpy(),
            texttemplate="%{text}",
        )
    )
    fig.update_layout(xaxis_title="Predicted", yaxis_title="True", yaxis_autorange="reversed", height=340,
                      margin={"t": 20, "b": 20})  # fmt: skip
    return fig


def curve_figure(points: pd.DataFrame, x: str, y: str, diagonal: bool) -> go.Figure:
    """One line per class; ROC gets the chance diagonal."""
    fig = go.Figure()
    for label, curve in points.groupby("class", sort=False):
        fig.add_trace(go.Scatter(x=curve[x], y=curve[y], mode="lines", name=str(label), line_shape="hv"))
    if diagonal:
        fig.add_trace(
            go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="chance", line={"dash": "dot", "color": "grey"})
        )
    fig.update_layout(xaxis_title=x.upper() if len(x) == 3 else x.title(), yaxis_title=y.upper() if len(y) == 3 else y.title(),
                      xaxis_range=[0, 1], yaxis_range=[0, 1.02], height=340, margin={"t": 20, "b": 20})  # fmt: skip
    return fig


def reliability_figure(bins: pd.DataFrame) -> go.Figure:
    """Accuracy against mean confidence per bin (marker size ~ examples), with the perfect-calibration line."""
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="perfect", line={"dash": "dot", "color": "grey"}))
    fig.add_trace(
        go.Scatter(
            x=bins["confidence"],
            y=bins["accuracy"],
            mode="lines+markers",
            name="model",
            marker={"size": 6 + 20 * bins["count"] / max(int(bins["count"].max()), 1)},
            customdata=bins["count"],
            hovertemplate="confidence %{x:.2f}<br>accuracy %{y:.2f}<br>%{customdata} examples",
        )
    )
    fig.update_layout(xaxis_title="Mean confidence (top probability)", yaxis_title="Accuracy", xaxis_range=[0, 1],
                      yaxis_range=[0, 1.02], height=340, margin={"t": 20, "b": 20})  # fmt: skip
    return fig


def difference_table(reference: dict[str, Any], other: dict[str, Any]) -> pd.DataFrame:
    """Per headline metric: reference, model, difference with its paired 95% CI and whether the CI excludes 0."""
    rows = []
    for name, diff in other["differences"].items():
        rows.append({"Metric": METRIC_NAMES.get(name, name), "Reference": reference.get(name),
                     "Model": other["metrics"].get(name), "Difference": diff.get("value"),
                     "95% CI low": diff.get("ci_low"), "95% CI high": diff.get("ci_high"),
                     "CI excludes 0": bool(diff.get("excludes_zero"))})  # fmt: skip
    return pd.DataFrame(rows)
