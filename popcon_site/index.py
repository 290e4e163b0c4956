"""Module -> distribution index: build, cache, validate, look up.

The index maps *root* module names to the installed distribution that owns
them.  A root is a top-level module or package, or, inside a namespace
package, the shallowest regular package (``google.protobuf``,
``acmens.alpha``).  Looking a module up walks from its full name towards its
top-level name, so the deepest owner wins.

Each directory on ``sys.path`` is indexed on its own, from the
``*.dist-info`` and ``*.egg-info`` entries in it, and cached with the
directory's ``st_mtime_ns`` (see :mod:`popcon_site.reporter`, which holds the
half that runs at every reporting exit).  This module is the other half, building
entries; the exit path imports it only when a directory changed.
"""

import marshal
import os
import sys

# The warm half (the cache, the lookup, which directories count) lives in
# popcon_site.reporter, so that the exit path never loads this module unless a
# directory changed.  Its public names are re-exported here for the CLI.
from popcon_site.reporter import (
    READ_LIMIT,
    CACHE_TAG,
    FORMAT,
    SHARDS,
    Index,
    cache_locations,
    directory_mtimes,
    load,
    private_dir_ok,
    private_reason,
    read_cache,
    read_regular,
    search_dirs,
    shard_of,
    valid_entry,
    without_sigxfsz,
)

__all__ = [
    "CACHE_TAG",
    "FORMAT",
    "Distribution",
    "Index",
    "cache_locations",
    "cache_state",
    "canonical_name",
    "count_roots",
    "distributions",
    "entry_for",
    "load",
    "private_reason",
    "save",
    "scan_directory",
    "search_dirs",
    "write_cache",
]

# A cache file keeps the directories of the processes that used it, such as
# several PYTHONPATH module trees; this bounds its size.
MAX_CACHED_DIRS = 64

_MODULE_SUFFIXES = (".py", ".pyc", ".pyd", ".so")
_EMPTY_SHARD = marshal.dumps({})
_STDLIB = frozenset(getattr(sys, "stdlib_module_names", ())) | frozenset(sys.builtin_module_names)


def canonical_name(name):
    """Return the PEP 503 normalised form of a distribution name.

    Same result as ``re.sub(r"[-_.]+", "-", name).lower()``; written without
    ``re`` because it runs on the exit path when a directory is re-indexed.

    >>> canonical_name("Acme.Widgets__Pro")
    'acme-widgets-pro'
    >>> canonical_name("zope.interface")
    'zope-interface'
    """
    name = name.lower().replace("_", "-").replace(".", "-")
    while "--" in name:
        name = name.replace("--", "-")
    return name


class Distribution:
    """One installed distribution found in a directory."""

    __slots__ = ("name", "version", "roots", "metadata_path")

    def __init__(self, name, version, roots, metadata_path):
        self.name = name
        self.version = version
        self.roots = roots
        self.metadata_path = metadata_path

    def __repr__(self):
        return "Distribution(%r, %r, roots=%r)" % (self.name, self.version, self.roots)


# --- building ---------------------------------------------------------------

# The build runs at the exit of the first process after a change, so it
# avoids `re`, `csv` and `ast`: they import functools, whose namedtuple()
# evaluates source text, and on Python 3.10 evaluating source text clears the
# interpreter's record of an unhandled KeyboardInterrupt, which turned the
# process's exit status from "killed by SIGINT" into 1.


# Characters besides \n and \r at which str.splitlines() also ends a line.
_RARE_BREAKS = ("\x0b", "\x0c", "\x1c", "\x1d", "\x1e")


def _is_plain(text):
    """Whether text is plain: ASCII, with lines ending in \\n alone."""
    return "\r" not in text and text.isascii() and not any(c in text for c in _RARE_BREAKS)


def _split_lines(text):
    """``text.splitlines()`` for plain text, at a fraction of the cost; None for
    any other text.

    splitlines looks at every character for eleven kinds of line boundary;
    in plain text, ASCII with lines ending in \\n, str.split("\\n") is exact
    and a sixth cheaper.  (Lines ending in \\r\\n, as pip writes RECORD, are
    not plain: replacing or counting the \\r costs more than it saves.)

    >>> _split_lines("a,,\\nb,,\\n"), _split_lines("a,,\\r\\nb,,\\r\\n"), _split_lines("")
    (['a,,', 'b,,'], None, [])
    """
    if not _is_plain(text):
        return None
    lines = text.split("\n")
    if not lines[-1]:
        lines.pop()
    return lines


def _parse_file_list(text):
    """(sorted lines, paths of the files at the directory root, whether the
    text was plain) of a file list (RECORD format).

    A RECORD lists every file, often thousands, while the roots depend only
    on a few directories.  Sorting the lines puts each directory's files in
    one block, so a binary search skips a whole package once it is known to
    be one (:func:`_collect_roots`); the files at the root, where .pth files
    and editable finders are, come out of the same walk.  A regular
    expression over every line cost 5x more at 1000 distributions, and a
    search of the whole text for each kind of root file a sixth of the build
    (bench/).

    >>> _parse_file_list("b/c.py,,\\nz.pth,,\\na.py,sha256=x,1\\n")
    (['a.py,sha256=x,1', 'b/c.py,,', 'z.pth,,'], ['a.py', 'z.pth'], True)
    """
    from bisect import bisect_left  # build path only

    lines = _split_lines(text)
    plain = lines is not None
    if not plain:
        lines = text.splitlines()
    if '"' in text:
        # A CSV-quoted path (a comma in a file name): the roots come from the
        # unquoted paths, the root files from each line as it is written.
        top = [p for p in (line.partition(",")[0] for line in lines) if "/" not in p]
        return sorted(_record_path(line) + "," for line in lines if line), top, plain
    lines.sort()
    top = []
    i, n = 0, len(lines)
    while i < n:
        path = lines[i].partition(",")[0]
        slash = path.find("/")
        if slash == -1:
            top.append(path)
            i += 1
        else:
            # The block of lines under directory/ ends before directory + "0",
            # the character after "/".
            i = bisect_left(lines, path[:slash] + "0", i + 1, n)
    return lines, top, plain


def _grouped_roots(text, namespaces=frozenset()):
    """(roots, root files) of a plain file list without quoted paths, as
    :func:`_roots_from_files` and :func:`_parse_file_list` find them, when
    its lines come in one block per directory; None for any other file list
    (blocks that interleave, an absolute path).

    Most wheels install one package or a few and list each one's files
    together: a search backwards for the block's last line, a count of its
    lines and a search for the package's ``__init__`` settle a whole package,
    where splitting and sorting its lines cost three times more.  Counting
    every line in the block of its own directory, once, proves that no block
    holds a line of another.

    >>> roots, top = _grouped_roots("a/__init__.py,,\\na/b.py,,\\nc.py,,\\na-1.dist-info/RECORD,,\\n../x,,\\n")
    >>> sorted(roots), top
    (['a', 'c'], ['c.py'])
    >>> sorted(_grouped_roots("ns/p/__init__.py,,\\nns/q.py,,\\n")[0])
    ['ns.p', 'ns.q']
    >>> _grouped_roots("a/__init__.py,,\\nc.py,,\\na/b.py,,\\n") is None
    True
    """
    if not text:
        return set(), []
    t = "\n" + text if text.endswith("\n") else "\n" + text + "\n"
    roots = set()
    top = []
    counted = _walk_blocks(t, 1, len(t), "", namespaces, roots, top, 0)
    return (roots, top) if counted is not None and counted == t.count("\n") - 1 else None


def _walk_blocks(t, pos, stop, prefix, namespaces, roots, top, depth):
    # What _collect_roots does for the sorted lines, on the text itself: the
    # lines from ``pos`` to the newline at ``stop`` should all start with
    # ``prefix``, a directory ("" or "a/b/") that is not a regular package.
    # Returns how many lines it accounted for, or None where the text is not
    # in blocks.
    start = len(prefix)
    counted = 0
    while pos < stop:
        if prefix and not t.startswith(prefix, pos):
            return None
        nl = t.find("\n", pos)
        comma = t.find(",", pos + start, nl)
        if comma == -1:
            comma = nl
        slash = t.find("/", pos + start, comma)
        if slash == -1:
            name = t[pos + start:comma]
            if not prefix:
                top.append(name)
            if name.endswith(_MODULE_SUFFIXES):
                stem = name.partition(".")[0]
                if stem.isidentifier() and stem != "__init__":
                    roots.add(prefix.replace("/", ".") + stem)
            counted += 1
            pos = nl + 1
            continue
        if slash == pos:
            return None  # an absolute path, made relative on the sorted lines
        directory = t[pos:slash]
        mark = "\n" + directory + "/"
        end = t.find("\n", t.rfind(mark, pos - 1, stop) + 1)  # the newline ending the block's last line
        component = t[pos + start:slash]
        if component.isidentifier() and component != "__pycache__":
            if directory not in namespaces and _listed_init(t, mark, pos - 1, end):
                roots.add(directory.replace("/", "."))
            elif depth < 8:
                below = _walk_blocks(t, pos, end, directory + "/", namespaces, roots, top, depth + 1)
                if below is None:
                    return None
                counted += below
                pos = end + 1
                continue
        counted += t.count(mark, pos - 1, end)
        pos = end + 1
    return counted


def _listed_init(t, mark, lo, hi):
    # Whether the block of ``mark`` ("\\na/b/") between lo and hi lists an
    # __init__ module of that directory, as _has_init decides.
    init = mark + "__init__."
    k = t.find(init, lo, hi)
    while k != -1:
        line_end = t.find("\n", k + 1)
        comma = t.find(",", k + 1, line_end)
        path = t[k + 1:line_end if comma == -1 else comma]
        if path.endswith(_MODULE_SUFFIXES) and "/" not in path[len(mark) - 1:]:
            return True
        k = t.find(init, line_end, hi)
    return False


def _record_path(line):
    """The path of one RECORD line, unquoting a CSV-quoted one (a comma in a
    file name).

    >>> _record_path('"a,b.py",sha256=x,1'), _record_path("c.py,sha256=y,2")
    ('a,b.py', 'c.py')
    """
    if line.startswith('"'):
        end = line.find('",', 1)
        return line[1:end if end != -1 else len(line)].replace('""', '"')
    return line.partition(",")[0]


def _read_text(path):
    data = read_regular(path)
    return None if data is None else data.decode("utf-8", "replace")


def _file_list(meta, entry):
    """The distribution's installed files (:class:`_FileList`), paths relative
    to the directory that holds the metadata; None when it lists none."""
    record = _read_text(os.path.join(meta, "RECORD"))
    if record is not None:
        return _FileList(record, os.path.dirname(meta))
    installed = _read_text(os.path.join(meta, "installed-files.txt"))
    if installed is None:
        return None
    # egg-info lists paths relative to the .egg-info directory itself.
    lines = []
    for line in installed.splitlines():
        line = line.strip()
        if not line or os.path.isabs(line):
            continue
        rel = os.path.normpath(os.path.join(entry, line)).replace(os.sep, "/")
        if not rel.startswith("../"):
            lines.append(rel + ",")
    return _FileList("\n".join(lines))


class _FileList:
    """A distribution's file list (RECORD format), parsed as far as asked.

    ``base``: the directory of a RECORD, whose absolute paths inside it are
    made relative (some installers write them; the distribution's own
    modules would otherwise name no module).
    """

    __slots__ = ("text", "_base", "_parsed", "_top", "_simple")

    def __init__(self, text, base=None):
        self.text = text
        self._base = base
        self._parsed = None
        self._top = None
        self._simple = None  # whether _grouped_roots may read the text

    def _parse(self):
        # (sorted lines, root files) as _parse_file_list gives them.
        if self._parsed is None:
            text = self.text
            lines, top, plain = _parse_file_list(text)
            if self._base is not None:
                if plain:
                    # Plain text: the lines that start with "/" come first of
                    # those from "/" on, in sorted order.
                    from bisect import bisect_left  # build path only

                    k = bisect_left(lines, "/")
                    absolute = k < len(lines) and lines[k].startswith("/")
                else:
                    absolute = text.startswith("/") or "\n/" in text
                if absolute:
                    lines, top, plain = _parse_file_list(_relative_record(text, self._base))
            self._parsed = lines, top
        return self._parsed

    def _grouped(self, namespaces):
        if self._simple is None:
            text = self.text
            self._simple = '"' not in text and _is_plain(text)
        return _grouped_roots(self.text, namespaces) if self._simple else None

    def lines(self):
        """The sorted lines, as :func:`_roots_from_files` walks them."""
        return self._parse()[0]

    def roots(self, namespaces=frozenset()):
        """The roots, taking the top-level packages in ``namespaces`` for
        namespaces (see :func:`_roots_from_files`)."""
        grouped = self._grouped(namespaces)
        if grouped is None:
            return _roots_from_files(self.lines(), namespaces)
        self._top = grouped[1]
        return grouped[0]

    def top(self):
        """The paths of the files at the directory root."""
        if self._top is None:
            grouped = self._grouped(frozenset())
            self._top = grouped[1] if grouped is not None else self._parse()[1]
        return self._top


def _relative_record(record, directory):
    """RECORD with absolute paths inside ``directory`` made relative to it.

    Some installers write absolute paths; a RECORD that lists the
    distribution's own modules that way would otherwise name no module.
    """
    base = directory.rstrip(os.sep) + os.sep
    lines = []
    for line in record.splitlines():
        if line.startswith(base):
            line = line[len(base):]
        lines.append(line)
    return "\n".join(lines)


def _roots_from_files(files, namespaces=frozenset()):
    """Root module names of a file list: RECORD-format text, or the sorted
    lines :func:`_parse_file_list` made of one.

    ``namespaces`` are top-level packages to treat as namespaces although
    their ``__init__`` is listed (pkgutil or pkg_resources style).

    >>> sorted(_roots_from_files("google/protobuf/__init__.py,,\\ngoogle/protobuf/m.py,,\\nsix.py,,"))
    ['google.protobuf', 'six']
    >>> sorted(_roots_from_files("ns/__init__.py,,\\nns/one/__init__.py,,", {"ns"}))
    ['ns.one']
    >>> sorted(_roots_from_files("acmens/alpha/core.py,,\\nfoo-1.0.dist-info/RECORD,,\\n../../bin/x,,"))
    ['acmens.alpha.core']
    """
    from bisect import bisect_left  # build path only

    lines = _parse_file_list(files)[0] if type(files) is str else files
    roots = set()
    try:
        _collect_roots(lines, 0, len(lines), "", namespaces, roots, 0, bisect_left)
    except Exception:
        pass
    return roots


def _collect_roots(lines, lo, hi, prefix, namespaces, roots, depth, bisect_left):
    # lines[lo:hi] all start with `prefix`, a directory ("" or "a/b/") that is
    # not a regular package.  Files in it are roots of their own (top-level
    # modules, or modules of a PEP 420 namespace portion); in each
    # subdirectory, the shallowest regular package is a root.
    start = len(prefix)
    i = lo
    while i < hi:
        line = lines[i]
        comma = line.find(",", start)
        if comma == -1:
            comma = len(line)
        slash = line.find("/", start, comma)
        if slash == -1:
            name = line[start:comma]
            if name.endswith(_MODULE_SUFFIXES):
                stem = name.partition(".")[0]
                if stem.isidentifier() and stem != "__init__":
                    roots.add(prefix.replace("/", ".") + stem)
            i += 1
            continue
        directory = line[:slash]
        # The block of lines under directory/ ends before directory + "0",
        # the character after "/".
        end = bisect_left(lines, directory + "0", i, hi)
        component = line[start:slash]
        if component.isidentifier() and component != "__pycache__":
            if directory not in namespaces and _has_init(lines, directory + "/", i, end, bisect_left):
                roots.add(directory.replace("/", "."))
            elif depth < 8:
                _collect_roots(lines, i, end, directory + "/", namespaces, roots, depth + 1, bisect_left)
        i = end


def _has_init(lines, directory, lo, hi, bisect_left):
    init = directory + "__init__."
    k = bisect_left(lines, init, lo, hi)
    while k < hi and lines[k].startswith(init):
        path = lines[k].partition(",")[0]
        if path.endswith(_MODULE_SUFFIXES) and "/" not in path[len(directory):]:
            return True
        k += 1
    return False


# What a pkgutil- or pkg_resources-style namespace __init__ calls.  Several
# distributions install the same tiny __init__ (zope, sphinxcontrib, older
# google-cloud-*), so the package itself names none of them.
_NAMESPACE_MARKERS = (b"extend_path", b"declare_namespace")


def _is_namespace_dir(path, top, directories):
    # ``directories``: the names of the directories in ``path``, from its
    # listing, which saves a stat per top-level name.
    if top not in directories:
        return False
    directory = os.path.join(path, top)
    init = os.path.join(directory, "__init__.py")
    head = read_regular(init, limit=4096)
    if head is not None:
        return any(marker in head for marker in _NAMESPACE_MARKERS)
    if os.path.exists(init):
        return False  # larger than any namespace __init__, or not a file
    return not any(os.path.exists(os.path.join(directory, "__init__" + s)) for s in _MODULE_SUFFIXES)


def _pth_dirs(path, top):
    """Directories added by the .pth files a distribution installed (editable
    installs); ``top`` are the files it installed at the directory root."""
    dirs = []
    for pth in top:
        if not pth.endswith(".pth"):
            continue
        content = _read_text(os.path.join(path, pth)) or ""
        for line in content.splitlines():
            line = line.strip()
            if line and not line.startswith(("#", "import ", "import\t")):
                dirs.append(os.path.join(path, line))
    return dirs


def _editable_mapping(path, top):
    """Top-level names that a setuptools editable finder maps to code elsewhere;
    ``top`` are the files the distribution installed at the directory root.

    ``pip install -e`` through setuptools (PEP 660, flat layouts) installs
    ``__editable___<dist>_finder.py`` whose ``MAPPING`` names each top-level
    package and the directory it really lives in; nothing of it is in ``path``.
    """
    names = set()
    for finder in top:
        if not (finder.startswith("__editable___") and finder.endswith("_finder.py")):
            continue
        source = _read_text(os.path.join(path, finder)) or ""
        for line in source.splitlines():
            if line.startswith("MAPPING"):
                names.update(_quoted_keys(line))
    return names


def _quoted_keys(line):
    """The quoted keys of a dict literal written on one line.

    >>> _quoted_keys("MAPPING: dict[str, str] = {'pkg': '/src/pkg', 'ns.sub': '/src/ns/sub'}")
    ['pkg', 'ns.sub']
    """
    keys = []
    for quote in ("'", '"'):
        parts = line.split(quote)
        # parts[1], parts[3], ... were quoted; a key is followed by a colon.
        for i in range(1, len(parts) - 1, 2):
            if parts[i + 1].lstrip().startswith(":") and parts[i].replace(".", "_").isidentifier():
                keys.append(parts[i])
    return keys


def _present_modules(listing):
    """Top-level module names that exist in a directory listing."""
    present = set()
    for name, is_dir in listing:
        if is_dir:
            if name.isidentifier():
                present.add(name)
        elif name.endswith(_MODULE_SUFFIXES):
            stem = name.partition(".")[0]
            if stem.isidentifier():
                present.add(stem)
    return present


def _listing(path):
    # One entry that cannot be stat'ed (a symlink loop, a file removed
    # meanwhile, a mount point gone stale) must not hide the others.
    listing = []
    try:
        with os.scandir(path) as it:
            for entry in it:
                try:
                    listing.append((entry.name, entry.is_dir()))
                except OSError:
                    continue
    except OSError:
        pass
    return listing


def _read_distribution(path, entry, is_dir, present, directories):
    stem = entry.rpartition(".")[0]
    raw_name, _, rest = stem.partition("-")
    name = canonical_name(raw_name)
    version = rest.partition("-")[0]
    meta = os.path.join(path, entry)
    roots = set()
    files = None
    if is_dir:
        top_level = _read_text(os.path.join(meta, "top_level.txt"))
        if top_level is not None:
            roots = {t.strip().replace("/", ".") for t in top_level.splitlines() if t.strip()}
            namespaces = {t for t in roots if "." not in t and _is_namespace_dir(path, t, directories)}
            if namespaces:
                files = _file_list(meta, entry)
                if files is not None and files.text:
                    deeper = {r for r in files.roots(namespaces) if r.partition(".")[0] in namespaces}
                    if deeper:
                        roots = (roots - namespaces) | deeper
        else:
            files = _file_list(meta, entry)
            if files is not None and files.text:
                roots = files.roots()
                namespaces = {t for t in roots if "." not in t and _is_namespace_dir(path, t, directories)}
                if namespaces:
                    deeper = {r for r in files.roots(namespaces) if r.partition(".")[0] in namespaces}
                    if deeper:
                        roots = (roots - namespaces) | deeper
    if files is None and not present.issuperset(r.partition(".")[0] for r in roots):
        # top_level.txt names modules that are not here: perhaps an editable
        # install, whose file list says where its code is.
        files = _file_list(meta, entry)
    top = files.top() if files is not None and files.text else ()
    code_dirs = _pth_dirs(path, top)
    mapped = _editable_mapping(path, top)
    elsewhere = set()
    for directory in code_dirs:
        # An editable install: its code lives in the directories its .pth
        # adds (hatchling, setuptools src layouts), so presence is checked there.
        elsewhere |= _present_modules(_listing(directory))
    if elsewhere or mapped:
        present = present | elsewhere | mapped  # a copy: rare, and `present` is shared
    if not roots:
        # No usable file list (a bare PKG-INFO egg-info, a hatchling editable):
        # the import name is most often the distribution name.
        guess = raw_name.replace("-", "_").replace(".", "_")
        roots = {g for g in (guess, guess.lower()) if g in present}
    if not roots:
        # An editable install whose import name differs from its name: what
        # its finder maps, or what the directories it added hold, is its code.
        roots = mapped or elsewhere
    # A stale top_level.txt or a RECORD naming files elsewhere must not claim
    # names that do not exist here, such as a user's local `tests` package.
    roots = {r for r in roots if r.partition(".")[0] in present and r.partition(".")[0] not in _STDLIB}
    return Distribution(name, version, tuple(sorted(roots)), meta)


def _archive_files(path):
    """The zipimporter of a zip archive and its member names, or (None, ())."""
    try:
        import zipimport  # frozen, and loaded at start-up by importlib already

        importer = zipimport.zipimporter(path)
        # Private, but in every version from 3.8 on; 3.13 reads it lazily.
        get_files = getattr(importer, "_get_files", None)
        files = get_files() if get_files is not None else importer._files
        return importer, [name.replace(os.sep, "/") for name in files]
    except Exception:
        return None, ()


def _archive_distributions(path):
    """The distributions inside a zip archive on sys.path: a wheel or a zip
    put there as is, a zipped egg, a zipapp that bundles its dependencies."""
    importer, names = _archive_files(path)
    if importer is None:
        return []

    def text(member):
        try:
            data = importer.get_data(member)
        except Exception:
            return None
        return data.decode("utf-8", "replace") if len(data) <= READ_LIMIT else None

    listing = {}
    for name in names:
        head, sep, _ = name.partition("/")
        listing[head] = listing.get(head, False) or bool(sep)
    present = _present_modules(listing.items())
    metas = [(head, head.rpartition(".")[0]) for head, is_dir in sorted(listing.items())
             if is_dir and head.endswith((".dist-info", ".egg-info"))]
    if listing.get("EGG-INFO"):
        # A zipped egg names itself: Name-1.0-py3.11.egg
        metas.append(("EGG-INFO", os.path.basename(path).rpartition(".")[0]))
    found = []
    for meta, stem in metas:
        raw_name, _, rest = stem.partition("-")
        top_level = text(meta + "/top_level.txt")
        if top_level is not None:
            roots = {t.strip().replace("/", ".") for t in top_level.splitlines() if t.strip()}
        else:
            record = text(meta + "/RECORD")
            roots = _roots_from_files(record) if record else set()
        if not roots:
            guess = raw_name.replace("-", "_").replace(".", "_")
            roots = {g for g in (guess, guess.lower()) if g in present}
        roots = {r for r in roots if r.partition(".")[0] in present and r.partition(".")[0] not in _STDLIB}
        found.append(Distribution(canonical_name(raw_name), rest.partition("-")[0], tuple(sorted(roots)),
                                  os.path.join(path, meta)))
    return found


def distributions(path):
    """Every distribution whose metadata is directly in directory ``path``,
    or inside ``path`` when it is a zip archive.

    A distribution whose metadata cannot be read is listed with no roots; one
    bad distribution never hides the others.
    """
    if os.path.isfile(path):
        return _archive_distributions(path)
    listing = _listing(path)
    present = _present_modules(listing)
    directories = {name for name, is_dir in listing if is_dir}
    found = []
    for entry, is_dir in sorted(listing):
        if not entry.endswith((".dist-info", ".egg-info")):
            continue
        try:
            found.append(_read_distribution(path, entry, is_dir, present, directories))
        except Exception:
            continue
    return found


def scan_directory(path):
    """Map each root module name in directory ``path`` to (canonical name, version).

    Pure file parsing, independent of the running interpreter, so it can
    index another interpreter's directories.  Where two distributions claim
    the same root, the first in sorted order keeps it.
    """
    roots = {}
    for dist in distributions(path):
        for root in dist.roots:
            roots.setdefault(root, (dist.name, dist.version))
    return roots


def entry_for(path, mtime_ns):
    """A directory's cache entry: (mtime_ns, deep top-level names, shards).

    Each shard is the marshalled dict {root: (name, version)} of the roots
    whose :func:`~popcon_site.reporter.shard_of` is its position.
    """
    roots = scan_directory(path)
    deep = frozenset(r.partition(".")[0] for r in roots if "." in r)
    shards = [{} for _ in range(SHARDS)]
    for root, owner in roots.items():
        shards[shard_of(root)][root] = owner
    # Every empty shard is one object, which marshal writes once and then
    # refers to: decoding the cache, at every reporting exit, then creates
    # one object where it created one per empty shard of every directory.
    return (mtime_ns, deep, tuple(marshal.dumps(shard) if shard else _EMPTY_SHARD for shard in shards))


def count_roots(entry):
    """How many root module names a cache entry holds."""
    return sum(len(marshal.loads(shard)) for shard in entry[2])


def write_cache(kind, path, table):
    """Write a cache file atomically: readers see the old file or the new one,
    never half of one.  Raises OSError when the location is not writable."""
    directory = os.path.dirname(path)
    if kind == "temporary":
        os.makedirs(os.path.dirname(directory), exist_ok=True)
        if not private_dir_ok(directory, create=True):
            raise PermissionError("%s is not a private directory of this user" % directory)
    else:
        created = []
        missing = directory
        while missing and not os.path.isdir(missing):
            created.append(missing)
            missing = os.path.dirname(missing)
        os.makedirs(directory, exist_ok=True)
        if kind == "environment":
            # Shared by every user of the environment whatever the writer's
            # umask (an admin's 077 made it unreadable, and every user rebuilt).
            for made in created:
                os.chmod(made, 0o755)
    data = marshal.dumps((FORMAT, CACHE_TAG, table))
    tmp = "%s.%d.tmp" % (path, os.getpid())
    try:
        without_sigxfsz(_write_whole, tmp, data, 0o644 if kind == "environment" else None)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _write_whole(path, data, mode):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        if mode is not None:
            os.fchmod(fd, mode)
        # os.write may write less than asked (a full disk writes what fits,
        # and only the next call fails): a single call installed a truncated
        # cache that every process then rebuilt and rewrote.
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            if not written:
                raise OSError("no progress writing %s" % path)
            view = view[written:]
    finally:
        os.close(fd)


def save(tables, read, debug=None):
    """Write ``tables`` (directory -> entry) to the first cache location that
    accepts it, keeping other directories that file already held.  ``read`` is
    the (kind, path, table) of each location as :func:`load` read it."""
    previous = {path: table for _, path, table in read}
    for kind, path in cache_locations():
        merged = dict(tables)
        for directory, entry in (previous.get(path) or {}).items():
            if len(merged) >= MAX_CACHED_DIRS:
                break
            merged.setdefault(directory, entry)
        try:
            write_cache(kind, path, merged)
        except Exception as exc:
            if debug:
                debug("cannot write the %s index cache %s: %s" % (kind, path, exc))
            continue
        if debug:
            debug("wrote the %s index cache %s" % (kind, path))
        return path
    if debug:
        debug("no index cache location is writable; the index will be rebuilt next time")
    return None


def cache_state(dirs):
    """Describe each cache location for ``dirs``: for ``popcon-site status``.

    Returns a list of dicts with kind, path, exists, fresh (directories whose
    cached entry is current) and stale (the others).
    """
    mtimes = directory_mtimes(dirs)
    state = []
    for kind, path in cache_locations():
        table = read_cache(kind, path) or {}
        fresh = [d for d, m in mtimes.items() if valid_entry(table.get(d)) and table[d][0] == m]
        state.append(
            {
                "kind": kind,
                "path": path,
                "exists": os.path.exists(path),
                "fresh": fresh,
                "stale": [d for d in mtimes if d not in fresh],
            }
        )
    return state
