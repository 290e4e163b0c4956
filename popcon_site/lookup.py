"""The warm half of the index: which directories, the cache, the lookup.

This module runs at the exit of every reporting process, so it uses only
``os``, ``sys`` and ``marshal``.  Building an index (reading distribution
metadata) lives in :mod:`popcon_site.index` and is imported only when a
directory changed since it was last indexed.

The cache holds, for each directory on ``sys.path``, the directory's
``st_mtime_ns`` and the roots of its distributions (see
:mod:`popcon_site.index`).  Installing or removing a distribution changes the
directory's mtime, so a warm check is one ``stat`` per directory.  The roots
are split into ``SHARDS`` separately marshalled shards: a process looks up a
few dozen names, and decoding a shard costs a microsecond where decoding a
1000-distribution table at once cost about 150 microseconds.
"""

import marshal
import os
import sys

__all__ = [
    "CACHE_TAG",
    "FORMAT",
    "SHARDS",
    "Index",
    "cache_locations",
    "load",
    "private_reason",
    "read_cache",
    "search_dirs",
    "shard_of",
]

# Bump when the layout of a cache entry changes; older files are then ignored.
FORMAT = 2
CACHE_TAG = sys.implementation.cache_tag or "python"
SHARDS = 64


def shard_of(name):
    """The shard that holds a root module name: a stable function of the name.

    >>> shard_of("numpy") == shard_of("numpy"), 0 <= shard_of("google.protobuf") < SHARDS
    (True, True)
    """
    # sum() over bytes runs in C; hash() would differ between processes.
    return sum(name.encode("utf-8", "surrogateescape")) % SHARDS


# Larger files are not read: no RECORD or cache comes near it, and a read at
# exit must stay bounded.
READ_LIMIT = 64 << 20


def read_regular(path, limit=READ_LIMIT):
    """The bytes of a regular file, or None.

    Everything read on the exit path goes through here.  A FIFO, a device
    (a symlink to /dev/zero) or a directory in place of a RECORD or a cache
    file would block the exit forever or read without end, so the file is
    opened without blocking and read only if fstat says it is regular and
    not larger than ``limit``.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except (OSError, ValueError):
        return None
    try:
        st = os.fstat(fd)
        if (st.st_mode & 0o170000) != 0o100000 or st.st_size > limit:
            return None
        chunks = []
        remaining = st.st_size
        while remaining > 0:
            chunk = os.read(fd, remaining)
            if not chunk:
                break
            chunks.append(chunk)
            remaining -= len(chunk)
        return b"".join(chunks)
    except OSError:
        return None
    finally:
        os.close(fd)


# --- which directories ------------------------------------------------------


def _under(path, directory):
    directory = directory.rstrip(os.sep)
    return path == directory or path.startswith(directory + os.sep)


def _spellings(path):
    # One directory has several names: relative, through a symlink, or under
    # a home directory that is itself a symlink (on clusters /home/u often
    # points into a parallel filesystem).  Comparing a single spelling let a
    # user's own installs through, so every check compares all of them.
    try:
        absolute = os.path.abspath(path)
        real = os.path.realpath(absolute)
    except (OSError, ValueError):
        # A relative path when the working directory is gone: it names
        # nothing any more, and the report must not be lost over it.
        return (path,)
    return (absolute,) if real == absolute else (absolute, real)


def _prefixes():
    return {sys.prefix, sys.exec_prefix, sys.base_prefix}


def _account_home():
    try:
        import pwd  # built in; only needed for directories outside the environment

        return pwd.getpwuid(os.getuid()).pw_dir
    except (ImportError, KeyError, OSError):
        return None


# What the root of a project's own checkout holds.  Any project that was ever
# built or installed in development mode has its *.egg-info or *.dist-info
# there, and its name may be private; an installed tree never holds these.
_CHECKOUT_MARKERS = ("pyproject.toml", "setup.py", "setup.cfg", ".git")


def _checkout(path):
    """The project checkout that ``path`` is, or is the src directory of, or None."""
    for directory in (path, os.path.dirname(path)):
        if any(os.path.exists(os.path.join(directory, marker)) for marker in _CHECKOUT_MARKERS):
            return directory
    return None


def _private_places():
    """(user site spellings, home spellings, environment prefix spellings)."""
    user_site = getattr(sys.modules.get("site"), "USER_SITE", None)
    sites = _spellings(user_site) if user_site else ()
    # The home directory now, and the one the process started with: test
    # suites and sandboxes point HOME elsewhere before they exit.
    # And the account's own home, which HOME does not always name ("/" in
    # containers run as an arbitrary uid).
    candidates = {os.path.expanduser("~"), getattr(sys.modules.get("popcon_site"), "_startup_home", None),
                  _account_home()}
    # A home of "/" would make every directory private.
    homes = tuple(h for home in candidates if home and home != "~" for h in _spellings(home) if h.rstrip(os.sep))
    prefixes = tuple(s for p in _prefixes() for s in _spellings(p))
    return sites, homes, prefixes


def private_reason(path, places=None):
    """Why a directory holds a user's own installs, or None.

    A user's own installs are those in the user site-packages, and, outside
    the environment's prefixes, those under the home directory (``$HOME``, the
    one at start-up, or the account's) and those in a project's checkout
    (a directory, or the parent of a ``src`` directory, holding
    ``pyproject.toml``, ``setup.py``, ``setup.cfg`` or ``.git``).  Their names
    can be private, so they are not counted unless
    PYTHON_POPCONTEST_INCLUDE_USER=1.
    ``places`` is what :func:`_private_places` returns, computed once per search.
    """
    sites, homes, prefixes = places or _private_places()
    paths = _spellings(path)
    if any(_under(p, s) for p in paths for s in sites):
        return "it is the user site-packages"
    for p in paths:
        if any(_under(p, x) for x in prefixes):
            continue
        if any(_under(p, h) for h in homes):
            return "it is under the home directory, outside the environment"
        checkout = _checkout(p)
        if checkout:
            return "it is in the project checkout %s, outside the environment" % checkout
    return None


def search_dirs(path, include_user=False, debug=None):
    """The directories of ``path`` to index: unique, non-empty, and not a user's
    own unless ``include_user``."""
    dirs = []
    places = None
    # Directories inside the environment's prefixes (the standard library,
    # site-packages) are the environment's own, however they are reached; only
    # the others need the symlink-resolving checks, which cost an lstat per
    # path component.
    inside = tuple(p.rstrip(os.sep) + os.sep for p in _prefixes())
    user_site = getattr(sys.modules.get("site"), "USER_SITE", None) or "\0"
    for entry in path:
        if not entry or type(entry) is not str or entry in dirs:
            continue
        if not include_user and not (entry.startswith(inside) and not _under(entry, user_site)):
            if places is None:
                places = _private_places()
            reason = private_reason(entry, places)
            if reason:
                if debug:
                    debug("not counting distributions in %s: %s" % (entry, reason))
                continue
        dirs.append(entry)
    return dirs


# --- the cache ----------------------------------------------------------------


def _fnv1a(text):
    h = 0xCBF29CE484222325
    for byte in text.encode("utf-8", "surrogateescape"):
        h = ((h ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return "%016x" % h


def cache_locations():
    """Candidate cache files, most shared first, as (kind, path) pairs.

    * ``environment``: inside ``sys.prefix``, shared by every user; written by
      ``popcon-site index`` or by any process that may write there;
    * ``user``: the user's cache directory, for read-only environments;
    * ``temporary``: a private per-user directory under $TMPDIR, for users
      without a writable home.
    """
    name = "index-%s.marshal" % CACHE_TAG
    yield "environment", os.path.join(sys.prefix, "var", "cache", "popcon-site", name)
    per_env = "index-%s-%s.marshal" % (CACHE_TAG, _fnv1a(sys.prefix))
    base = os.environ.get("XDG_CACHE_HOME", "")
    if not os.path.isabs(base):
        home = os.path.expanduser("~")
        base = os.path.join(home, ".cache") if os.path.isabs(home) else ""
    if base:
        yield "user", os.path.join(base, "popcon-site", per_env)
    tmp = os.environ.get("TMPDIR", "")
    if not os.path.isabs(tmp):
        tmp = "/tmp"
    yield "temporary", os.path.join(tmp, "popcon-site-%d" % os.getuid(), per_env)


def private_dir_ok(directory, create):
    """A shared temporary directory is used only if it is ours and closed to others."""
    try:
        if create:
            try:
                os.mkdir(directory, 0o700)
            except FileExistsError:
                pass
        st = os.lstat(directory)
    except OSError:
        return False
    return (st.st_mode & 0o170000) == 0o040000 and st.st_uid == os.getuid() and not st.st_mode & 0o077


def read_cache(kind, path):
    """The directory table of a cache file, or None if it is missing or unusable."""
    if kind == "temporary" and not private_dir_ok(os.path.dirname(path), create=False):
        return None
    raw = read_regular(path)
    if raw is None:
        return None
    try:
        data = marshal.loads(raw)
    except Exception:
        # Truncated, corrupted or from another Python: rebuild.
        return None
    if type(data) is not tuple or len(data) != 3 or data[0] != FORMAT or data[1] != CACHE_TAG:
        return None
    table = data[2]
    return table if type(table) is dict else None


def valid_entry(entry):
    """The shape of one directory's entry: (mtime_ns, deep top-level names, shards).

    Only the shape is checked here, because this runs at every reporting
    exit; a shard or a root of the wrong shape is caught when it is used, and
    its directory is then indexed again (see :attr:`Index.damaged`).
    """
    return (
        type(entry) is tuple
        and len(entry) == 3
        and type(entry[0]) is int
        and type(entry[1]) is frozenset
        and type(entry[2]) is tuple
        and len(entry[2]) == SHARDS
    )


def directory_mtimes(dirs):
    """st_mtime_ns of each of ``dirs`` that is a directory or a zip archive."""
    mtimes = {}
    for directory in dirs:
        try:
            st = os.stat(directory)
        except (OSError, ValueError):
            continue
        # Directories, and regular files: zip archives that Python imports from.
        if (st.st_mode & 0o170000) in (0o040000, 0o100000):
            mtimes[directory] = st.st_mtime_ns
    return mtimes


def load(dirs, debug=None, rebuild=()):
    """Return the Index of ``dirs``, from the cache where it is fresh.

    Directories whose cached mtime differs, and those in ``rebuild``, are
    indexed again (by :mod:`popcon_site.index`) and the result is written to
    the first cache location that accepts it.
    """
    mtimes = directory_mtimes(dirs)
    tables = {}
    read = []
    if mtimes:
        for kind, path in cache_locations():
            table = read_cache(kind, path)
            read.append((kind, path, table))
            if table:
                for directory, mtime in mtimes.items():
                    entry = table.get(directory)
                    if (
                        directory not in tables
                        and directory not in rebuild
                        and valid_entry(entry)
                        and entry[0] == mtime
                    ):
                        tables[directory] = entry
            if len(tables) == len(mtimes):
                break
    stale = [d for d in mtimes if d not in tables]
    if stale:
        from popcon_site import index

        for directory in stale:
            tables[directory] = index.entry_for(directory, mtimes[directory])
        if debug:
            debug("indexed %d directories: %s" % (len(stale), ", ".join(stale)))
        index.save(tables, read, debug)
    return Index([(d, tables[d][1], tables[d][2]) for d in mtimes])


# --- looking up ---------------------------------------------------------------

_EMPTY = {}
_EMPTY_SHARD = marshal.dumps({})


class Index:
    """Root tables of several directories, searched in ``sys.path`` order.

    ``damaged`` collects the directories whose cached entry turned out to be
    unusable while looking up; the caller indexes them again.
    """

    __slots__ = ("_tables", "_deep", "_decoded", "damaged")

    def __init__(self, tables):
        # tables: (directory, deep top-level names, shards), in sys.path order.
        # Directories with no distribution at all (the standard library's)
        # are dropped here, so that lookups do not decode their shards.
        self._tables = [t for t in tables if t[2].count(_EMPTY_SHARD) != SHARDS]
        deep = set()
        for _, d, _ in self._tables:
            deep.update(d)
        self._deep = deep
        self._decoded = {}
        self.damaged = set()

    def _roots(self, position, shard):
        key = (position, shard)
        roots = self._decoded.get(key)
        if roots is None:
            directory, _, shards = self._tables[position]
            try:
                roots = marshal.loads(shards[shard])
            except Exception:
                roots = None
            if type(roots) is not dict:
                self.damaged.add(directory)
                roots = _EMPTY
            self._decoded[key] = roots
        return roots

    def owner(self, module):
        """Return (canonical name, version) of the distribution that owns a
        module, or None.  The deepest owner wins: ``google.protobuf.message``
        is looked up as ``google.protobuf.message``, ``google.protobuf`` and
        ``google``, in that order."""
        match = self._match(module)
        return None if match is None else match[:2]

    def _match(self, module):
        # (canonical name, version, root, directory) of the owner, or None.
        top = module.partition(".")[0]
        if top in self._deep:
            parts = module.split(".")
            keys = [".".join(parts[:i]) for i in range(len(parts), 0, -1)]
        else:
            keys = (top,)
        for key in keys:
            shard = shard_of(key)
            for position in range(len(self._tables)):
                hit = self._roots(position, shard).get(key)
                if hit is None:
                    continue
                directory = self._tables[position][0]
                if type(hit) is tuple and len(hit) == 2 and type(hit[0]) is str and type(hit[1]) is str:
                    return hit[0], hit[1], key, directory
                self.damaged.add(directory)
        return None

    def libraries(self, modules, keep=None):
        """Map the canonical name of every distribution owning one of ``modules``
        to its version; each distribution appears once.  ``keep(root, directory)``,
        when given, can refuse a match (a local module shadowing the library)."""
        found = {}
        seen = set()
        deep = self._deep
        for module in modules:
            top = module.partition(".")[0]
            key = module if top in deep else top
            if key in seen:
                continue
            seen.add(key)
            hit = self._match(key)
            if hit is not None and (keep is None or keep(hit[2], hit[3])):
                found[hit[0]] = hit[1]
        return found
