"""DuckDB over the workspace: live metrics, the Runs list, views for notebooks and the catalog snapshot."""

from medcore.store.catalog import runs_table, sync_catalog
from medcore.store.live_metrics import clear_cache, compact_run_metrics, metrics, read_run_metrics
from medcore.store.views import connect, create_views

__all__ = [
    "clear_cache",
    "compact_run_metrics",
    "connect",
    "create_views",
    "metrics",
    "read_run_metrics",
    "runs_table",
    "sync_catalog",
]
