"""The exit path: new modules -> libraries -> statsd lines -> send.

Imported lazily by the start-up hook's exit handler, and only in processes
that imported something after site initialisation.  With a warm index it
imports nothing beyond ``marshal`` and ``_socket``; in particular not
``importlib.metadata``, ``statsd``, ``packaging``, ``json``, ``socket`` or
``email``, each of which costs tens of milliseconds.
"""

import os
import sys

from popcon_site import config, lookup, wire

__all__ = ["debug", "libraries_used", "report", "report_at_exit"]

# Never counted: the counter itself.
_SELF = "popcon-site"


def debug(message):
    """Write one diagnostic line to fd 2, only when PYTHON_POPCONTEST_DEBUG is on.

    fd 2 rather than ``sys.stderr``: at exit ``sys.stderr`` may be closed or
    replaced by the program, and the line must not depend on that.
    """
    if config.is_true(os.environ.get("PYTHON_POPCONTEST_DEBUG")):
        _write_stderr("popcon-site: %s\n" % message)


def _write_stderr(text):
    # Started with stderr closed (2>&-), fd 2 may since have become a file
    # of the program's own: the interpreter then has no sys.__stderr__, and
    # nothing is written.
    if sys.__stderr__ is None:
        return
    try:
        os.write(2, text.encode("utf-8", "backslashreplace"))
    except Exception:
        pass


def libraries_used(module_names, search_path, include_user=False, local=()):
    """Map each installed distribution owning one of ``module_names`` to its version.

    ``search_path`` is the process's ``sys.path`` without the script's
    directory, ``local`` the program's own directories.  popcon-site itself is
    left out.
    """
    dirs = lookup.search_dirs(search_path, include_user, debug)

    def installed(module_name, directory):
        if _shadowed(module_name, directory, search_path, local):
            debug("not counting %s: this copy is not the one installed in %s" % (module_name, directory))
            return False
        return True

    found = lookup.load(dirs, debug)
    libraries = found.libraries(module_names, installed)
    if found.damaged:
        # A cached entry of the wrong shape (damage, a foreign writer) would
        # otherwise hide its directory's libraries until the directory changes.
        debug("damaged index cache entries for %s; indexing again" % ", ".join(sorted(found.damaged)))
        libraries = lookup.load(dirs, debug, rebuild=found.damaged).libraries(module_names, installed)
    libraries.pop(_SELF, None)
    return libraries


def report(module_names, search_path, environ, local=()):
    """Send one process's report, or explain on stderr (debug) why not.

    ``local`` are the program's own directories: a module loaded from one of
    them is not the installed library of the same name."""
    settings = config.settings_from_environ(environ)
    if settings.problems:
        for problem in settings.problems:
            debug("nothing sent: " + problem)
        return
    libraries = libraries_used(module_names, search_path, settings.include_user, local)
    if not libraries:
        debug("no imported module belongs to an installed distribution; nothing sent")
        return
    lines = wire.report_lines(settings.prefix, libraries, settings.versions)
    datagrams = wire.pack_datagrams(lines)
    target = "%s:%d" % (settings.host, settings.port)
    if settings.dry_run:
        _write_stderr("popcon-site: dry run, would send to %s:\n%s\n" % (target, "\n".join(lines)))
        return
    try:
        wire.send_datagrams(settings.host, settings.port, datagrams, debug)
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
        places.append(os.path.dirname(script) or os.curdir)
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


def _search_path(baseline_path, local):
    """The directories to search: sys.path as it was once site had finished,
    then those the program added since (a notebook's
    ``sys.path.append('/shared/lib')``), never the program's own directories."""
    path = []
    for entry in baseline_path:
        absolute = _absolute(entry) if type(entry) is str else None
        if absolute is not None and absolute not in local:
            path.append(entry)
    current = sys.path if type(sys.path) is list else []
    for entry in current:
        if type(entry) is str and os.path.isabs(entry) and entry not in path and os.path.abspath(entry) not in local:
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
        if config.opted_out(environ):
            debug("PYTHON_POPCONTEST_DISABLE is set; nothing sent")
            return
        rank = config.nonzero_rank(environ)
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
        if config.is_true(os.environ.get("PYTHON_POPCONTEST_DEBUG")):
            try:
                import traceback

                debug("report failed: " + "".join(traceback.format_exception(exc)).rstrip())
            except BaseException:
                pass
