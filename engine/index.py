"""A searchable index of a folder: one SQLite file per folder, kept in the app's data folder (never in the
user's folder), holding per file its path, size, mtime, content hash, modality, fused 384-d vector, OCR text
and transcript.

    index = FolderIndex("~/Archive")
    index.update()                       # only new or changed files are encoded
    index.search("invoice from harbor supplies", top=10, modality="image")

Updates are incremental: a file whose size and mtime are unchanged is not read at all; a changed file is
hashed, and a known hash is reused instead of encoding (a rename or a copy costs one hash, not a model run);
files gone from the folder are pruned. The schema carries a version and is upgraded step by step.

Search loads the vectors once into one numpy matrix (one query) and ranks with a matrix-vector product:
100k items take milliseconds after that load. A typed query also counts each file's own words (OCR text, note text,
transcript) through an FTS5 table: the share of the query's terms a file holds is added to its cosine
(KEYWORD_WEIGHT; measured by bench/bench_retrieval.py).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import sqlite3
import threading
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from .errors import FusionDeskError, InputFileError
from .filetypes import disk_path, text_name
from .fileio import storage_error
from .folder import Progress, Skipped, walk
from .perceive import Perceiver, Perception, PerceptionOptions
from .pipeline import Done, FileEntry, fused_vectors, perceive_stream
from .runtime import Runtime, get_runtime

MODALITIES = ("image", "audio", "text")
INDEX_SUFFIX = ".sqlite"


def _v1_items(con: sqlite3.Connection) -> None:
    con.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    con.execute("""
        CREATE TABLE items (
            id INTEGER PRIMARY KEY,
            path TEXT NOT NULL UNIQUE,   -- relative to the folder, forward slashes
            size INTEGER NOT NULL,
            mtime REAL NOT NULL,
            hash TEXT NOT NULL,          -- sha256 of the content: recognises renames and copies
            modality TEXT,
            vector BLOB,                 -- float32 fused vector; NULL when nothing could be perceived
            ocr_text TEXT,
            transcript TEXT,
            error TEXT                   -- why the file could not be used (kept, so it is not retried unchanged)
        )""")


def _v2_embedding_space(con: sqlite3.Connection) -> None:
    # Vectors from another model bundle live in another space: record which bundle made each one so that
    # an update after a model change re-encodes instead of mixing spaces.
    con.execute("ALTER TABLE items ADD COLUMN space TEXT NOT NULL DEFAULT ''")
    con.execute("CREATE INDEX items_hash ON items(hash)")


def _v3_transcript_segments(con: sqlite3.Connection) -> None:
    # The timed segments of a recording's transcript (JSON [[start, end, text], ...]), so a search result can
    # play from the part that matches. Rows from before stay NULL: they play from the start.
    con.execute("ALTER TABLE items ADD COLUMN segments TEXT")


def _v4_keyword_search(con: sqlite3.Connection) -> None:
    # The words found in each file (OCR text, a note's text, a transcript) in an FTS5 table whose rowid is the item's
    # id, so a search can add a keyword score to the vector score: an invoice number or a name that the text encoder
    # blurs is found by its exact words. Porter stemming: "baking" finds "bake". Filled from the rows already there.
    con.execute("CREATE VIRTUAL TABLE items_words USING fts5(words, tokenize = 'porter unicode61 remove_diacritics 2')")
    con.execute("INSERT INTO items_words (rowid, words) SELECT id, trim(coalesce(ocr_text, '') || ' ' || "
                "coalesce(transcript, '')) FROM items WHERE coalesce(ocr_text, '') || coalesce(transcript, '') != ''")


# MIGRATIONS[n] takes a database from schema version n to n + 1.
MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [_v1_items, _v2_embedding_space, _v3_transcript_segments,
                                                          _v4_keyword_search]
SCHEMA_VERSION = len(MIGRATIONS)


def migrate(con: sqlite3.Connection, target: int = SCHEMA_VERSION) -> int:
    """Bring the database to `target`, one step per transaction; returns the version found."""
    con.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
    row = con.execute("SELECT version FROM schema_version").fetchone()
    found = row[0] if row else 0
    if found > SCHEMA_VERSION:
        raise FusionDeskError(f"this index was made by a newer FusionDesk (schema {found}, this one reads up to "
                              f"{SCHEMA_VERSION}): update the app, or delete the index to rebuild it")
    for version in range(found, target):
        con.execute("BEGIN")
        try:
            MIGRATIONS[version](con)
            con.execute("DELETE FROM schema_version")
            con.execute("INSERT INTO schema_version (version) VALUES (?)", (version + 1,))
            con.execute("COMMIT")
        except BaseException:
            _rollback(con)
            raise
    return found


def _rollback(con: sqlite3.Connection) -> None:
    """Undo the open transaction, if SQLite has not already (it does itself after a full disk): the error that
    got here is the one to report, not "cannot rollback - no transaction is active"."""
    if con.in_transaction:
        try:
            con.execute("ROLLBACK")
        except sqlite3.Error:
            pass


def indexes_dir() -> Path:
    from .settings import data_dir

    return data_dir() / "indexes"


def index_path_for(folder: Path | str) -> Path:
    """One index file per folder, named by a hash of its absolute path (any characters, any length)."""
    key = hashlib.sha256(str(Path(folder).expanduser().resolve()).encode("utf-8")).hexdigest()[:20]
    return indexes_dir() / f"{key}{INDEX_SUFFIX}"


def file_hash(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


@dataclass
class Hit:
    path: str  # absolute
    rel: str
    score: float
    modality: str
    ocr_text: str = ""
    transcript: str = ""
    segments: list[tuple[float, float, str]] = field(default_factory=list)  # a recording's timed transcript
    digest: str = ""  # the file's content hash: copies of one file have the same
    copies: list[str] = field(default_factory=list)  # other places of the same content (group_copies)

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "score": round(self.score, 4), "modality": self.modality}


@dataclass
class UpdateSummary:
    added: int = 0
    changed: int = 0
    renamed: int = 0
    copied: int = 0  # same content as a file already indexed: its vector reused
    unchanged: int = 0
    deleted: int = 0
    failed: int = 0
    skipped: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {k: (round(v, 2) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


class FolderIndex:
    """The index of one folder. Thread-safe: the UI searches while an update runs."""

    def __init__(self, folder: Path | str, path: Path | str | None = None):
        self.root = Path(folder).expanduser().resolve()
        self.path = Path(path) if path is not None else index_path_for(self.root)
        self._lock = threading.RLock()
        # (vectors, relative paths, modalities, the items table's ids in ascending order, the model bundle that made
        # each vector) of the items with a vector
        self._matrix: tuple[np.ndarray, list[str], np.ndarray, np.ndarray, np.ndarray] | None = None
        self._matrix_version: tuple[int, int] | None = None  # _version() when the matrix was loaded
        self._word_files: tuple[tuple[int, int], int] | None = None  # (_version(), files with words)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._con = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        except (OSError, sqlite3.Error) as exc:
            raise self._storage_error(exc) from None
        try:
            with self._lock:
                self._con.execute("PRAGMA journal_mode=WAL")  # readers (search) do not wait for an update
                migrate(self._con)
                # Written only when it changes: opening an index to search it writes nothing (a full disk, too)
                root = self._con.execute("SELECT value FROM meta WHERE key = 'root'").fetchone()
                if root is None or root[0] != str(self.root):
                    self._con.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('root', ?)", (str(self.root),))
        except (OSError, sqlite3.Error) as exc:
            self._con.close()
            raise self._storage_error(exc) from None

    def _storage_error(self, exc: BaseException) -> BaseException:
        """A full disk, a read-only or unwritable data folder, a damaged index file: said in words, with the
        index's path (and the free space); any other error as it is."""
        name = (getattr(exc, "sqlite_errorname", None) or "") if isinstance(exc, sqlite3.Error) else ""
        if name in ("SQLITE_NOTADB", "SQLITE_CORRUPT"):
            return FusionDeskError(f"the search index {self.path} is damaged ({exc}): delete it, then index the "
                                   "folder again")
        if name.startswith("SQLITE_BUSY"):
            return FusionDeskError(f"the search index {self.path} is busy: another FusionDesk run (the app, or another "
                                   "command) is writing it; try again when that has finished")
        return storage_error(exc, getattr(exc, "filename", None) or self.path,
                             "set FUSIONDESK_DATA_DIR to a folder you can write to")

    @staticmethod
    def existing(folder: Path | str) -> "FolderIndex":
        """The index of a folder that has been indexed; a clear error if it has not."""
        path = index_path_for(folder)
        if not path.is_file():
            raise FusionDeskError(f"{folder} has not been indexed yet: process it with `fusiondesk batch {folder} "
                                  f"--out RESULTS.jsonl`, or run `fusiondesk index {folder}`")
        return FolderIndex(folder, path)

    def close(self) -> None:
        with self._lock:
            self._con.close()

    def __enter__(self) -> "FolderIndex":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One transaction: all of it is in the index, or none of it (a kill, a full disk: SQLite's WAL)."""
        with self._lock:
            try:
                self._con.execute("BEGIN")
                yield self._con
                self._con.execute("COMMIT")
            except sqlite3.Error as exc:
                _rollback(self._con)
                raise self._storage_error(exc) from None
            except BaseException:
                _rollback(self._con)
                raise

    def __len__(self) -> int:
        with self._lock:
            return self._con.execute("SELECT COUNT(*) FROM items").fetchone()[0]

    def items(self) -> list[dict[str, Any]]:
        """Every row without its vector (for tests, the UI and scripts)."""
        with self._lock:
            cursor = self._con.execute("SELECT path, size, mtime, hash, modality, vector IS NOT NULL, ocr_text, "
                                       "transcript, error, space FROM items ORDER BY path")
            names = ["path", "size", "mtime", "hash", "modality", "has_vector", "ocr_text", "transcript", "error", "space"]
            return [dict(zip(names, row)) for row in cursor]

    # -- update -----------------------------------------------------------------------------------------------

    def update(self, runtime: Runtime | None = None, workers: int = 4, batch_size: int = 16, language: str = "en",
               progress: Callable[[Progress], None] | None = None, stop: threading.Event | None = None,
               cluster=None) -> UpdateSummary:
        """Bring the index in line with the folder: encode new and changed files, move renamed ones, prune the rest.
        cluster (engine.cluster.Cluster): encode on its workers; this process stays the index's one writer."""
        runtime = runtime or get_runtime()
        space = runtime.bundle.bundle_version
        start = time.monotonic()
        summary = UpdateSummary()
        found = []
        for item in walk(self.root):
            if isinstance(item, Skipped):
                summary.skipped += 1
            else:
                found.append(item)
        todo = self._reconcile(found, space, summary)
        work = IndexWork(runtime, language, workers, batch_size)
        state = Progress(total=len(todo), skipped=summary.skipped, resumed=summary.unchanged)
        hashes = dict(todo)
        entries = [entry for entry, _ in todo]
        if cluster is not None:
            batches = cluster.run(work.spec(), entries, batch_size, stop, state)
        else:
            batches = work.process(entries, stop)
        for done in batches:
            batch = [(item.entry, item.perceived) for item in done]
            self.store(batch, [item.vector for item in done], space, hashes)
            for entry, perceived in batch:
                failed = isinstance(perceived, InputFileError)
                summary.failed += failed
                state.failed += failed
                state.ok += not failed
                state.done += 1
                state.current = entry.rel
            state.elapsed = time.monotonic() - start
            if progress is not None:
                progress(state)
        summary.seconds = time.monotonic() - start
        return summary

    def store(self, batch: list[tuple[FileEntry, Perception | InputFileError]], vectors: list[np.ndarray | None],
              space: str, hashes: dict[FileEntry, str] | None = None) -> None:
        """Store perceived files and their fused vectors (engine.pipeline.fused_vectors), one transaction per
        batch: `update` does, and a batch run does as it goes, so a processed folder is searchable at once.
        hashes: the files' content hashes when already known (else they are computed here)."""
        digests = []
        for entry, perceived in batch:
            digest = (hashes or {}).get(entry)
            if digest is None:
                try:
                    digest = file_hash(entry.path) if not isinstance(perceived, InputFileError) else ""
                except OSError:
                    digest = ""  # unreadable now: stored without a hash, never taken for a renamed file
            digests.append(digest)
        with self._transaction() as con:
            for (entry, perceived), vector, digest in zip(batch, vectors, digests):
                self._store(con, entry, digest, perceived, vector, space)

    def missing(self, entries: list[FileEntry], space: str) -> list[FileEntry]:
        """The entries the index does not hold as they are now (absent, changed, or from another bundle)."""
        with self._lock:
            known = {row[0]: row[1:] for row in self._con.execute("SELECT path, size, mtime, space FROM items")}
        return [entry for entry in entries if known.get(entry.rel) != (entry.size, entry.mtime, space)]

    def _reconcile(self, found: list[FileEntry], space: str, summary: UpdateSummary) -> list[tuple[FileEntry, str]]:
        """Apply renames, copies, touches and deletions at once; return the files that need encoding (+ hash)."""
        with self._lock:
            known = {row[0]: row[1:] for row in self._con.execute("SELECT path, id, size, mtime, hash, space FROM items")}
        on_disk = {entry.rel for entry in found}
        gone = {rel: row for rel, row in known.items() if rel not in on_disk}
        # Unreadable files are stored with an empty hash: never take one of them for a renamed file
        gone_by_hash = {row[3]: rel for rel, row in gone.items() if row[4] == space and row[3]}
        todo: list[tuple[FileEntry, str]] = []
        with self._transaction() as con:
            for entry in found:
                row = known.get(entry.rel)
                if row is not None and row[1] == entry.size and row[2] == entry.mtime and row[4] == space:
                    summary.unchanged += 1
                    continue
                try:
                    digest = file_hash(entry.path) if entry.problem is None else ""
                except OSError as exc:
                    entry = FileEntry(entry.path, entry.rel, entry.size, entry.mtime, entry.modality,
                                      f"cannot read the file ({exc.strerror or exc})")
                    digest = ""
                if row is not None and digest and row[3] == digest and row[4] == space:
                    con.execute("UPDATE items SET size = ?, mtime = ? WHERE id = ?", (entry.size, entry.mtime, row[0]))
                    summary.unchanged += 1  # touched, or copied back: same content, same vector
                    continue
                if row is None and digest and digest in gone_by_hash:
                    old = gone.pop(gone_by_hash.pop(digest))
                    con.execute("UPDATE items SET path = ?, size = ?, mtime = ? WHERE id = ?",
                                (entry.rel, entry.size, entry.mtime, old[0]))
                    summary.renamed += 1
                    continue
                if row is None and digest and self._copy_from_hash(con, entry, digest, space):
                    summary.copied += 1
                    continue
                if row is None:
                    summary.added += 1
                else:
                    summary.changed += 1
                todo.append((entry, digest))
            for rel, row in gone.items():
                con.execute("DELETE FROM items WHERE id = ?", (row[0],))
                con.execute("DELETE FROM items_words WHERE rowid = ?", (row[0],))
                summary.deleted += 1
        return todo

    @staticmethod
    def _copy_from_hash(con: sqlite3.Connection, entry: FileEntry, digest: str, space: str) -> bool:
        source = con.execute("SELECT modality, vector, ocr_text, transcript, segments, error FROM items "
                             "WHERE hash = ? AND space = ? LIMIT 1", (digest, space)).fetchone()
        if source is None:
            return False
        item = con.execute("INSERT INTO items (path, size, mtime, hash, modality, vector, ocr_text, transcript, "
                           "segments, error, space) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                           (entry.rel, entry.size, entry.mtime, digest, *source, space)).lastrowid
        FolderIndex._set_words(con, item, source[2], source[3])
        return True

    @staticmethod
    def _set_words(con: sqlite3.Connection, item: int, *texts: str | None) -> None:
        """The keyword table's row for item `item`: the words of its texts (none: no row)."""
        con.execute("DELETE FROM items_words WHERE rowid = ?", (item,))
        words = " ".join(text for text in texts if text).strip()
        if words:
            con.execute("INSERT INTO items_words (rowid, words) VALUES (?, ?)", (item, words))

    @staticmethod
    def _store(con: sqlite3.Connection, entry: FileEntry, digest: str, perceived: Perception | InputFileError,
               vector: np.ndarray | None, space: str) -> None:
        if isinstance(perceived, InputFileError):
            values = (entry.modality, None, None, None, None, perceived.problem)
        else:
            ocr = perceived.ocr.text if perceived.ocr is not None else None
            heard = perceived.transcript.text if perceived.transcript is not None else None
            timed = (json.dumps([[s.start, s.end, s.text] for s in perceived.transcript.segments])
                     if perceived.transcript is not None and perceived.transcript.segments else None)
            text = perceived.text if perceived.modality == "text" else None
            blob = np.asarray(vector, dtype=np.float32).tobytes() if vector is not None else None
            # Text notes keep their text in ocr_text's place: the one "text found in the file" snippet column.
            values = (perceived.modality, blob, ocr if text is None else text[:20000], heard, timed, None)
        con.execute(
            "INSERT INTO items (path, size, mtime, hash, modality, vector, ocr_text, transcript, segments, error, "
            "space) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(path) DO UPDATE SET size = excluded.size, "
            "mtime = excluded.mtime, hash = excluded.hash, modality = excluded.modality, vector = excluded.vector, "
            "ocr_text = excluded.ocr_text, transcript = excluded.transcript, segments = excluded.segments, "
            "error = excluded.error, space = excluded.space",
            (entry.rel, entry.size, entry.mtime, digest, *values, space))
        (item,) = con.execute("SELECT id FROM items WHERE path = ?", (entry.rel,)).fetchone()
        FolderIndex._set_words(con, item, values[2], values[3])

    # -- search -----------------------------------------------------------------------------------------------

    def matrix(self) -> tuple[np.ndarray, list[str], np.ndarray]:
        """(vectors [N, D] float32, relative paths, modalities) of every item with a vector; loaded once, and
        again after the index changed (an update here, or a batch run indexing as it goes in another connection)."""
        return self._loaded()[:3]

    def _loaded(self) -> tuple[np.ndarray, list[str], np.ndarray, np.ndarray, np.ndarray]:
        with self._lock:
            version = self._version()
            if version != self._matrix_version:
                self._matrix, self._matrix_version = None, version
            if self._matrix is None:
                rows = self._con.execute("SELECT path, modality, vector, id, space FROM items WHERE vector IS NOT NULL "
                                         "ORDER BY id").fetchall()
                if rows:
                    dim = len(rows[0][2]) // 4
                    vectors = np.frombuffer(b"".join(row[2] for row in rows), dtype=np.float32).reshape(len(rows), dim)
                else:
                    vectors = np.zeros((0, 0), dtype=np.float32)
                self._matrix = (vectors, [row[0] for row in rows], np.array([row[1] or "" for row in rows], dtype=str),
                                np.array([row[3] for row in rows], dtype=np.int64),
                                np.array([row[4] for row in rows], dtype=str))
            return self._matrix

    def _version(self) -> tuple[int, int]:
        """Changes whenever the index's rows may have: another connection committed (PRAGMA data_version, which
        never counts this connection's own writes) or this one wrote (total_changes). What is loaded or counted
        once is kept until then."""
        return self._con.execute("PRAGMA data_version").fetchone()[0], self._con.total_changes

    def search_vector(self, vector: np.ndarray, top: int = 10, modality: str | None = None,
                      exclude: set[str] = frozenset(), words: str | None = None, space: str | None = None) -> list[Hit]:
        """Rank by cosine to `vector`; with `words` (the typed query), plus KEYWORD_WEIGHT x the file's keyword
        score for those words (engine.index.keyword_scores). `space`: the model bundle `vector` comes from; files
        whose vectors another bundle made are left out (their cosines would mean nothing; see outdated)."""
        vectors, rels, modalities, item_ids, spaces = self._loaded()
        if not len(rels):
            return []
        scores = vectors @ np.asarray(vector, dtype=np.float32)
        if space is not None:
            scores = np.where(spaces == space, scores, -np.inf)
        if words:
            ids, shares = self._keyword_shares(words)
            rows = np.minimum(np.searchsorted(item_ids, ids), len(item_ids) - 1)  # both in ascending id order
            held = item_ids[rows] == ids  # a file with words but no vector is not in the matrix
            scores[rows[held]] += KEYWORD_WEIGHT * shares[held]
        if modality is not None:
            scores = np.where(modalities == modality, scores, -np.inf)
        for rel in exclude:
            if rel in rels:
                scores[rels.index(rel)] = -np.inf
        count = min(top, int(np.isfinite(scores).sum()))
        if count <= 0:
            return []
        best = np.argpartition(-scores, count - 1)[:count]
        best = best[np.argsort(-scores[best])]
        return self._hits([(rels[i], float(scores[i]), str(modalities[i])) for i in best])

    def keyword_scores(self, query: str) -> dict[str, float]:
        """Each file's keyword score for a typed query, by relative path (see _keyword_shares); files holding none
        of its words are left out."""
        ids, shares = self._keyword_shares(query)
        if not len(ids):
            return {}
        with self._lock:
            paths = dict(self._con.execute(f"SELECT id, path FROM items WHERE id IN ({', '.join('?' * len(ids))})",
                                           [int(i) for i in ids]).fetchall())
        return {paths[int(i)]: float(share) for i, share in zip(ids, shares) if int(i) in paths}

    def _keyword_shares(self, query: str) -> tuple[np.ndarray, np.ndarray]:
        """(item ids, sorted; their shares) for the files whose own words (OCR text, note text, transcripts) hold
        any of the query's terms: the share of the query's terms a file holds, each term weighted by its rarity
        among the files (BM25's IDF), from 0 to 1. A share rather than a BM25 score: one common word shared with
        a note ("coffee" in a shopping list) must not lift the note over the photo of a cup of coffee the query
        describes, while a file holding every term asked for (an invoice number) scores 1. Each term's files come
        from FTS5 in one lookup (3 ms for a query over 100,000 items, where a BM25-ranked OR query took 20)."""
        terms = keyword_terms(query)
        if not terms:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        with self._lock:
            version = self._version()
            if self._word_files is None or self._word_files[0] != version:
                # Counting an FTS5 table reads all of it: 19 ms of a 27 ms keyword lookup at 100,000 files.
                self._word_files = (version, self._con.execute("SELECT COUNT(*) FROM items_words").fetchone()[0])
            files = self._word_files[1]
            holders = [np.fromiter((row[0] for row in self._con.execute(
                "SELECT rowid FROM items_words WHERE items_words MATCH ?", (f'"{term}"',))), dtype=np.int64)
                for term in terms]
        weights = np.array([math.log(1 + (files - len(held) + 0.5) / (len(held) + 0.5)) for held in holders])
        ids, where = np.unique(np.concatenate(holders), return_inverse=True)
        if not len(ids):
            return ids, np.zeros(0, np.float32)
        shares = np.bincount(where, weights=np.repeat(weights, [len(held) for held in holders]), minlength=len(ids))
        return ids, (shares / weights.sum()).astype(np.float32)

    def _hits(self, ranked: list[tuple[str, float, str]]) -> list[Hit]:
        with self._lock:
            hits = []
            for rel, score, modality in ranked:
                ocr, heard, timed, digest = self._con.execute(
                    "SELECT ocr_text, transcript, segments, hash FROM items WHERE path = ?", (rel,)).fetchone()
                segments = [(float(a), float(b), str(t)) for a, b, t in json.loads(timed)] if timed else []
                hits.append(Hit(str(disk_path(self.root, rel)), rel, score, modality, ocr or "", heard or "", segments,
                                digest or ""))
            return hits

    def outdated(self, space: str) -> int:
        """How many files have a vector another model bundle made (an index from before the bundle changed): a
        search leaves them out until an update encodes them again. Counted in the matrix a search loads anyway."""
        return int((self._loaded()[4] != space).sum())

    def stored_vector(self, path: Path, space: str | None = None) -> tuple[str, np.ndarray] | None:
        """(rel, vector) when `path` is an indexed file of this folder whose content is unchanged (and whose
        vector bundle `space` made, when given)."""
        try:
            resolved = path.resolve()
            rel = text_name(resolved.relative_to(self.root).as_posix())  # as the index stores names (engine.folder.walk)
            info = resolved.stat()
        except (ValueError, OSError):
            return None
        with self._lock:
            row = self._con.execute("SELECT vector FROM items WHERE path = ? AND size = ? AND mtime = ? AND "
                                    "(? IS NULL OR space = ?)", (rel, info.st_size, info.st_mtime, space, space)).fetchone()
        if row is None or row[0] is None:
            return None
        return rel, np.frombuffer(row[0], dtype=np.float32)


# ---------------------------------------------------------------------------------------------- entry points


def known_indexes() -> list[Path]:
    """The folders that have an index, from each index's own record of its folder."""
    folders = []
    for path in sorted(indexes_dir().glob(f"*{INDEX_SUFFIX}")):
        try:
            con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
            try:
                row = con.execute("SELECT value FROM meta WHERE key = 'root'").fetchone()
            finally:
                con.close()
        except sqlite3.Error:
            continue  # a half-created or foreign file: not ours to judge
        if row is not None:
            folders.append(Path(row[0]))
    return folders


# What counts as a good match for a typed query (the Search tab's "good matches only", `search --good-only`): a
# score (cosine plus the keyword part) of at least RELEVANCE_FLOOR, and within RELEVANCE_MARGIN of the best hit.
# Calibrated on a mixed folder (5 photos, a scan, a voice memo, 2 notes; 16 queries with a right answer, 7 without):
# right answers scored 0.26-0.87 and were always first, wrong files never within 0.1 of the right one, and 5 of the 7
# queries without an answer said "no good match". On the large benchmark (bench/bench_retrieval.py: 1,060 files,
# 140 answered queries, 18 unanswerable) a fixed floor cannot do both: there the best hit of an unanswerable query
# still scores 0.30-0.68, so this rule silences none of them (while keeping a right file for 88% of the answered
# ones, of the 89% that have one in the top 10); a floor of 0.4 would silence a third there but hide right answers
# that score 0.26-0.4 in a small folder (a voice memo found by meaning alone). Hiding a right answer is the worse
# mistake: the person can turn the filter off, and the command line's default stays every hit.
RELEVANCE_FLOOR = 0.25
RELEVANCE_MARGIN = 0.1


# Words a query is made of but that say nothing about which file is meant: left out of the keyword search.
STOPWORDS = frozenset("""a about all an and any are as at be by can did do does for from had has have how i in is it its
me my of on or our so that the their them there these this those to was we were what when where which who whom why will
with you your find show file files picture photo photos image images document documents""".split())
# What a file holding every word of the query adds to its cosine. Measured (bench/bench_retrieval.py, weights 0.1-1):
# 0.2-0.5 all give recall@10 0.874-0.879; 0.3 has the better first hit (recall@1 0.757, MRR 0.811).
KEYWORD_WEIGHT = 0.3


def keyword_terms(query: str) -> list[str]:
    """What the keyword search looks for in a typed query: its words, lower case, without stopwords, each once;
    a code written with - . / or : between its parts (an invoice number 2024-0178, a date 14.03.2024, a time)
    as one phrase of those parts, so that a file with both parts elsewhere ("2024" in a date) does not match it."""
    terms = []
    for written in re.findall(r"\w+(?:[-./:]\w+)*", query.lower()):
        term = " ".join(re.findall(r"\w+", written))
        if term not in STOPWORDS and term not in terms:
            terms.append(term)
    return terms[:32]


def group_copies(hits: list[Hit]) -> list[Hit]:
    """Ranked hits with each file's copies (the same content, found in other places or other indexed folders)
    folded into the first one's `copies`: an archive with a photo imported twice shows it once."""
    first: dict[str, Hit] = {}
    grouped = []
    for hit in hits:
        if hit.digest and hit.digest in first:
            first[hit.digest].copies.append(hit.path)
            continue
        if hit.digest:
            first[hit.digest] = hit
        grouped.append(hit)
    return grouped


def good_matches(hits: list[Hit]) -> list[Hit]:
    """The hits of a text query that are good matches (ranked best first, as `search` returns them)."""
    if not hits:
        return []
    best = hits[0].score
    return [hit for hit in hits if hit.score >= RELEVANCE_FLOOR and hit.score >= best - RELEVANCE_MARGIN]


def best_passage(query: str, passages: list[str], runtime: Runtime | None = None) -> int:
    """Which of a file's passages (transcript segments, lines of its text) says most nearly what `query` asks:
    where a search result opens. The text encoder alone: the file as a whole was already ranked in the shared
    space, this only picks the place inside it. 0 when there is no query (a "files like this one" search)."""
    from .text import embed_texts

    usable = [i for i, passage in enumerate(passages) if passage.strip()]
    if not query.strip() or len(usable) < 2:
        return usable[0] if usable else 0
    vectors = embed_texts([query] + [passages[i] for i in usable], runtime or get_runtime())
    return usable[int(np.argmax(vectors[1:] @ vectors[0]))]


class IndexWork:
    """Indexing's per-file work: decode -> the perception plan for search -> the fused vector, a batch at a time.
    The same on a cluster's workers (engine.cluster) as in this process."""

    def __init__(self, runtime: Runtime, language: str = "en", workers: int = 4, batch_size: int = 16):
        self.runtime = runtime
        self.language = language
        self.workers = workers
        self.batch_size = batch_size
        self.perceiver = Perceiver(runtime, search_options(runtime, language), decode_workers=workers)

    def spec(self):
        from .cluster import WorkSpec

        return WorkSpec.of("index", self.runtime, {"language": self.language, "batch_size": self.batch_size})

    def process(self, entries: list[FileEntry], stop: threading.Event | None = None) -> Iterator[list[Done]]:
        for batch in perceive_stream(entries, self.perceiver, self.workers, self.batch_size, stop=stop):
            vectors = fused_vectors([p for _, p in batch], self.runtime)
            yield [Done(entry, perceived, vector) for (entry, perceived), vector in zip(batch, vectors)]


def search_options(runtime: Runtime, language: str = "en") -> PerceptionOptions:
    """What an indexed file is perceived with (the perception plan for search), the same for a `--like` file."""
    from .plan import options_for
    from .tasks import speech_model_for

    return options_for(search=True, runtime=runtime,
                       base=PerceptionOptions(speech_model=speech_model_for(language), language=language))


def query_vector(query: str, runtime: Runtime | None = None) -> np.ndarray:
    from .text import embed_texts

    if not query.strip():
        raise FusionDeskError("the search query is empty")
    return embed_texts([query], runtime=runtime or get_runtime())[0]


def file_vector(path: Path | str, indexes: list[FolderIndex], runtime: Runtime | None = None) -> tuple[np.ndarray, Path]:
    """The vector of a file for `--like`: the index's own when it is indexed and unchanged, else encoded now.

    Also returns the file's absolute path, to leave it out of the results (a file is most like itself)."""
    path = Path(path)
    if not path.is_file():
        raise InputFileError(path, "no such file")
    runtime = runtime or get_runtime()
    for index in indexes:
        stored = index.stored_vector(path, runtime.bundle.bundle_version)
        if stored is not None:
            return stored[1], path.resolve()
    (perceived,) = Perceiver(runtime, search_options(runtime)).perceive_files([path])
    if isinstance(perceived, InputFileError):
        raise perceived
    (vector,) = fused_vectors([perceived], runtime)
    if vector is None:
        raise InputFileError(path, "nothing to compare: no speech, text or recognisable content found")
    return vector, path.resolve()


def search(
    query: str | None = None,
    like: Path | str | None = None,
    folders: list[Path] | None = None,
    top: int = 10,
    modality: str | None = None,
    runtime: Runtime | None = None,
    indexes: list[FolderIndex] | None = None,
    keywords: bool = True,
) -> list[Hit]:
    """Rank the files of the given indexed folders (default: every indexed folder) against a text query or a file.

    `indexes`: already open indexes to search instead (the UI keeps them open, so the matrices stay loaded).
    `keywords`: a text query also counts the files' own words (hybrid ranking); False: by meaning alone."""
    if modality is not None and modality not in MODALITIES:
        raise FusionDeskError(f"unknown modality {modality!r}: choose one of {', '.join(MODALITIES)}")
    if (query is None) == (like is None):
        raise FusionDeskError("search needs either a text query or --like FILE")
    owned = indexes is None
    if indexes is None:
        indexes = open_indexes(folders)
    try:
        itself: Path | None = None
        if like is not None:
            vector, itself = file_vector(like, indexes, runtime)
        else:
            vector = query_vector(query or "", runtime)
        space = (runtime or get_runtime()).bundle.bundle_version
        hits: list[Hit] = []
        for index in indexes:
            exclude = {itself.relative_to(index.root).as_posix()} if itself and itself.is_relative_to(index.root) else set()
            hits.extend(index.search_vector(vector, top, modality, exclude, words=query if keywords else None,
                                            space=space))
            outdated = index.outdated(space)
            if outdated:
                warnings.warn(outdated_message(index.root, outdated), OutdatedIndexWarning, stacklevel=2)
        return sorted(hits, key=lambda hit: -hit.score)[:top]
    finally:
        if owned:
            for index in indexes:
                index.close()


class OutdatedIndexWarning(UserWarning):
    """Files of an index have vectors another model bundle made: a search leaves them out."""


def outdated_message(folder: Path, count: int) -> str:
    return (f"{count} file{'s' if count != 1 else ''} of {folder} {'were' if count != 1 else 'was'} indexed with "
            f"another model bundle and {'are' if count != 1 else 'is'} left out of the results: run `fusiondesk "
            f"index {folder}` (or Index this folder in the Search tab) to encode {'them' if count != 1 else 'it'} again")


def open_indexes(folders: list[Path] | None = None) -> list[FolderIndex]:
    """The indexes of the given folders (each must be indexed), or of every indexed folder."""
    if folders:
        return [FolderIndex.existing(folder) for folder in folders]
    indexes = [FolderIndex(folder, index_path_for(folder)) for folder in known_indexes()]
    if not indexes:
        raise FusionDeskError("nothing is indexed yet: process a folder with `fusiondesk batch DIR --out "
                              "RESULTS.jsonl`, or run `fusiondesk index DIR`")
    return indexes
