"""Aggregated counts: kept in memory, written to SQLite.

One collector owns a store file at a time (an exclusive lock on
``<db>.lock``, beside the file a symbolic link points to).  It keeps every
total in memory, which the cardinality cap bounds, and writes the totals
that changed since the last flush in one transaction.  Writing absolute totals rather than increments makes a flush
idempotent, and SQLite's WAL journal makes each flush atomic: a SIGKILL loses
at most the counts received since the last flush, and never leaves a partial
one.  Readers (``popcon-site report --db``) see the last committed flush
while the collector keeps writing.
"""

import fcntl
import math
import os
import sqlite3
import stat
import threading

from popcon_site.collector.lines import ACCEPTED, OUTCOMES, OVER_CAP, is_library, is_version

__all__ = ["DEFAULT_MAX_SERIES", "CountStore", "Snapshot", "StoreError", "check_path", "read_counts"]

SCHEMA_VERSION = "1"
DEFAULT_MAX_SERIES = 10000
# How many refused names are remembered so that a name refused again is not
# counted again; past this, names_dropped over-counts rather than grow memory.
DROPPED_MEMORY = 10000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS library_used (
    library TEXT NOT NULL,
    version TEXT NOT NULL,
    count REAL NOT NULL,
    PRIMARY KEY (library, version)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS totals (
    name TEXT PRIMARY KEY,
    count REAL NOT NULL
) WITHOUT ROWID;
"""

_REPORTS = "reports"
_NAMES_DROPPED = "names_dropped"
_LINE_TOTAL = "lines."


class StoreError(Exception):
    """The store file cannot be created, opened, locked or written.  The
    message says which file and why, in words an admin can act on."""


def _describe(exc):
    text = str(exc)
    if isinstance(exc, sqlite3.OperationalError) and "disk is full" in text:
        return "the disk is full"
    if isinstance(exc, sqlite3.OperationalError) and "disk I/O error" in text:
        return "disk I/O error (a full disk or a file size limit gives this too)"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror[0].lower() + exc.strerror[1:]
    return text


class Snapshot:
    """A consistent copy of every total, for /metrics and reports."""

    __slots__ = ("libraries", "reports", "lines", "names_dropped", "series", "max_series")

    def __init__(self, libraries, reports, lines, names_dropped, series=0, max_series=0):
        self.libraries = libraries  # {(library, version): count}
        self.reports = reports
        self.lines = lines  # {outcome: count}
        self.names_dropped = names_dropped
        self.series = series
        self.max_series = max_series


def _connect(path, readonly=False, immutable=False):
    if readonly:
        uri = "file:%s?%s" % (_uri_path(path), "immutable=1" if immutable else "mode=ro")
        conn = sqlite3.connect(uri, uri=True, timeout=10, isolation_level=None, check_same_thread=False)
    else:
        conn = sqlite3.connect(path, timeout=10, isolation_level=None, check_same_thread=False)
    return conn


def _uri_path(path):
    from urllib.parse import quote

    return quote(os.path.abspath(path))


def _foreign_tables(conn):
    """The tables of a database that is not a popcon-site store, or []."""
    tables = [name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    if not tables:
        return []
    if "meta" in tables and conn.execute("SELECT 1 FROM meta WHERE key = 'schema'").fetchone():
        return []
    return sorted(t for t in tables if t not in ("meta", "library_used", "totals"))


def _damaged(path, what):
    return StoreError("%s is damaged: %s; move it aside to start a new one" % (path, what))


def _shown(value, limit=40):
    """A stored value for a message: its repr, on one line and short."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _stored_count(value):
    """A stored count as a float, or None when it is not a finite whole
    number of 0 or more.  SQLite lets a REAL column hold text, a blob or
    infinity, and a store edited by hand may hold anything."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        value = float(value)
    except OverflowError:
        return None
    if not math.isfinite(value) or value < 0 or not value.is_integer():
        return None
    return value


def _check_meta(path, meta):
    """Refuse a store whose format or prefix the collector could not have
    written."""
    from popcon_site.config import prefix_problem

    for key in ("schema", "prefix"):
        if key in meta and not isinstance(meta[key], str):
            raise _damaged(path, "its %s is %s, not text" % (key, _shown(meta[key])))
    prefix = meta.get("prefix")
    if prefix is not None and prefix_problem(prefix):
        raise _damaged(path, "its prefix %s is not one the collector accepts" % (_shown(prefix),))
    if meta.get("schema", SCHEMA_VERSION) != SCHEMA_VERSION:
        raise StoreError("%s has store format %r; this version reads %r" % (path, meta["schema"], SCHEMA_VERSION))


def _load(conn, path):
    """Every total of a store, each row checked to be what the collector
    itself writes, so that a damaged store is refused here, in one line,
    rather than crashing a report or a running collector later."""
    libraries = {}
    seen = set()
    for library, version, count in conn.execute("SELECT library, version, count FROM library_used"):
        if not is_library(library):
            raise _damaged(path, "library_used holds the library name %s, which is not a canonical name"
                           % (_shown(library),))
        if not is_version(version):
            raise _damaged(path, "library_used holds the version %s of %s, which is not a version"
                           % (_shown(version), library))
        value = _stored_count(count)
        if value is None:
            raise _damaged(path, "library_used holds the count %s for %s, not a whole number of 0 or more"
                           % (_shown(count), library + (" " + version if version else "")))
        if (library, version) in seen:
            raise _damaged(path, "library_used holds %s twice" % (library + (" " + version if version else ""),))
        seen.add((library, version))
        # Counts of 0 (accepted before only whole counts of at least 1 were)
        # are no series: they would take room under the cap, and Prometheus,
        # which drops them from a sum, would disagree with the store.
        if value > 0:
            libraries[(library, version)] = value
    totals = {}
    for name, count in conn.execute("SELECT name, count FROM totals"):
        if not isinstance(name, str):
            raise _damaged(path, "totals holds the name %s, not text" % (_shown(name),))
        value = _stored_count(count)
        if value is None:
            raise _damaged(path, "totals holds the count %s for %s, not a whole number of 0 or more"
                           % (_shown(count), name))
        if name in totals:
            raise _damaged(path, "totals holds %s twice" % (name,))
        totals[name] = value
    lines = {outcome: int(totals.get(_LINE_TOTAL + outcome, 0)) for outcome in OUTCOMES}
    return libraries, totals.get(_REPORTS, 0.0), lines, int(totals.get(_NAMES_DROPPED, 0))


def read_counts(path):
    """Read the last committed totals of a store file without disturbing the
    collector that may be writing it.  Returns ``(prefix, Snapshot)``."""
    if not os.path.exists(path):
        raise StoreError("%s does not exist; is `popcon-site collect --db %s` running, or did it ever run?" % (path, path))
    # Checked without opening anything: SQLite would wait forever on a FIFO.
    kind = _not_a_file(path)
    if kind:
        raise StoreError("%s is %s, not a store file; give --db the file `popcon-site collect` writes" % (path, kind))
    _check_companions(path, _journals(path))
    try:
        try:
            meta, loaded = _read(path)
        except sqlite3.OperationalError:
            # A WAL store whose collector stopped cleanly has no -wal and
            # -shm files, and a reader without write access to the directory
            # cannot create them ("attempt to write a readonly database").
            # Without a -wal file there is no writer, and the main file alone
            # is the whole store: read it as an immutable file.
            if os.path.exists(_journals(path)[0]) or not _cannot_write_beside(path):
                raise
            meta, loaded = _read(path, immutable=True)
    except sqlite3.Error as exc:
        raise StoreError("cannot read %s: %s" % (path, _describe(exc))) from None
    libraries, reports, lines, dropped = loaded
    return meta.get("prefix"), Snapshot(libraries, reports, lines, dropped, len(libraries))


def _cannot_write_beside(path):
    directory = os.path.dirname(os.path.abspath(path))
    return not os.access(directory, os.W_OK) or not os.access(path, os.W_OK)


def _read(path, immutable=False):
    conn = _connect(path, readonly=True, immutable=immutable)
    try:
        # One read transaction: the denominator and the library counts come
        # from the same flush.
        conn.execute("BEGIN")
        meta = dict(conn.execute("SELECT key, value FROM meta"))
        _check_meta(path, meta)
        loaded = _load(conn, path)
        conn.execute("COMMIT")
    finally:
        conn.close()
    return meta, loaded


def check_path(path):
    """Refuse a store path that cannot be a file, before anything is created."""
    if not path:
        raise StoreError("the store path is empty; give --db the path of a file")
    kind = _not_a_file(path)
    if kind:
        raise StoreError("%s is %s; give --db the path of a file" % (path, kind))
    parent = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise StoreError("cannot store counts in %s: %s is not a directory" % (path, parent))
    _check_companions(path, _journals(path) + (_lock_path(path),))


_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def _not_a_file(path):
    """What ``path`` is when it exists and is not a regular file (or a
    symbolic link to one), such as "a FIFO (named pipe)"; else None."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        # Missing, or not reachable: opening it says why, in its own words.
        return None
    if stat.S_ISREG(mode):
        return None
    for test, kind in _KINDS:
        if test(mode):
            return kind
    return "not a regular file"


def _check_companions(path, names):
    """Refuse a store whose journal, shared-memory or lock file is not a
    regular file: SQLite or the lock would block on a FIFO, or use it."""
    for name in names:
        kind = _not_a_file(name)
        if kind:
            raise StoreError("cannot use the store %s: %s is %s, not a file; remove it" % (path, name, kind))


def _journals(path):
    """The write-ahead log and shared-memory files of a store: SQLite puts
    them beside the file a symbolic link points to."""
    real = os.path.realpath(path)
    return real + "-wal", real + "-shm"


def _lock_path(path):
    """The lock file of a store, named after the file itself rather than
    the spelling of its path, so that two collectors given the store through
    a symbolic link, ``//`` or a relative path take the same lock."""
    return os.path.realpath(path) + ".lock"


class CountStore:
    """The collector's totals for one prefix, backed by one SQLite file."""

    def __init__(self, path, prefix, max_series=DEFAULT_MAX_SERIES):
        self.path = path
        self.prefix = prefix
        self.max_series = max_series
        self._lock = threading.Lock()
        self._lock_file = None
        self._conn = None
        # What this store created, so that a collector that cannot start
        # leaves nothing behind: (files, directories, deepest first).
        self._created = ([], [])
        check_path(path)
        directory = os.path.dirname(os.path.abspath(path))
        missing = []
        parent = directory
        while not os.path.exists(parent):
            missing.append(parent)
            parent = os.path.dirname(parent)
        try:
            os.makedirs(directory, exist_ok=True)
        except OSError as exc:
            self._created[1].extend(d for d in missing if os.path.isdir(d))
            self.discard()
            raise StoreError("cannot create the directory %s: %s" % (directory, _describe(exc))) from None
        self._created[1].extend(missing)
        try:
            self._take_file_lock()
            if not os.path.exists(path):
                # The file SQLite creates, through a symbolic link too.
                self._created[0].append(os.path.realpath(path))
                self._created[0].extend(_journals(path))
            self._open()
        except BaseException:
            self.discard()
            raise

    def discard(self):
        """Close, and remove what this store created: for a collector that
        stops before it counted anything."""
        self._close_db()
        files, directories = self._created
        for name in files:
            try:
                os.unlink(name)
            except OSError:
                pass
        self.close()
        for name in directories:
            try:
                os.rmdir(name)
            except OSError:
                break
        self._created = ([], [])

    def _take_file_lock(self):
        lock_path = _lock_path(self.path)
        existed = os.path.exists(lock_path)
        try:
            # Non-blocking: a FIFO put there since check_path must not hang
            # the start (opened for writing, one without a reader fails).
            fd = os.open(lock_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NONBLOCK | os.O_CLOEXEC, 0o666)
        except OSError as exc:
            raise StoreError("cannot store counts in %s: %s" % (self.path, _describe(exc))) from None
        self._lock_file = os.fdopen(fd, "a")
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            self._lock_file.close()
            self._lock_file = None
            raise StoreError("cannot use the store %s: %s is not a regular file; remove it" % (self.path, lock_path))
        try:
            fcntl.flock(self._lock_file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            # Another collector holds it: the file is theirs, whoever made it.
            self._lock_file.close()
            self._lock_file = None
            raise StoreError("%s is in use by another collector" % (self.path,)) from None
        if not existed:
            # Listed first: removed while still held, so that no other
            # collector can have locked the name in between.
            self._created[0].insert(0, lock_path)

    def _open(self):
        try:
            conn = _connect(self.path)
            self._conn = conn
            foreign = _foreign_tables(conn)
        except sqlite3.Error as exc:
            raise StoreError("cannot open %s: %s" % (self.path, _describe(exc))) from None
        if foreign:
            # Checked before anything is written: adopting another program's
            # database would add tables to it and switch it to WAL for good.
            raise StoreError(
                "%s is a database of another program (tables %s), not a popcon-site store; give --db a path "
                "of its own" % (self.path, ", ".join(foreign[:5]))
            )
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            # In WAL mode, NORMAL loses nothing when the process dies; only a
            # power cut can lose the last transactions.
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.executescript(_SCHEMA)
            meta = dict(conn.execute("SELECT key, value FROM meta"))
        except sqlite3.Error as exc:
            raise StoreError("cannot open %s: %s" % (self.path, _describe(exc))) from None
        _check_meta(self.path, meta)
        stored_prefix = meta.get("prefix")
        if stored_prefix is not None and stored_prefix != self.prefix:
            raise StoreError(
                "%s holds counts for the prefix %r, not %r; use --prefix %s or another --db"
                % (self.path, stored_prefix, self.prefix, stored_prefix)
            )
        try:
            # Checked before anything is written: a damaged store is left as
            # it was, for its owner to look at.
            self.libraries, self.reports, self.lines, self.names_dropped = _load(conn, self.path)
        except sqlite3.Error as exc:
            raise StoreError("cannot read %s: %s" % (self.path, _describe(exc))) from None
        try:
            with self._transaction() as c:
                c.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,))
                c.execute("INSERT OR IGNORE INTO meta VALUES ('prefix', ?)", (self.prefix,))
        except sqlite3.Error as exc:
            raise StoreError("cannot write %s: %s" % (self.path, _describe(exc))) from None
        self._dirty_libraries = set()
        self._dirty_totals = False
        # Names refused by the cap, remembered up to a bound so that a name
        # sent again is not counted as another dropped name.
        self._dropped_seen = set()

    def _transaction(self):
        conn = self._conn

        class _Tx:
            def __enter__(self_):
                conn.execute("BEGIN IMMEDIATE")
                return conn

            def __exit__(self_, exc_type, exc, tb):
                if exc_type is None:
                    conn.execute("COMMIT")
                else:
                    try:
                        conn.execute("ROLLBACK")
                    except sqlite3.Error:
                        pass
                return False

        return _Tx()

    def add(self, results):
        """Apply parsed lines: an iterable of ``(outcome, key, count)``."""
        libraries = self.libraries
        lines = self.lines
        dirty = self._dirty_libraries
        with self._lock:
            for outcome, key, count in results:
                if outcome == ACCEPTED:
                    if key is None:
                        self.reports += count
                    elif key in libraries:
                        libraries[key] += count
                        dirty.add(key)
                    elif len(libraries) < self.max_series:
                        libraries[key] = count
                        dirty.add(key)
                    else:
                        outcome = OVER_CAP
                        if key not in self._dropped_seen:
                            self.names_dropped += 1
                            if len(self._dropped_seen) < DROPPED_MEMORY:
                                self._dropped_seen.add(key)
                lines[outcome] += 1
            self._dirty_totals = True

    def snapshot(self):
        with self._lock:
            return Snapshot(
                dict(self.libraries),
                self.reports,
                dict(self.lines),
                self.names_dropped,
                len(self.libraries),
                self.max_series,
            )

    def flush(self):
        """Write the totals that changed since the last flush, atomically.

        Raises StoreError when the write fails (a full disk, say); the totals
        stay in memory, and the next flush tries again."""
        with self._lock:
            if not self._dirty_totals and not self._dirty_libraries:
                return
            rows = [(lib, ver, self.libraries[(lib, ver)]) for lib, ver in self._dirty_libraries]
            totals = [(_REPORTS, self.reports), (_NAMES_DROPPED, self.names_dropped)]
            totals.extend((_LINE_TOTAL + outcome, count) for outcome, count in self.lines.items())
            self._dirty_libraries = set()
            self._dirty_totals = False
        try:
            with self._transaction() as c:
                c.executemany("INSERT OR REPLACE INTO library_used VALUES (?, ?, ?)", rows)
                c.executemany("INSERT OR REPLACE INTO totals VALUES (?, ?)", totals)
        except sqlite3.Error as exc:
            with self._lock:
                self._dirty_libraries.update((lib, ver) for lib, ver, _ in rows)
                self._dirty_totals = True
            raise StoreError("cannot write %s: %s" % (self.path, _describe(exc))) from None

    def unflushed(self):
        """How many series and totals wait for the next flush."""
        with self._lock:
            return len(self._dirty_libraries) + (1 if self._dirty_totals else 0)

    def _close_db(self):
        if self._conn is not None:
            try:
                self._conn.close()
            except sqlite3.Error:
                pass
            self._conn = None

    def close(self):
        self._close_db()
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None
