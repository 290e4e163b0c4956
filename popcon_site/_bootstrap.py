"""Activation, run at the start-up of every interpreter in the environment.

``popcon_site.pth`` (and, from Python 3.15, ``popcon_site.start``) calls
:func:`activate` while ``site`` is still initialising.  Everything here is on
the start-up path of every Python process, so this module:

* imports nothing that is not already loaded at start-up (``sys``, ``os`` and
  ``atexit`` always are);
* defers all real work to the exit handler, which imports
  ``popcon_site.reporter`` only when the process imported something that may be
  a third-party library;
* never raises and never prints, unless ``PYTHON_POPCONTEST_DEBUG=1``.
"""

import atexit
import os
import sys

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("", "0", "false", "no", "off")

# Launchers of parallel jobs set one of these in every rank; only rank 0
# reports, so that a 512-rank job counts once.
RANK_VARIABLES = (
    "PMI_RANK",
    "PMIX_RANK",
    "OMPI_COMM_WORLD_RANK",
    "MV2_COMM_WORLD_RANK",
    "SLURM_PROCID",
)

_activated = False
# Names in sys.modules when site initialisation finished; None until then.
_baseline = None
_baseline_pid = 0
# sys.path when site initialisation finished, less the script's directory.
_search_path = ()
# sys.path while site runs: the script's directory is not in it yet.
_startup_path = ()


def _debug_enabled():
    return os.environ.get("PYTHON_POPCONTEST_DEBUG", "").strip().lower() in _TRUE


def debug(message):
    """Write one diagnostic line to fd 2, only when PYTHON_POPCONTEST_DEBUG is on.

    fd 2 rather than ``sys.stderr``: at exit ``sys.stderr`` may be closed or
    replaced by the program, and the line must not depend on that.
    """
    if _debug_enabled():
        try:
            os.write(2, ("popcon-site: %s\n" % message).encode("utf-8", "backslashreplace"))
        except Exception:
            pass


def opted_out(environ):
    """Return True when PYTHON_POPCONTEST_DISABLE asks to opt out.

    Besides 1/true/yes/on, any value that is not plainly false (0/false/no/off
    or empty) opts out too: someone who set the variable meant to opt out, and
    privacy must not depend on spelling.
    """
    return environ.get("PYTHON_POPCONTEST_DISABLE", "").strip().lower() not in _FALSE


def nonzero_rank(environ):
    """Return the first MPI/Slurm rank variable naming a rank other than 0, or None."""
    if environ.get("PYTHON_POPCONTEST_ALL_RANKS", "").strip().lower() in _TRUE:
        return None
    for name in RANK_VARIABLES:
        value = environ.get(name)
        if value is not None and value.strip() not in ("", "0"):
            return name
    return None


def _site_initializing():
    # site.__spec__._initializing is True while .pth lines, sitecustomize and
    # usercustomize run.  It is private, so a missing attribute means "done".
    spec = getattr(sys.modules.get("site"), "__spec__", None)
    return getattr(spec, "_initializing", False) is True


def _take_baseline():
    global _baseline, _baseline_pid, _search_path
    _baseline = set(sys.modules)
    _baseline_pid = os.getpid()
    path = sys.path
    # The interpreter inserts the script's directory (or the cwd) at
    # sys.path[0] after site has run.  Local code lives there; it is never an
    # installed distribution, and its mtime changes all the time, so it stays
    # out of the index.
    if path and path[0] not in _startup_path:
        path = path[1:]
    _search_path = tuple(path)


class _BaselineFinder:
    """A meta-path finder that only watches: it takes the baseline on the first
    import after site initialisation has finished, then removes itself.

    Imports made by other .pth files, sitecustomize and usercustomize pass
    through it while site is still initialising, so they end up in the
    baseline whichever side of ours they run on.
    """

    def find_spec(self, name, path=None, target=None):
        if not _site_initializing():
            # `name` is not in sys.modules yet, so it will count as new.
            _take_baseline()
            # importlib is iterating over the current list right now: replace
            # the list instead of mutating it, so no finder gets skipped.
            sys.meta_path = [f for f in sys.meta_path if f is not self]
        return None


def _after_fork_in_child():
    # A forked child inherits the parent's modules and atexit handlers; it
    # reports only what it imports itself.
    if _baseline is not None:
        _take_baseline()


def _third_party_candidates(names):
    """Names that may belong to an installed distribution: not stdlib, not
    built in, not popcon_site.  Cheap, so processes that imported only the
    standard library never load the index or open a socket."""
    stdlib = getattr(sys, "stdlib_module_names", ())
    builtin = sys.builtin_module_names
    baseline = _baseline
    found = []
    for name in names:
        if type(name) is not str or name in baseline:
            continue
        top = name.partition(".")[0]
        if top in stdlib or top in builtin or top == "popcon_site" or top.startswith("__"):
            continue
        found.append(name)
    return found


def _report_at_exit():
    try:
        if _baseline is None:
            # No import happened after site initialisation: nothing to report.
            return
        if os.getpid() != _baseline_pid:
            # Forked by C code that skipped the fork hooks: the parent's
            # baseline does not describe this process.
            return
        if opted_out(os.environ):
            debug("PYTHON_POPCONTEST_DISABLE was set at exit; nothing sent")
            return
        # A copy: daemon threads may still be importing.
        candidates = _third_party_candidates(sys.modules.copy())
        if not candidates:
            debug("no module outside the standard library was imported; nothing sent")
            return
        from popcon_site import reporter

        reporter.report(candidates, _search_path)
    except BaseException as exc:  # noqa: BLE001 - this runs inside someone else's process
        if _debug_enabled():
            try:
                import traceback

                debug("report failed: %s" % "".join(traceback.format_exception(exc)).rstrip())
            except BaseException:
                pass


def activate():
    """Activate counting for this interpreter.  Safe to call any number of times.

    Called from ``popcon_site.pth`` and ``popcon_site.start``.  Venvs process
    their site-packages .pth files twice on Python <= 3.14
    (https://github.com/python/cpython/issues/75723), and Python 3.15 may run
    the .start entry point as well, so only the first call acts.
    """
    global _activated, _startup_path
    if _activated:
        return
    _activated = True
    try:
        environ = os.environ
        if opted_out(environ):
            debug("opted out by PYTHON_POPCONTEST_DISABLE")
            return
        rank = nonzero_rank(environ)
        if rank is not None:
            debug("%s is not 0: only rank 0 reports (PYTHON_POPCONTEST_ALL_RANKS=1 changes that)" % rank)
            return
        _startup_path = tuple(sys.path)
        if _site_initializing():
            sys.meta_path.insert(0, _BaselineFinder())
        else:
            _take_baseline()
        os.register_at_fork(after_in_child=_after_fork_in_child)
        atexit.register(_report_at_exit)
    except BaseException as exc:  # noqa: BLE001 - a BaseException here would abort start-up
        debug("activation failed: %r" % (exc,))
