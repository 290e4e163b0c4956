"""popcon-site: counts the installed libraries that Python processes import."""

# This module is the start-up hook.  popcon_site.pth imports it while `site`
# is initialising, in every interpreter of the environment, so:
#
# * it imports nothing that is not already loaded at start-up;
# * it does the least that can be done at start-up: check the opt-out and
#   install a one-shot finder that, once site has finished, takes the baseline
#   and registers the exit handler and the fork hook.  Settings, MPI ranks,
#   the index and the network are all dealt with at exit, in
#   popcon_site.reporter, and only in processes that imported something
#   outside the standard library;
# * it never raises and never prints (debug output lives in the reporter).
#
# It is the package __init__ rather than a submodule because every module
# imported at start-up costs about 0.4M instructions (bench/), and its
# explanations are comments rather than docstrings because docstrings are
# unmarshalled at every start.  Importing popcon_site after start-up (the CLI,
# the tests) activates nothing.

import os
import sys

__version__ = "0.1.0"

_activated = False
_baseline = None  # names in sys.modules once site had finished; None until then
_baseline_pid = 0
_search_path = ()  # sys.path once site had finished, less the script's directory
_script_entry = None  # that directory, as the interpreter put it at sys.path[0]
_startup_path = ()  # sys.path while site runs: the script's directory is not in it yet
_startup_home = None  # $HOME at start-up: a program may point HOME elsewhere before it exits
_finder = None  # the one-shot meta-path finder while it is installed
# The import machinery as it was once site had finished.  By exit the program
# may have replaced builtins.__import__ (an import logger that prints, a
# sandbox that refuses) or emptied sys.meta_path / sys.path_hooks; the
# report's own imports must neither show in its output nor fail because of it.
_import = __import__
_meta_path = ()
_path_hooks = ()


def _site_initializing():
    # site.__spec__._initializing is True while .pth lines, sitecustomize and
    # usercustomize run.  It is private, so a missing attribute means "done".
    spec = getattr(sys.modules.get("site"), "__spec__", None)
    return getattr(spec, "_initializing", False) is True


def _take_baseline():
    global _baseline, _baseline_pid, _search_path, _script_entry, _meta_path, _path_hooks
    _baseline = set(sys.modules)
    _meta_path = tuple(sys.meta_path)
    _path_hooks = tuple(sys.path_hooks)
    _baseline_pid = os.getpid()
    path = list(sys.path)
    # The interpreter puts the script's directory (or the cwd) at sys.path[0]
    # after site has run, unless -I, -P or PYTHONSAFEPATH.  Local code lives
    # there, never an installed distribution, and its mtime changes all the
    # time: keep it out of the index.  It is the one new entry at the front,
    # in the common case.  Otherwise (a sitecustomize or a later .pth file
    # inserted directories too, a script did before its first import, or the
    # entry was on sys.path already because PYTHONPATH names it) it is the
    # first entry that this command line makes the interpreter insert.
    flags = sys.flags
    if not (flags.isolated or getattr(flags, "safe_path", False)):
        new = 0
        while new < len(path) and path[new] not in _startup_path:
            new += 1
        if new == 1:
            _script_entry = path.pop(0)
        else:
            inserted = _inserted_entries()
            for i, entry in enumerate(path):
                if entry in inserted:
                    _script_entry = path.pop(i)
                    break
            else:
                if new:
                    _script_entry = path.pop(new - 1)
    _search_path = tuple(path)


def _inserted_entries():
    # What the interpreter puts at sys.path[0] for this command line: "" for
    # -c, stdin and the prompt, the working directory for -m (sys.argv[0] is
    # still "-m" at the first import), else the script's directory with
    # symlinks resolved, or the script itself when it is a zip or directory.
    argv = getattr(sys, "argv", None)
    first = argv[0] if type(argv) is list and argv else None
    if type(first) is not str:
        return ()
    try:
        if first in ("", "-", "-c"):
            return ("",)
        if first == "-m":
            return (os.getcwd(),)
        real = os.path.realpath(first)
        return (os.path.dirname(real), real, first)
    except (OSError, ValueError):
        return ()


def _find_spec(name, path=None, target=None):
    # The one-shot finder (see activate).  Imports by other .pth files,
    # sitecustomize and usercustomize pass through it while site is still
    # initialising, so they fall in the baseline on whichever side of ours they
    # run.  The first import after that takes the baseline; the module being
    # imported is not in sys.modules yet, so it counts as new.
    #
    # activate() gives this function globals of its own holding only `sys`:
    # in a process that never imports after start-up the finder stays in
    # sys.meta_path until shutdown, and holding this module's globals from
    # there cost 0.44M instructions of interpreter finalisation (bench/).
    try:
        sys.modules["popcon_site"]._on_import()
    except BaseException:  # noqa: BLE001, S110 - must never break the program's import
        pass


def _on_import():
    global _finder
    finder = _finder
    if finder is not None and not _site_initializing():
        # One shot even when re-entered: a finder ahead of ours that imports
        # inside its find_spec (setuptools' _distutils_hack does, for pip)
        # brings us here from the nested import, then again from the outer
        # one, which still iterates over the old list.  Counting twice meant
        # two exit handlers and every report sent twice.
        _finder = None
        # importlib is iterating over the current list: replace the list
        # rather than mutate it, so that no other finder is skipped.
        sys.meta_path = [f for f in sys.meta_path if f is not finder]
        _start_counting()


def _start_counting():
    # Runs once, when site has finished.  The exit handler and the fork hook
    # are registered only now: a process that imports nothing after start-up
    # (`python -c pass`) never even imports atexit.
    import _weakref  # loaded at start-up by importlib
    import atexit

    _take_baseline()
    hook_globals = {"_take_baseline_ref": _weakref.ref(_take_baseline), "__builtins__": __builtins__}
    os.register_at_fork(after_in_child=type(_after_fork_in_child)(_after_fork_in_child.__code__, hook_globals))
    atexit.register(_at_exit)


def _after_fork_in_child():
    # A forked child inherits the parent's modules and exit handler; it reports
    # only what it imports itself, so it takes a baseline of its own.
    #
    # Like _find_spec, this runs with globals of its own (see _start_counting),
    # holding only a weak reference to _take_baseline: the fork hooks live
    # until the interpreter itself is cleared, after the last collection of
    # garbage that could free what this module's globals hold, and holding
    # them from there cost 0.6M instructions of interpreter finalisation in
    # every process that imported anything after start-up (bench/).
    take_baseline = _take_baseline_ref()  # noqa: F821 - defined in its own globals
    if take_baseline is not None:
        take_baseline()


def _at_exit():
    # No baseline means no import after site initialisation.  Modules of the
    # standard library are filtered here, cheaply, so that such processes never
    # load the reporter, the index or a socket.
    try:
        baseline = _baseline
        if baseline is None:
            return
        modules = sys.modules
        # The difference is taken in C, before any Python code runs, so daemon
        # threads still importing cannot change the dict under it.
        new = modules.keys() - baseline
        # `python -m pkg.mod` runs the module as __main__ without importing it
        # under its own name; its spec still says which module it is.
        main_spec = getattr(modules.get("__main__"), "__spec__", None)
        if main_spec is not None:
            name = getattr(main_spec, "name", None)
            if name not in baseline:
                new.add(name)
        stdlib = getattr(sys, "stdlib_module_names", ())
        # A set: `in` on the tuple compared each new name with every entry.
        builtin = frozenset(sys.builtin_module_names)
        # Top-level modules of the standard library, most of what a process
        # imports, go in C; the loop sees the rest.
        new.difference_update(stdlib)
        new.difference_update(builtin)
        candidates = []
        for name in new:
            if type(name) is not str:
                continue
            top = name.partition(".")[0]
            if top in stdlib or top in builtin or top == "popcon_site" or top.startswith("__"):
                continue
            if modules.get(name, 0) is None:
                continue  # a None entry is an import blocked on purpose, not a module
            candidates.append(name)
        if not candidates:
            return
        # The report's own imports go through the machinery as it was once
        # site had finished (see _import).  Finders the program added (an
        # import logger) stay; only machinery it took away is put back, for as
        # long as the report runs.
        builtins = modules["builtins"]
        program = builtins.__import__, sys.meta_path, sys.path_hooks
        builtins.__import__ = _import
        restore = False
        for finder in _meta_path:
            if finder not in program[1]:
                restore = True
                break
        else:
            for hook in _path_hooks:
                if hook not in program[2]:
                    restore = True
                    break
        if restore:
            sys.meta_path, sys.path_hooks = list(_meta_path), list(_path_hooks)
        try:
            from popcon_site import reporter

            reporter.report_at_exit(candidates, _baseline_pid, _search_path, _script_entry)
        finally:
            builtins.__import__, sys.meta_path, sys.path_hooks = program
    except BaseException:  # noqa: BLE001, S110 - inside someone else's process, at exit
        pass


def activate():
    """Activate counting in this interpreter; only the first call acts."""
    # Venvs process their site-packages .pth files twice on Python <= 3.14
    # (https://github.com/python/cpython/issues/75723), and Python 3.15 may run
    # the popcon_site.start entry point as well: hence the guard.
    global _activated, _startup_path, _startup_home, _finder
    if _activated:
        return
    _activated = True
    try:
        value = os.environ.get("PYTHON_POPCONTEST_DISABLE")
        # Anything but a plainly false value opts out: whoever set the variable
        # meant to opt out, and privacy must not depend on its spelling.
        if value is not None and value.strip().lower() not in ("", "0", "false", "no", "off"):
            return
        _startup_path = tuple(sys.path)
        _startup_home = os.environ.get("HOME")
        if _site_initializing():
            # A finder needs only a find_spec attribute: a SimpleNamespace (the
            # type of sys.implementation) saves creating a class at every start.
            find_spec = type(_find_spec)(_find_spec.__code__, {"sys": sys, "__builtins__": __builtins__})
            _finder = type(sys.implementation)(find_spec=find_spec)
            sys.meta_path.insert(0, _finder)
        else:
            _start_counting()
    except BaseException:  # noqa: BLE001, S110 - a BaseException here would abort start-up
        pass


if _site_initializing():
    activate()
