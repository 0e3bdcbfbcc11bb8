"""A state file's schema as facts that can be compared, however its SQL was spelled.

The migrations write some tables with sqlite-utils (``[runs]``, its own line breaks) and others in
plain SQL, and the releases before wrote all of them in plain SQL: the text in ``sqlite_master``
differs where the schema does not. These facts are what SQLite makes of that text.
"""

from __future__ import annotations

import re
import sqlite3
from typing import Any

# Table clauses that PRAGMA table_info and index_list do not show (UNIQUE and PRIMARY KEY show
# as indexes or pk columns; NOT NULL and DEFAULT as columns).
_CLAUSES = ("CHECK", "COLLATE", "REFERENCES", "AUTOINCREMENT", "GENERATED")


def normal_sql(sql: str | None) -> str | None:
    """SQL without quoting brackets or quotes around names, one space, lower case."""
    if sql is None:
        return None
    text = re.sub(r'[\[\]"`]', "", sql.strip().rstrip(";")).lower()
    text = re.sub(r"\s+", " ", text)
    return re.sub(r"\s*([(),])\s*", r"\1", text)


def _indexes(conn: sqlite3.Connection, table: str) -> dict[str, dict[str, Any]]:
    indexes = {}
    for _, name, unique, origin, partial in conn.execute(f"PRAGMA index_list('{table}')"):
        # No row for the primary key of a WITHOUT ROWID table: that index is the table.
        row = conn.execute("SELECT sql FROM sqlite_master WHERE name = ?", (name,)).fetchone()
        indexes[name] = {
            "unique": unique,
            "origin": origin,
            "partial": partial,
            # seqno, cid, name, desc, collation, key: the key columns and what rides along
            "columns": [tuple(row) for row in conn.execute(f"PRAGMA index_xinfo('{name}')")],
            "sql": normal_sql(row[0] if row else None),
        }
    return indexes


def schema_of(conn: sqlite3.Connection) -> dict[str, Any]:
    """Tables (WITHOUT ROWID, STRICT, columns with type, NOT NULL, default and pk position,
    foreign keys, the clauses of _CLAUSES they use) with their indexes (unique, origin, partial,
    columns, the SQL that made them: a partial index's WHERE included), and anything else in
    ``sqlite_master``."""
    tables: dict[str, Any] = {}
    rows = conn.execute(
        "SELECT name, wr, strict FROM pragma_table_list "
        "WHERE schema = 'main' AND type = 'table' AND name NOT LIKE 'sqlite_%'"
    ).fetchall()
    for name, without_rowid, strict in rows:
        (sql,) = conn.execute("SELECT sql FROM sqlite_master WHERE name = ?", (name,)).fetchone()
        tables[name] = {
            "without_rowid": without_rowid,
            "strict": strict,
            "columns": [tuple(row) for row in conn.execute(f"PRAGMA table_info('{name}')")],
            "foreign_keys": [
                tuple(row) for row in conn.execute(f"PRAGMA foreign_key_list('{name}')")
            ],
            "clauses": [c for c in _CLAUSES if re.search(rf"\b{c}\b", sql, re.IGNORECASE)],
            "indexes": _indexes(conn, name),
        }
    others = conn.execute(
        "SELECT type, name FROM sqlite_master WHERE type NOT IN ('table', 'index') ORDER BY name"
    ).fetchall()
    return {"tables": tables, "others": [tuple(row) for row in others]}
