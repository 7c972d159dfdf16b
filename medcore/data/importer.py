"""Import an upload into the workspace as a validated, split, hashed dataset folder; list and delete datasets.

An import is staged under datasets/.staging/ and swapped into place in one rename (renameat2
RENAME_EXCHANGE on Linux), so a failed or interrupted import never changes the workspace and readers
see either the old dataset or the new one, never a mix.
"""

from __future__ import annotations

import ctypes
import logging
import os
import shutil
import uuid
from pathlib import Path

import pandas as pd

from medcore.access.acting import acting
from medcore.access.actor import Actor
from medcore.data.encryption import key_for_raw_writes, write_parquet
from medcore.data.import_roots import check_import_path
from medcore.data.manifest import (
    SPLITS,
    ColumnMapping,
    DatasetManifest,
    RedactionInfo,
    check_dataset_name,
    dataset_dir,
    list_dataset_names,
    read_manifest,
    write_manifest,
)
from medcore.data.readers import detect_format, read_upload
from medcore.data.split import assign_splits, check_fractions, split_frame
from medcore.data.validate import DatasetValidationError, Task, validate_dataset
from medcore.errors import MedcoreError
from medcore.fileio import sha256_files
from medcore.workspace import Workspace

log = logging.getLogger(__name__)
ROW_COLUMN = "source_row"  # 1-based record number in the upload, kept so problems can be traced back by number


def import_dataset(
    ws: Workspace,
    data: pd.DataFrame | str | os.PathLike,
    name: str,
    mapping: ColumnMapping,
    task: Task | None = None,
    split: tuple[float, float, float] = (0.8, 0.1, 0.1),
    seed: int = 0,
    source_file: str | None = None,
    redaction: RedactionInfo | None = None,
    overwrite: bool = False,
    actor: Actor | None = None,
) -> DatasetManifest:
    """Validate, split and write `data` as datasets/<name>/, then register it in the store catalog.

    Args:
        actor: the user this import is for (the console's signed-in user, the CLI's OS user): their role is
            checked, a server path must lie under the import roots (medcore.data.import_roots), and the import
            leaves one audit record. None for the engine's own callers (the demo, a redaction job).
    Raises:
        DatasetValidationError: the data fails validation (its `.report` lists every problem).
        Refused: the actor may not import data, or the path lies outside the import roots.
        MedcoreError: bad name or split, the dataset exists and overwrite is False, unwritable workspace.
    """
    if actor is None:
        return write_import(ws, data, name, mapping, task, split, seed, source_file, redaction, overwrite)
    with acting(ws, actor, "import_data", kind="dataset_imported", dataset=name) as outcome:
        if not isinstance(data, pd.DataFrame):
            source_file = source_file or Path(data).name
            data = check_import_path(ws, data)
        manifest = write_import(ws, data, name, mapping, task, split, seed, source_file, redaction, overwrite)
        outcome |= {"rows": manifest.total_rows, "content_hash": manifest.content_hash}
    return manifest


def write_import(ws, data, name, mapping, task, split, seed, source_file, redaction, overwrite) -> DatasetManifest:
    check_dataset_name(name)
    split = check_fractions(split)
    target = dataset_dir(ws, name)
    if target.exists() and not overwrite:
        raise MedcoreError(f"Dataset '{name}' already exists: pick another name or {{option:overwrite}}.")
    source_format = "dataframe"
    if not isinstance(data, pd.DataFrame):
        path = Path(data)
        source_file = source_file or path.name
        source_format = _folder_format(path) if path.is_dir() else detect_format(path.name)
        data = read_upload(path)
    elif source_file:
        source_format = detect_format(source_file)
    frame = normalise_frame(data)
    report = validate_dataset(frame, mapping, task)
    if not report.ok:
        raise DatasetValidationError(report, f"'{source_file or name}'")
    if ROW_COLUMN not in frame.columns:
        frame.insert(0, ROW_COLUMN, range(1, len(frame) + 1))
    assignment = assign_splits(frame, split, label=mapping.label, group=mapping.patient_id, seed=seed)
    manifest = DatasetManifest(
        name=name,
        source_file=Path(source_file).name if source_file else None,
        source_format=source_format,
        mapping=mapping,
        task=report.task,
        label_set=sorted(report.stats.label_counts),
        redaction=redaction or RedactionInfo(),
    )
    write_dataset_folder(ws, target, split_frame(frame, assignment), manifest, overwrite)
    _sync_catalog(ws)
    log.info("imported dataset %s: %s", name, manifest.rows)
    return manifest


def _folder_format(path: Path) -> str:
    hf = (path / "dataset_info.json").exists() or (path / "dataset_dict.json").exists()
    return "hf-datasets" if hf else "folder"


def normalise_frame(df: pd.DataFrame) -> pd.DataFrame:
    """String column names, unique; object columns Parquet can store (mixed types become strings)."""
    import pyarrow as pa

    frame = df.copy()
    frame.columns = [str(c) for c in frame.columns]
    dupes = sorted({c for c in frame.columns if list(frame.columns).count(c) > 1})
    if dupes:
        raise MedcoreError(f"Column names must be unique; repeated: {', '.join(dupes)}. Rename them and re-upload.")
    for column in frame.columns:
        if frame[column].dtype == object:
            try:
                pa.array(frame[column], from_pandas=True)
            except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
                # Mixed values (e.g. 3 and "3" in one JSON field): keep them all as text, missing stays missing.
                frame[column] = frame[column].map(lambda v: v if v is None or v != v else str(v))
    return frame


def write_dataset_folder(
    ws: Workspace, target: Path, splits: dict[str, pd.DataFrame], manifest: DatasetManifest, overwrite: bool
) -> None:
    """Write the split Parquet files and manifest into a staging folder, hash them, swap into place.

    Raw splits are encrypted when $MEDCORE_ENCRYPT_RAW is on (medcore.data.encryption); redacted ones stay plain.
    """
    key = key_for_raw_writes(ws) if manifest.redaction.status == "raw" else None  # a key problem: nothing written
    manifest.encrypted, manifest.key_id = key is not None, key.key_id if key else None
    staging = ws.datasets / ".staging" / f"{manifest.name}-{uuid.uuid4().hex[:12]}"
    try:
        staging.mkdir(parents=True)
        paths = [staging / f"{split_name}.parquet" for split_name in SPLITS]
        for split_name, path in zip(SPLITS, paths, strict=True):
            write_parquet(splits[split_name], path, key)
        first = splits[SPLITS[0]]
        manifest.rows = {s: len(splits[s]) for s in SPLITS}
        manifest.columns = {c: str(t) for c, t in zip(first.columns, _arrow_types(first), strict=True)}
        manifest.content_hash = sha256_files(paths)  # the same hash as medcore.phi.verify.dataset_content_hash
        write_manifest(staging, manifest)
        swap_into_place(staging, target, overwrite)
    except OSError as exc:
        raise MedcoreError(
            f"Cannot write dataset '{manifest.name}' under {ws.datasets}: {exc.strerror}. "
            "Free disk space or fix the folder's permissions; the workspace was left unchanged."
        ) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _arrow_types(frame: pd.DataFrame) -> list:
    import pyarrow as pa

    return list(pa.Schema.from_pandas(frame, preserve_index=False).types)


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def swap_into_place(staging: Path, target: Path, overwrite: bool) -> None:
    """Move `staging` to `target`; an existing target is exchanged atomically and left at `staging`."""
    if not target.exists():
        try:
            staging.rename(target)
            return
        except OSError:
            if not target.exists():
                raise
            if not overwrite:  # another import of the same name won the race
                raise MedcoreError(
                    f"Dataset '{target.name}' was created meanwhile; import again with overwrite."
                ) from None
    if _exchange(staging, target):
        return
    # No renameat2 (non-Linux): two renames, leaving a moment where the dataset is absent.
    old = staging.with_name(staging.name + ".old")
    target.rename(old)
    staging.rename(target)
    old.rename(staging)


def _exchange(a: Path, b: Path) -> bool:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    rc = renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if rc != 0:
        err = ctypes.get_errno()
        if err in (22, 38, 95):  # EINVAL/ENOSYS/EOPNOTSUPP: filesystem without exchange support
            return False
        raise OSError(err, os.strerror(err), str(b))
    return True


def list_datasets(ws: Workspace) -> list[DatasetManifest]:
    """Every dataset in the workspace, by name; a folder with an unreadable manifest is skipped with a warning."""
    found = []
    for name in list_dataset_names(ws):
        try:
            found.append(read_manifest(ws, name))
        except (MedcoreError, ValueError) as exc:
            log.warning("skipping dataset folder %s: %s", name, type(exc).__name__)
    return found


def delete_dataset(ws: Workspace, name: str) -> None:
    """Remove datasets/<name>/ (moved aside in one rename, then deleted) and refresh the catalog."""
    target = dataset_dir(ws, name)
    if not (target / "manifest.json").exists():
        read_manifest(ws, name)  # raises the standard "not found; datasets are ..." message
    trash = ws.datasets / ".staging" / f"{name}-deleted-{uuid.uuid4().hex[:12]}"
    trash.parent.mkdir(parents=True, exist_ok=True)
    target.rename(trash)
    shutil.rmtree(trash, ignore_errors=True)
    _sync_catalog(ws)


def _sync_catalog(ws: Workspace) -> None:
    from medcore.store.catalog import refresh_catalog

    # The dataset folder is the truth and is in place; the snapshot catches up at the next sync.
    refresh_catalog(ws, tables=("datasets",))
