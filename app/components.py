"""Reusable console rendering: error guard, PHI highlight HTML and legend, run charts, small tables."""

from __future__ import annotations

import colorsys
import hashlib
import html
import logging
import re
import traceback
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import pandas as pd
import streamlit as st

from medcore.errors import MedcoreError
from medcore.phi.config import CATEGORIES

log = logging.getLogger("medcore.console")

# Widget labels an engine message may point at: the pages use these, and CONSOLE_OPTIONS says a setting the engine
# names ({option:NAME} in MedcoreError) in the words of the widget that sets it, never as a CLI flag.
LABELS = {
    "overwrite": "Replace a dataset with this name",
    "allow_unredacted": "This data is already de-identified: train on it anyway",
    "nproc_per_node": "Processes per node",
    "max_length": "Max length (tokens)",
    "run_id": "Run id (the same on every node)",
}
CONSOLE_OPTIONS = {
    "overwrite": f'tick "{LABELS["overwrite"]}"',
    "allow_unredacted": f'tick "{LABELS["allow_unredacted"]}" (audited)',
    "nproc_per_node": f'set "{LABELS["nproc_per_node"]}" to {{value}}',
    "max_length": f'set "{LABELS["max_length"]}" to {{value}}',
    "run_id": f'set "{LABELS["run_id"]}" on the Train page',
    "resume": "resume the run on the Runs page",
    "redact": "redact '{value}' on the PHI page",
    "reredact": "redact its source again on the PHI page, replacing this dataset",
}

# One fixed colour per PHI category, in the engine's category order, so a category keeps its colour across pages
# and sessions; anything else gets a stable colour derived from its name.
PALETTE = ("#f7a8a8", "#f7c6a8", "#c5e8a0", "#f5dc8a", "#a8cbf7", "#d2b4f5", "#f5b0dc")
TYPE_COLORS = dict(zip(CATEGORIES, PALETTE, strict=False))


@contextmanager
def guard(action: str = "This step", stop: bool = False) -> Iterator[None]:
    """Show a MedcoreError as st.error with its message; any other error as a short notice, never a traceback.

    With `stop`, the page ends after the message (what follows needs what failed). Unexpected errors
    are logged with their stack frames but not their message: a library's message can quote the cell
    it choked on, and cells are patient text.
    """
    try:
        yield
    except MedcoreError as exc:
        st.error(exc.render(CONSOLE_OPTIONS), icon=":material/error:")
        if stop:
            st.stop()
    except Exception as exc:  # noqa: BLE001 - the console must never show a traceback
        log.error(
            "%s failed with %s:\n%s", action, type(exc).__name__, "".join(traceback.format_tb(exc.__traceback__))
        )
        st.error(
            f"{action} failed unexpectedly ({type(exc).__name__}). The details are in the console's server log; "
            "please report them.",
            icon=":material/error:",
        )
        if stop:
            st.stop()


def color_for(entity_type: str) -> str:
    """The highlight colour of a PHI type (stable across runs)."""
    if entity_type in TYPE_COLORS:
        return TYPE_COLORS[entity_type]
    hue = int(hashlib.sha256(entity_type.encode()).hexdigest()[:4], 16) / 0xFFFF
    r, g, b = colorsys.hls_to_rgb(hue, 0.8, 0.7)
    return f"#{int(r * 255):02x}{int(g * 255):02x}{int(b * 255):02x}"


def _text_html(text: str) -> str:
    return html.escape(text).replace("\n", "<br>")


def highlight_html(text: str, spans: Iterable[Any]) -> str:
    """`text` as HTML with each span (start, end, type) wrapped in a <mark> coloured by type.

    Hovering a mark shows its category, what found it (the tagger or a rule) and the score. Every piece of
    text is HTML-escaped: a note containing `<script>` must render as text. Overlapping spans are resolved by
    keeping the one that starts first (then the longer one).
    """
    ordered = sorted(spans, key=lambda s: (s.start, -(s.end - s.start)))
    parts, cursor = [], 0
    for span in ordered:
        start, end = max(span.start, cursor), min(span.end, len(text))
        if start >= end:
            continue
        parts.append(_text_html(text[cursor:start]))
        kind = html.escape(str(span.type))
        found_by = html.escape(f"{kind}: {span.recognizer} ({float(span.score):.2f})")
        parts.append(
            f'<mark class="phi" data-type="{kind}" data-source="{html.escape(span.recognizer)}" title="{found_by}" '
            f'style="background:{color_for(span.type)};padding:0 2px;border-radius:3px">'
            f"{_text_html(text[start:end])}</mark>"
        )
        cursor = end
    parts.append(_text_html(text[cursor:]))
    return '<div class="phi-text" style="line-height:1.7;font-size:0.92rem">' + "".join(parts) + "</div>"


MASK_PATTERN = re.compile(r"\[[A-Z_]+\]")


def redacted_html(text: str, replacements: Iterable[tuple[int, int, str]] | None = None) -> str:
    """Redacted text as HTML with every replacement tinted in its category's colour: masks, and surrogates too.

    `replacements` are (start, end, type) in the redacted text (Preview.replacements); without them, [CATEGORY]
    masks are found by pattern. A surrogate (a fake name or a shifted date) must be as visible as a mask, or a
    reviewer cannot see that "Beck" was once "Speech".
    """
    if replacements is None:
        replacements = [(m.start(), m.end(), m.group()[1:-1]) for m in MASK_PATTERN.finditer(text)]
    parts, cursor = [], 0
    for start, end, kind in sorted(replacements):
        if start < cursor:
            continue
        parts.append(_text_html(text[cursor:start]))
        replaced = text[start:end] or "(removed)"
        parts.append(
            f'<mark class="mask" title="{html.escape(kind)}" style="background:{color_for(kind)};padding:0 2px;'
            f'border-radius:3px">{html.escape(replaced)}</mark>'
        )
        cursor = end
    parts.append(_text_html(text[cursor:]))
    return '<div class="redacted-text" style="line-height:1.7;font-size:0.92rem">' + "".join(parts) + "</div>"


AUDIT_FIRST = ("seq", "time", "kind", "user", "dataset", "output_dataset", "rows_in", "counts")  # what a reader scans


def audit_rows(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Audit records for a table, newest first: nested fields (counts per type, settings) as compact JSON text."""
    import datetime as dt
    import json

    rows = []
    for record in reversed(records):
        ordered = {k: record[k] for k in AUDIT_FIRST if k in record} | record
        row = {k: json.dumps(v, sort_keys=True) if isinstance(v, dict | list) else v for k, v in ordered.items()}
        if isinstance(record.get("time"), int | float):
            row["time"] = dt.datetime.fromtimestamp(record["time"]).strftime("%Y-%m-%d %H:%M:%S")
        rows.append(row)
    return rows


def merge_counts(counts: Iterable[dict[str, int]]) -> dict[str, int]:
    """Per-type counts of several previews added up, for one legend over the rows shown."""
    total: dict[str, int] = {}
    for one in counts:
        for kind, n in one.items():
            total[kind] = total.get(kind, 0) + n
    return total


def legend_html(counts: dict[str, int]) -> str:
    """A row of coloured chips, one per PHI category in the engine's order, with how often each was found.

    Categories not found are shown faded, so the legend always lists what the detector looks for.
    """
    kinds = [*CATEGORIES, *sorted(set(counts) - set(CATEGORIES))]
    chips = [
        f'<span class="phi-legend" data-type="{html.escape(t)}" style="background:{color_for(t)};padding:1px 8px;'
        f"margin:0 6px 4px 0;border-radius:10px;display:inline-block;font-size:0.85rem;"
        f'opacity:{1 if counts.get(t) else 0.45}">{html.escape(t)} <b>{counts.get(t, 0)}</b></span>'
        for t in kinds
    ]
    return "<div>" + "".join(chips) + "</div>"


DECISION_HEADERS = {"column": "column", "kind": "recognised as", "action": "action", "reason": "reason"}


def decisions_table(decisions: Iterable[Any]) -> None:
    """Each column's redaction decision as a table; header help is the ColumnDecision field descriptions."""
    from medcore.phi.columns import ACTIONS, ColumnDecision

    fields = ColumnDecision.model_fields
    rows = [
        {**{DECISION_HEADERS[k]: getattr(d, k) for k in DECISION_HEADERS}, "what it does": ACTIONS[d.action]}
        for d in decisions
    ]
    config = {
        header: st.column_config.TextColumn(help=fields[k].description) for k, header in DECISION_HEADERS.items()
    }
    st.dataframe(rows, hide_index=True, width="stretch", column_config=config)


def boxed_html(inner: str) -> str:
    """A scrollable bordered box for a note, so long notes do not push the page apart."""
    return (
        '<div style="border:1px solid #ddd;border-radius:6px;padding:10px;max-height:420px;overflow-y:auto;'
        f'background:#fff">{inner}</div>'
    )


def state_badge(state: str) -> str:
    """A coloured label for a run state, in Streamlit's markdown colour syntax."""
    color = {
        "completed": "green",
        "running": "blue",
        "starting": "blue",
        "queued": "gray",
        "failed": "red",
        "cancelled": "orange",
        "stopped": "orange",
    }.get(state, "gray")
    return f":{color}-badge[{state}]"


# Chart panels of the Runs page: (title, metric columns tried in order). A panel shows every listed column the
# runs logged, so loss and eval_loss share one chart; names cover the trainer's and HF Trainer's spellings.
CHART_PANELS = (
    ("Loss", ("loss", "train_loss", "eval_loss")),
    ("Learning rate", ("lr", "learning_rate")),
    ("Tokens / s", ("tokens_per_s", "tokens_per_sec", "train_tokens_per_second")),
    ("Memory (MB)", ("peak_mem_mb", "memory_mb", "mem_mb", "rss_mb")),
)


MAX_POINTS = 1500  # per line: a browser draws 1.5k points instantly and the eye sees no difference from 10k


def thin_points(points):
    """Every k-th row plus the last, so a long run's line keeps its shape and its newest point."""
    if len(points) <= MAX_POINTS:
        return points
    stride = -(-len(points) // MAX_POINTS)
    return pd.concat([points.iloc[:-1:stride], points.iloc[-1:]])


def metric_figure(frame, title: str, columns: Iterable[str]):
    """A plotly line chart of `columns` against step, one line per run and column; None when nothing was logged."""
    import plotly.graph_objects as go

    present = [c for c in columns if c in frame.columns and frame[c].notna().any()]
    if not present:
        return None
    fig = go.Figure()
    groups = list(frame.groupby("run_id", sort=False)) if "run_id" in frame.columns else [(None, frame)]
    for run_id, rows in groups:
        for column in present:
            points = thin_points(rows[["step", column]].dropna())
            if points.empty:
                continue
            name = column if len(groups) == 1 else f"{run_id} {column}"
            # Markers too while a line is short: a lone eval point drawn as a line is invisible.
            mode = "lines" if len(points) > 40 else "lines+markers"
            fig.add_trace(go.Scatter(x=points["step"].to_numpy(), y=points[column].to_numpy(), mode=mode, name=name))
    fig.update_layout(
        title=title,
        height=260,
        margin=dict(l=10, r=10, t=40, b=10),
        xaxis_title="step",
        # Above the plot, right-aligned: below it the legend covers the step axis.
        legend=dict(orientation="h", yanchor="bottom", y=1.02, xanchor="right", x=1),
    )
    return fig


def render_metric_charts(frame, key: str) -> int:
    """The four Runs panels in a 2x2 grid; returns how many panels had data."""
    shown = 0
    cols = st.columns(2)
    for i, (title, columns) in enumerate(CHART_PANELS):
        fig = metric_figure(frame, title, columns) if len(frame) else None
        with cols[i % 2]:
            if fig is None:
                st.caption(f"{title}: no points yet.")
            else:
                st.plotly_chart(fig, width="stretch", key=f"{key}-{i}", config={"displaylogo": False})
                shown += 1
    return shown
