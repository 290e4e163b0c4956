"""The exit path: new modules -> libraries -> statsd lines -> send.

Imported lazily by the start-up hook's exit handler, and only in processes
that imported something after site initialisation.  With a warm index it
imports nothing beyond :mod:`popcon_site.wire`, ``marshal`` and
``_socket``; in particular not ``importlib.metadata``, ``statsd``,
``packaging``, ``json``, ``socket`` or ``email``, each of which costs tens of
milliseconds.

It also holds the warm half of the index: which directories count, the
cache, the lookup.  Building an index (reading distribution metadata) lives
in :mod:`popcon_site.index` and is imported only when a directory changed
since it was last indexed.  Every module imported at exit costs about 0.3M
instructions before its first line runs, so the exit path is two modules,
this one and :mod:`popcon_site.wire`; :mod:`popcon_site.config` gathers
the settings for the CLI.

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

from popcon_site import wire

__all__ = [
    "CACHE_TAG",
    "FORMAT",
    "SHARDS",
    "Index",
    "cache_locations",
    "debug",
    "libraries_used",
    "load",
    "private_reason",
    "read_cache",
    "report",
    "report_at_exit",
    "search_dirs",
    "shard_of",
]

# Never counted: the counter itself.
_SELF = "popcon-site"


def debug(message):
    """Write one diagnostic line to fd 2, only when PYTHON_POPCONTEST_DEBUG is on.

    fd 2 rather than ``sys.stderr``: at exit ``sys.stderr`` may be closed or
    replaced by the program, and the line must not depend on that.
    """
    if wire.is_true(os.environ.get("PYTHON_POPCONTEST_DEBUG")):
        _write_stderr("popcon-site: %s\n" % message)


def _write_stderr(text):
    # Started with stderr closed (2>&-), fd 2 may since have become a file
    # of the program's own: the interpreter then has no sys.__stderr__, and
    # nothing is written.
    if sys.__stderr__ is None:
        return
    try:
        without_sigxfsz(os.write, 2, text.encode("utf-8", "backslashreplace"))
    except Exception:
        pass


def without_sigxfsz(function, *args):
    """``function(*args)`` with SIGXFSZ held back: a write beyond a file size
    limit (ulimit -f) then fails with EFBIG instead of killing the process.

    Python ignores SIGXFSZ, but a program may restore its default action.
    The signal a failed write leaves pending is taken back, unless the
    program had blocked SIGXFSZ itself."""
    import _signal

    mask = _signal.pthread_sigmask(_signal.SIG_BLOCK, [_signal.SIGXFSZ])
    try:
        return function(*args)
    finally:
        if _signal.SIGXFSZ not in mask:
            _signal.sigtimedwait([_signal.SIGXFSZ], 0)
        _signal.pthread_sigmask(_signal.SIG_SETMASK, mask)


def libraries_used(module_names, search_path, include_user=False, local=()):
    """Map each installed distribution owning one of ``module_names`` to its version.

    ``search_path`` is the process's ``sys.path`` without the script's
    directory, ``local`` the program's own directories.  popcon-site itself is
    left out.
    """
    dirs = search_dirs(search_path, include_user, debug)

    modules = sys.modules
    sep = os.sep

    def installed(module_name, directory):
        # The installed copy itself, the common case, decided here at once;
        # _shadowed looks at anything else (and at modules that fight back).
        try:
            where = getattr(modules.get(module_name), "__file__", None)
        except Exception:
            where = None
        if type(where) is str and where.startswith(directory) and where[len(directory):len(directory) + 1] == sep:
            return True
        if _shadowed(module_name, directory, search_path, local):
            debug("not counting %s: this copy is not the one installed in %s" % (module_name, directory))
            return False
        return True

    found = load(dirs, debug)
    libraries = found.libraries(module_names, installed)
    if found.damaged:
        # A cached entry of the wrong shape (damage, a foreign writer) would
        # otherwise hide its directory's libraries until the directory changes.
        debug("damaged index cache entries for %s; indexing again" % ", ".join(sorted(found.damaged)))
        libraries = load(dirs, debug, rebuild=found.damaged).libraries(module_names, installed)
    libraries.pop(_SELF, None)
    return libraries


def report(module_names, search_path, environ, local=()):
    """Send one process's report, or explain on stderr (debug) why not.

    ``local`` are the program's own directories: a module loaded from one of
    them is not the installed library of the same name."""
    host, port, prefix, problems = wire.read_settings(environ)
    if problems:
        for problem in problems:
            debug("nothing sent: " + problem)
        return
    include_user = wire.is_true(environ.get("PYTHON_POPCONTEST_INCLUDE_USER"))
    libraries = libraries_used(module_names, search_path, include_user, local)
    if not libraries:
        debug("no imported module belongs to an installed distribution; nothing sent")
        return
    lines = wire.report_lines(prefix, libraries, wire.is_true(environ.get("PYTHON_POPCONTEST_VERSIONS")))
    datagrams = wire.pack_datagrams(lines)
    target = "%s:%d" % (host, port)
    if wire.is_true(environ.get("PYTHON_POPCONTEST_DRY_RUN")):
        _write_stderr("popcon-site: dry run, would send to %s:\n%s\n" % (target, "\n".join(lines)))
        return
    try:
        wire.send_datagrams(host, port, datagrams, debug)
    except (OSError, UnicodeError) as exc:
        debug("could not send to %s: %s" % (target, exc))
        return
    debug("sent %d lines in %d datagrams to %s" % (len(lines), len(datagrams), target))


def _local_directories(script_entry):
    """Where the program's own code lives: the script's directory (or the cwd)
    that the interpreter put first on ``sys.path``, in every spelling.

    The start-up hook saw that entry arrive after site had run
    (``script_entry``; None with -I, -P or safe_path).  A script that changes
    ``sys.path`` before its first import has moved it, so the directory of the
    ``__main__`` script counts too; the interpreter deletes
    ``__main__.__file__`` once the script has run, but its loader keeps it.
    """
    places = []
    if type(script_entry) is str:
        places.append(script_entry or os.curdir)
    main = sys.modules.get("__main__")
    script = getattr(getattr(main, "__loader__", None), "path", None) or getattr(main, "__file__", None)
    # -m runs have a spec, and their sys.path[0] is the cwd, seen above.
    if type(script) is str and getattr(main, "__spec__", None) is None:
        place = os.path.dirname(script) or os.curdir
        if place not in places:  # mostly the same directory: resolved once
            places.append(place)
    local = set()
    for place in places:
        local.add(_absolute(place))
        local.add(_absolute(place, os.path.realpath))
    local.discard(None)
    return local


def _absolute(path, how=os.path.abspath):
    # The program may have removed its working directory before it exits (a
    # test suite's temporary directory): a relative path then has no absolute
    # form, raises, and names nothing that could be indexed anyway.
    try:
        return how(path)
    except OSError:
        return None


def _identity(path):
    """(st_dev, st_ino) of a directory, the same under every name it has, or None."""
    try:
        st = os.stat(path)
    except (OSError, ValueError, TypeError):
        return None
    return st.st_dev, st.st_ino


def _search_path(baseline_path, local):
    """The directories to search: sys.path as it was once site had finished,
    then those the program added since (a notebook's
    ``sys.path.append('/shared/lib')``), never the program's own directories,
    whatever their spelling (``//dir``, ``dir/.``, a symlink, another mount)."""
    # Directories inside the environment are its own whatever the program
    # is: only the others are compared by identity, which costs a stat each.
    inside = _inside_prefixes()
    local_ids = []

    def is_local(absolute):
        if absolute in local:
            return True
        if absolute.startswith(inside):
            return False
        if not local_ids:
            local_ids.append({_identity(place) for place in local} - {None})
        return _identity(absolute) in local_ids[0]

    path = []
    for entry in baseline_path:
        absolute = _absolute(entry) if type(entry) is str else None
        if absolute is not None and not is_local(absolute):
            path.append(entry)
    current = sys.path if type(sys.path) is list else []
    for entry in current:
        if type(entry) is str and os.path.isabs(entry) and entry not in path and not is_local(os.path.abspath(entry)):
            path.append(entry)
    return path


def _shadowed(module_name, directory, path, local):
    """Whether the module of that name is another copy, not the installed one.

    It is when the module was loaded through another ``sys.path`` entry than
    ``directory``, where the distribution is installed (the longest entry
    holding its file decides: a local ``acme_widgets.py`` in the script's
    directory, a ``six.py`` dropped into a PYTHONPATH directory), while the
    distribution's code really is in ``directory``.  An editable install keeps
    its code elsewhere, often in the very checkout being run, so it is never
    a shadow.
    """
    try:
        module = sys.modules.get(module_name)
        where = getattr(module, "__file__", None)
        if type(where) is not str:
            locations = getattr(module, "__path__", None)
            where = next(iter(locations), None) if type(locations) is list and locations else None
        if type(where) is not str:
            return False
        if where.startswith(directory) and where[len(directory):len(directory) + 1] == os.sep:
            return False  # the installed copy itself: the common case, decided at once
        where = _absolute(where)
        best = ""
        for entry in (*path, *local):
            entry = _absolute(entry) if type(entry) is str else None
            if entry and where.startswith(entry.rstrip(os.sep) + os.sep) and len(entry) > len(best):
                best = entry
        if not best or best == directory or _absolute(best, os.path.realpath) == _absolute(directory, os.path.realpath):
            return False
        installed = os.path.join(directory, *module_name.split("."))
        if os.path.isdir(installed):
            return True
        head, tail = os.path.split(installed)
        return any(n.partition(".")[0] == tail and n.endswith((".py", ".pyc", ".so", ".pyd")) for n in os.listdir(head))
    except Exception:
        # A module object that fights back (a hostile __getattribute__) is
        # simply not examined.
        return False


def report_at_exit(candidates, baseline_pid, baseline_path, script_entry=None):
    """The body of the exit handler, given the modules imported after the
    baseline that are not in the standard library, ``sys.path`` as it was once
    site had finished (less the script's entry) and that entry.  Never raises;
    explains itself under debug."""
    try:
        if os.getpid() != baseline_pid:
            # Forked by C code that skipped the fork hooks: the parent's
            # baseline does not describe this process.
            return
        environ = os.environ
        if wire.opted_out(environ):
            debug("PYTHON_POPCONTEST_DISABLE is set; nothing sent")
            return
        rank = wire.nonzero_rank(environ)
        if rank is not None:
            debug("%s is not 0 and only rank 0 reports (PYTHON_POPCONTEST_ALL_RANKS=1 changes that)" % rank)
            return
        local = _local_directories(script_entry)
        search_path = _search_path(baseline_path, local)
        # By now the program may have emptied or replaced sys.path, and the
        # exit path still imports from the standard library (_socket from
        # lib-dynload, bisect to index): the directories the process had when
        # site had finished are appended for as long as the report runs.
        # Appended, not substituted: daemon threads may still be importing
        # from the program's own entries meanwhile.
        program_path = sys.path
        current = program_path if type(program_path) is list else []
        missing = [entry for entry in baseline_path if type(entry) is str and entry not in current]
        if missing:
            sys.path = current + missing
        try:
            report(candidates, search_path, environ, local)
        finally:
            sys.path = program_path
    except BaseException as exc:  # noqa: BLE001 - this runs inside someone else's process
        if wire.is_true(os.environ.get("PYTHON_POPCONTEST_DEBUG")):
            try:
                # One line, like every other debug line: the error and where
                # it was raised.
                tb = exc.__traceback__
                while tb is not None and tb.tb_next is not None:
                    tb = tb.tb_next
                where = "%s:%d" % (tb.tb_frame.f_code.co_filename, tb.tb_lineno) if tb is not None else "?"
                debug("report failed: %s: %s (at %s)" % (type(exc).__name__, str(exc).replace("\n", " "), where))
            except BaseException:
                pass


# --- the warm half of the index ------------------------------------------------

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


def _inside_prefixes():
    # For str.startswith: what every path inside one of the prefixes begins with.
    return tuple(p.rstrip(os.sep) + os.sep for p in _prefixes())


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
    # The same directories by identity, for a path that reaches them under a
    # name no spelling above gives: a bind mount, an automounter's alias
    # (/net/server/home/u).  The environment wins over the home it lies in.
    identities = {}
    for kind, places in (("home", homes), ("site", sites), ("prefix", prefixes)):
        for place in places:
            identity = _identity(place)
            if identity is not None:
                identities[identity] = kind
    return sites, homes, prefixes, identities


def private_reason(path, places=None):
    """Why a directory holds a user's own installs, or None.

    A user's own installs are those in the user site-packages, and, outside
    the environment's prefixes, those under the home directory (``$HOME``, the
    one at start-up, or the account's) and those in a project's checkout
    (a directory, or a directory directly inside one, holding
    ``pyproject.toml``, ``setup.py``, ``setup.cfg`` or ``.git``).  Their names
    can be private, so they are not counted unless
    PYTHON_POPCONTEST_INCLUDE_USER=1.
    ``places`` is what :func:`_private_places` returns, computed once per search.
    """
    sites, homes, prefixes, identities = places or _private_places()
    paths = _spellings(path)
    if any(_under(p, s) for p in paths for s in sites):
        return _REASONS["site"]
    for p in paths:
        if any(_under(p, x) for x in prefixes):
            continue
        if any(_under(p, h) for h in homes):
            return _REASONS["home"]
        checkout = _checkout(p)
        if checkout:
            return "it is in the project checkout %s, outside the environment" % checkout
    # The directory and each of its parents by identity, nearest first.
    identity = _identity(paths[-1])
    current, current_identity = paths[-1], identity
    while True:
        kind = identities.get(current_identity)
        if kind == "prefix":
            return None
        if kind in _REASONS:
            return _REASONS[kind]
        parent = os.path.dirname(current)
        if parent == current:
            break
        current, current_identity = parent, _identity(parent)
    # A bind mount of a directory *inside* the home (a container's
    # --bind ~/libs:/opt/libs) shares no ancestor with it; only a directory
    # on the filesystem of a home or user site can be one.
    if identity is None or identity[0] not in {dev for (dev, _), kind in identities.items() if kind != "prefix"}:
        return None
    from popcon_site import mounts

    return _REASONS.get(mounts.inside_which(paths[-1], (("prefix", prefixes), ("site", sites), ("home", homes))))


_REASONS = {"site": "it is the user site-packages",
            "home": "it is under the home directory, outside the environment"}


def search_dirs(path, include_user=False, debug=None):
    """The directories of ``path`` to index: unique, non-empty, and not a user's
    own unless ``include_user``."""
    dirs = []
    places = None
    # Directories inside the environment's prefixes (the standard library,
    # site-packages) are the environment's own, however they are reached; only
    # the others need the symlink-resolving checks, which cost an lstat per
    # path component.
    inside = _inside_prefixes()
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
    yield "environment", os.path.join(sys.prefix, "var/cache/popcon-site", name)  # one join: at every exit
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


def _quiet_loads(data):
    # A damaged file can hold a dict with a bytes and a str key of equal
    # hash, and building it compares them: under python -b that warns on the
    # program's stderr, under -bb it raises.
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BytesWarning)
        return marshal.loads(data)


# Only python -b pays for silencing marshal and checking the types of keys:
# elsewhere comparing bytes with str is merely unequal.
_BYTES_WARNING = bool(sys.flags.bytes_warning)
_loads = _quiet_loads if _BYTES_WARNING else marshal.loads


def read_cache(kind, path):
    """The directory table of a cache file, or None if it is missing or unusable."""
    if kind == "temporary" and not private_dir_ok(os.path.dirname(path), create=False):
        return None
    raw = read_regular(path)
    if raw is None:
        return None
    try:
        data = _loads(raw)
    except Exception:
        # Truncated, corrupted or from another Python: rebuild.
        return None
    # Types first: with python -b, comparing bytes to str warns on the
    # program's stderr (and -bb raises), so under -b a foreign or damaged
    # file with bytes where text belongs is never compared, only dropped.
    if type(data) is not tuple or len(data) != 3 or type(data[1]) is not str:
        return None
    if data[0] != FORMAT or data[1] != CACHE_TAG or type(data[2]) is not dict:
        return None
    table = data[2]
    if _BYTES_WARNING:
        for key in table:
            if type(key) is not str:
                return None
    return table


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
# An empty shard as marshal writes it: b"{0" from the builder, which shares
# one object among all the empty shards it writes, and b"\xfb0", with the
# flag marshal sets on an object referred to elsewhere, from older builders.
_EMPTY_SHARDS = (b"{0", b"\xfb0")


class Index:
    """Root tables of several directories, searched in ``sys.path`` order.

    ``damaged`` collects the directories whose cached entry turned out to be
    unusable while looking up; the caller indexes them again.
    """

    __slots__ = ("_tables", "_deep", "damaged")

    def __init__(self, tables):
        # tables: (directory, deep top-level names, shards), in sys.path order,
        # kept as (directory, shards, the shards decoded so far).  Directories
        # with no distribution at all (the standard library's) are dropped
        # here, so that lookups do not decode their shards.  The builder
        # writes the empty shards of a directory as one object, which makes
        # counting them a matter of identity.
        self._tables = []
        deep = set()
        for directory, names, shards in tables:
            first = shards[0]
            if first in _EMPTY_SHARDS and shards.count(first) == SHARDS:
                continue
            self._tables.append((directory, shards, [None] * SHARDS))
            deep.update(names)
        self._deep = deep
        self.damaged = set()

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
            shard = sum(key.encode("utf-8", "surrogateescape")) % SHARDS  # shard_of(key)
            for directory, shards, decoded in self._tables:
                roots = decoded[shard]
                if roots is None:
                    try:
                        roots = _loads(shards[shard])
                    except Exception:
                        roots = None
                    # Under python -b, keys other than text would be compared
                    # with ours, and warn: the entry is damaged.
                    if type(roots) is not dict or (_BYTES_WARNING and not all(type(n) is str for n in roots)):
                        self.damaged.add(directory)
                        roots = _EMPTY
                    decoded[shard] = roots
                hit = roots.get(key)
                if hit is None:
                    continue
                if type(hit) is tuple and len(hit) == 2 and type(hit[0]) is str and type(hit[1]) is str:
                    return hit[0], hit[1], key, directory
                self.damaged.add(directory)
        return None

    def libraries(self, modules, keep=None):
        """Map the canonical name of every distribution owning one of ``modules``
        to its version; each distribution appears once.  ``keep(root, directory)``,
        when given, can refuse a match (a local module shadowing the library)."""
        deep = self._deep
        if deep:
            # Inside a namespace package each module may have an owner of its own.
            keys = {}
            for module in modules:
                top = module.partition(".")[0]
                keys[module if top in deep else top] = None
        else:
            keys = {module.partition(".")[0] for module in modules}
        found = {}
        for key in keys:
            try:
                hit = self._match(key)
            except UnicodeError:
                # A name no codec can encode (a lone surrogate a program put
                # in sys.modules) names no installed module; the others count.
                continue
            if hit is not None and (keep is None or keep(hit[2], hit[3])):
                found[hit[0]] = hit[1]
        return found
