"""The merge's working set on local disk (SQLite in a temporary folder), so the merge's
memory stays flat in the number of images: the distinct images, their labels and split, the
files already in the dataset folders and the ones earlier merges placed. Python holds one
row at a time; SQLite keeps a bounded page cache.
"""
from __future__ import annotations

import sqlite3
import tempfile
from pathlib import Path
from typing import Iterable, Iterator

from headstart.shared.data.splits import order_key, split_sizes

_FETCH = 1000  # rows a streamed query holds at a time

_SCHEMA = """
CREATE TABLE images (sha TEXT PRIMARY KEY, idx INTEGER, label TEXT, ext TEXT, stored_bytes INTEGER,
                     stored_sha256 TEXT, okey TEXT, conflict INTEGER DEFAULT 0, split TEXT);
CREATE TABLE image_labels (sha TEXT, label TEXT, PRIMARY KEY (sha, label)) WITHOUT ROWID;
CREATE TABLE keys (kind TEXT, path TEXT, PRIMARY KEY (kind, path)) WITHOUT ROWID;
"""


class MergeIndex:
    """Use as a context manager; the database is removed on exit."""

    def __init__(self) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="headstart-merge-")
        self.db = sqlite3.connect(Path(self._tmp.name) / "merge.sqlite", isolation_level=None)
        self.db.executescript("PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF; "
                              "PRAGMA cache_size=-4000; PRAGMA temp_store=FILE;" + _SCHEMA)

    def __enter__(self) -> MergeIndex:
        return self

    def __exit__(self, *exc) -> None:
        self.db.close()
        self._tmp.cleanup()

    # ------------------------------------------------------------------ images
    def add_images(self, rows: Iterable[dict], seed: int) -> None:
        """``rows``: records in index order; an image's first URL (lowest index) is its keeper."""
        self.db.execute("BEGIN")
        for row in rows:
            if row["status"] != "ok":
                continue
            sha = row["sha"]
            self.db.execute("INSERT OR IGNORE INTO images (sha, idx, label, ext, stored_bytes, "
                            "stored_sha256, okey) VALUES (?, ?, ?, ?, ?, ?, ?)",
                            (sha, int(row["index"]), row["label"], row["ext"], int(row["stored_bytes"]),
                             row["stored_sha256"], order_key(sha, seed)))
            self.db.execute("INSERT OR IGNORE INTO image_labels VALUES (?, ?)", (sha, row["label"]))
        self.db.execute("UPDATE images SET conflict = 1 WHERE sha IN (SELECT sha FROM image_labels "
                        "GROUP BY sha HAVING COUNT(*) > 1)")
        self.db.execute("COMMIT")

    def image(self, sha: str) -> tuple | None:
        """(index, label, ext, conflict, split) of one image."""
        return self.db.execute("SELECT idx, label, ext, conflict, split FROM images WHERE sha = ?",
                               (sha,)).fetchone()

    def labels_of(self, sha: str) -> list[str]:
        return [r[0] for r in self.db.execute(
            "SELECT label FROM image_labels WHERE sha = ? ORDER BY label", (sha,))]

    def assign_splits(self, valid_fraction: float, test_fraction: float, drop_conflicts: bool) -> None:
        """Per label, in seeded hash order: the same rule as ``splits.assign_split`` (ranked in
        SQL, so no label's keys are ever all in memory)."""
        keep = "WHERE conflict = 0" if drop_conflicts else ""
        counts = self.db.execute(f"SELECT label, COUNT(*) FROM images {keep} GROUP BY label").fetchall()
        self.db.execute("BEGIN")
        self.db.execute("CREATE TEMP TABLE sizes (label TEXT PRIMARY KEY, n_valid INTEGER, n_test INTEGER)")
        self.db.executemany("INSERT INTO sizes VALUES (?, ?, ?)",
                            [(label, *split_sizes(n, valid_fraction, test_fraction)[1:]) for label, n in counts])
        self.db.execute(f"CREATE TEMP TABLE ranks AS SELECT sha, label, ROW_NUMBER() OVER "
                        f"(PARTITION BY label ORDER BY okey, sha) - 1 AS r FROM images {keep}")
        self.db.execute("CREATE INDEX ranks_sha ON ranks (sha)")
        self.db.execute("""UPDATE images SET split = (
            SELECT CASE WHEN k.r < s.n_test THEN 'test' WHEN k.r < s.n_test + s.n_valid THEN 'valid'
                        ELSE 'train' END
            FROM ranks k JOIN sizes s ON s.label = k.label WHERE k.sha = images.sha)
            WHERE sha IN (SELECT sha FROM ranks)""")
        self.db.execute("DROP TABLE ranks")
        self.db.execute("DROP TABLE sizes")
        self.db.execute("COMMIT")

    def placed_images(self) -> Iterator[tuple]:
        """(split, label, sha, ext, stored_bytes, stored_sha256) of every image in the dataset."""
        yield from self.db.execute("SELECT split, label, sha, ext, stored_bytes, stored_sha256 FROM "
                                   "images WHERE split IS NOT NULL ORDER BY split, label, sha")

    def split_counts(self) -> Iterator[tuple[str, str, int]]:
        yield from self.db.execute("SELECT label, split, COUNT(*) FROM images WHERE split IS NOT NULL "
                                   "GROUP BY label, split")

    def kept_labels(self) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT DISTINCT label FROM images WHERE split IS NOT NULL "
                                              "ORDER BY label")]

    def n_placed(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM images WHERE split IS NOT NULL").fetchone()[0]

    # ------------------------------------------------------------------ key sets (placement)
    def add_keys(self, kind: str, paths: Iterable[str]) -> None:
        self.db.execute("BEGIN")
        self.db.executemany("INSERT OR IGNORE INTO keys VALUES (?, ?)", ((kind, p) for p in paths))
        self.db.execute("COMMIT")

    def keys(self, kind: str, without: tuple[str, ...] = (), within: str | None = None) -> Iterator[str]:
        """Paths of ``kind``, optionally only those also in ``within`` and in none of ``without``,
        streamed in path order."""
        sql, args = "SELECT path FROM keys k WHERE kind = ?", [kind]
        if within:
            sql += " AND EXISTS (SELECT 1 FROM keys o WHERE o.kind = ? AND o.path = k.path)"
            args.append(within)
        for other in without:
            sql += " AND NOT EXISTS (SELECT 1 FROM keys o WHERE o.kind = ? AND o.path = k.path)"
            args.append(other)
        cursor = self.db.cursor()  # its own cursor: callers may query while consuming it
        cursor.execute(sql + " ORDER BY path", args)
        while batch := cursor.fetchmany(_FETCH):
            yield from (r[0] for r in batch)

    def keys_union(self, kinds: tuple[str, ...]) -> Iterator[str]:
        """Distinct paths of any of ``kinds``, streamed in path order."""
        cursor = self.db.cursor()
        cursor.execute(f"SELECT DISTINCT path FROM keys WHERE kind IN ({','.join('?' * len(kinds))}) "
                       "ORDER BY path", kinds)
        while batch := cursor.fetchmany(_FETCH):
            yield from (r[0] for r in batch)

    def has(self, kind: str, path: str) -> bool:
        return self.db.execute("SELECT 1 FROM keys WHERE kind = ? AND path = ?", (kind, path)).fetchone() is not None

    def count(self, kind: str) -> int:
        return self.db.execute("SELECT COUNT(*) FROM keys WHERE kind = ?", (kind,)).fetchone()[0]
