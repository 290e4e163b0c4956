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
        try:
            os.write(2, ("popcon-site: %s\n" % message).encode("utf-8", "backslashreplace"))
        except Exception:
            pass


def libraries_used(module_names, search_path, include_user=False):
    """Map each installed distribution owning one of ``module_names`` to its version.

    ``search_path`` is the process's ``sys.path`` without the script's
    directory.  popcon-site itself is left out.
    """
    dirs = lookup.search_dirs(search_path, include_user, debug)
    found = lookup.load(dirs, debug)
    libraries = found.libraries(module_names)
    if found.damaged:
        # A cached entry of the wrong shape (damage, a foreign writer) would
        # otherwise hide its directory's libraries until the directory changes.
        debug("damaged index cache entries for %s; indexing again" % ", ".join(sorted(found.damaged)))
        libraries = lookup.load(dirs, debug, rebuild=found.damaged).libraries(module_names)
    libraries.pop(_SELF, None)
    return libraries


def report(module_names, search_path, environ):
    """Send one process's report, or explain on stderr (debug) why not."""
    settings = config.settings_from_environ(environ)
    if settings.problems:
        for problem in settings.problems:
            debug("nothing sent: " + problem)
        return
    libraries = libraries_used(module_names, search_path, settings.include_user)
    if not libraries:
        debug("no imported module belongs to an installed distribution; nothing sent")
        return
    lines = wire.report_lines(settings.prefix, libraries, settings.versions)
    datagrams = wire.pack_datagrams(lines)
    target = "%s:%d" % (settings.host, settings.port)
    if settings.dry_run:
        text = "popcon-site: dry run, would send to %s:\n%s\n" % (target, "\n".join(lines))
        os.write(2, text.encode("ascii"))
        return
    try:
        wire.send_datagrams(settings.host, settings.port, datagrams)
    except (OSError, UnicodeError) as exc:
        debug("could not send to %s: %s" % (target, exc))
        return
    debug("sent %d lines in %d datagrams to %s" % (len(lines), len(datagrams), target))


def _without_script_directory(search_path):
    """``search_path`` less the directory of the ``__main__`` script.

    The start-up hook drops ``sys.path[0]``, the script's directory, but a
    script that changes ``sys.path`` before its first import (``sys.path.insert(0,
    plugins)``) has moved it; a ``*.dist-info`` left in a project checkout
    would then name the user's own project.  The interpreter puts the script's
    directory there with symlinks resolved, so both spellings are dropped.
    """
    main = sys.modules.get("__main__")
    # The interpreter deletes __main__.__file__ once the script has run; its
    # loader still knows the path.
    script = getattr(getattr(main, "__loader__", None), "path", None) or getattr(main, "__file__", None)
    # -m runs have a spec, and their sys.path[0] is the cwd, dropped already.
    if type(script) is not str or getattr(main, "__spec__", None) is not None:
        return search_path
    local = {os.path.dirname(os.path.abspath(script)), os.path.dirname(os.path.realpath(script))}
    return [entry for entry in search_path if type(entry) is not str or os.path.abspath(entry) not in local]


def report_at_exit(candidates, baseline_pid, search_path):
    """The body of the exit handler, given the modules imported after the
    baseline that are not in the standard library.  Never raises; explains
    itself under debug."""
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
        # By now the program may have emptied or replaced sys.path, and the
        # exit path still imports from the standard library (_socket from
        # lib-dynload, re to index): the directories the process had when site
        # had finished are appended for as long as the report runs.  Appended,
        # not substituted: daemon threads may still be importing from the
        # program's own entries meanwhile.
        program_path = sys.path
        current = program_path if type(program_path) is list else []
        missing = [entry for entry in search_path if type(entry) is str and entry not in current]
        if missing:
            sys.path = current + missing
        try:
            report(candidates, _without_script_directory(search_path), environ)
        finally:
            sys.path = program_path
    except BaseException as exc:  # noqa: BLE001 - this runs inside someone else's process
        if config.is_true(os.environ.get("PYTHON_POPCONTEST_DEBUG")):
            try:
                import traceback

                debug("report failed: " + "".join(traceback.format_exception(exc)).rstrip())
            except BaseException:
                pass
