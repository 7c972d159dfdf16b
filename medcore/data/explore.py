"""A dataset's splits as one DuckDB relation for notebooks: plain Parquet read in place, encrypted splits in memory."""

from __future__ import annotations

import duckdb
import pyarrow as pa

from medcore.data.encryption import is_encrypted_file, read_split_table
from medcore.data.manifest import SPLITS, split_path
from medcore.errors import MedcoreError
from medcore.workspace import Workspace

SPLIT_COLUMN = "split"


def read_splits(con: duckdb.DuckDBPyConnection, ws: Workspace, name: str) -> duckdb.DuckDBPyRelation:
    """Every record of dataset `name` on `con`: a `split` column (train, validation, test), then the stored columns.

    Plain splits are read by DuckDB straight from their Parquet files. Encrypted raw splits ($MEDCORE_ENCRYPT_RAW at
    import) are not Parquet on disk: they are decrypted in memory and registered on `con` as one Arrow table, and
    `con` stops spilling to disk, so their text never reaches a temp file.

    Raises:
        MedcoreError: a split file is missing, or the splits are encrypted and the data key is missing or wrong.
    """
    paths = [existing_split(ws, name, split) for split in SPLITS]
    if not any(is_encrypted_file(path) for path in paths):
        files = con.read_parquet([str(path) for path in paths], filename=True)
        return files.project(f"parse_filename(filename, true) AS {SPLIT_COLUMN}, * EXCLUDE (filename)")
    # DuckDB spills large sorts and joins to temp files (`.tmp` by default): that would be plaintext PHI on disk.
    con.execute("SET temp_directory = ''")
    view = f"decrypted {name}"
    con.register(view, decrypted_splits(ws, paths))
    return con.view(view)


def existing_split(ws: Workspace, name: str, split: str):
    path = split_path(ws, name, split)
    if not path.exists():
        raise MedcoreError(f"Dataset '{name}' has no '{split}' split at {path}. Re-import the dataset.")
    return path


def decrypted_splits(ws: Workspace, paths: list) -> pa.Table:
    """The splits as one Arrow table, in split order, each row tagged with its split (as the plain path does)."""
    tables = []
    for split, path in zip(SPLITS, paths, strict=True):
        table = read_split_table(path, ws=ws).replace_schema_metadata(None)  # pandas metadata differs per split
        tables.append(table.add_column(0, SPLIT_COLUMN, pa.array([split] * table.num_rows, pa.string())))
    return pa.concat_tables(tables, promote_options="default")  # an empty split's null-typed column takes the type
