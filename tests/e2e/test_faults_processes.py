"""Fault matrix, process shapes, interpreter flags and modes, MPI/Slurm ranks.

Every case runs with popcon-site and with PYTHON_POPCONTEST_DISABLE=1 at the
same time (support/faults.py): exit code, stdout and stderr must be
byte-identical, nothing may hang, and the datagrams received are exactly
what the processes that can report must send.
"""

import os
import subprocess
import textwrap

import pytest

from conftest import require
from support import distributions as d
from support import faults
from support.processes import RANK_VARS

ACME = d.ACME.canonical
BETA = "acmens-beta"
ALPHA = "acmens-alpha"


def _case(python, listener, prefix, tmp_path):
    def case(code, *, flags=(), env=None, expect=0, python=python, **kwargs):
        path = tmp_path / "case.py"
        path.write_text(textwrap.dedent(code))
        cmd = [python, *flags, str(path)]
        return faults.twin(cmd, listener=listener, prefix=prefix, env=env, expect=expect, cwd=tmp_path, **kwargs)
    return case


@pytest.fixture
def case(venv, listener, prefix, tmp_path):
    return _case(venv.python, listener, prefix, tmp_path)


@pytest.fixture
def newest_case(newest_venv, listener, prefix, tmp_path):
    return _case(newest_venv.python, listener, prefix, tmp_path)


# --- fork and multiprocessing -------------------------------------------------

def test_fork_then_normal_exit(case, prefix):
    result = case("""
        import os, sys
        import acme_widgets
        pid = os.fork()
        if pid == 0:
            import acmens.beta
            print('child'); sys.stdout.flush()
            sys.exit(0)
        os.waitpid(pid, 0)
        print('parent')
    """, expect=2)
    result.assert_reports(prefix.report(BETA), prefix.report(ACME))


def test_fork_in_a_forked_child(case, prefix):
    result = case("""
        import os, sys
        import acme_widgets
        if os.fork() == 0:
            import acmens.alpha
            if os.fork() == 0:
                import acmens.beta
                sys.exit(0)
            os.wait()
            sys.exit(0)
        os.wait()
    """, expect=3)
    result.assert_reports(prefix.report(BETA), prefix.report(ALPHA), prefix.report(ACME))


MP_SCRIPT = """
import multiprocessing as mp, sys

def work(x):
    import acmens.beta
    return x * 2

def single():
    import acmens.alpha

if __name__ == '__main__':
    import acme_widgets
    ctx = mp.get_context(sys.argv[1])
    with ctx.Pool(2) as pool:
        print(pool.map(work, range(6)))
        pool.close()  # workers then leave normally; terminate() would kill them
        pool.join()
    p = ctx.Process(target=single)
    p.start(); p.join()
    print('exitcode', p.exitcode)
"""


def test_multiprocessing_fork(case, prefix, venv, listener, tmp_path):
    # fork workers leave through os._exit: only the parent reports.
    (tmp_path / "mp_case.py").write_text(MP_SCRIPT)
    result = faults.twin([venv.python, str(tmp_path / "mp_case.py"), "fork"], listener=listener, prefix=prefix,
                         expect=1, cwd=tmp_path)
    assert result.quiet.stdout == b"[0, 2, 4, 6, 8, 10]\nexitcode 0\n", result
    result.assert_reports(prefix.report(ACME))


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_multiprocessing_spawn_and_forkserver(case, prefix, venv, listener, tmp_path, method):
    (tmp_path / "mp_case.py").write_text(MP_SCRIPT)
    # forkserver children leave through os._exit: only the parent reports.
    result = faults.twin([venv.python, str(tmp_path / "mp_case.py"), method], listener=listener, prefix=prefix,
                         expect=2 if method == "spawn" else 1, cwd=tmp_path, settle=0.5)
    assert result.quiet.stdout == b"[0, 2, 4, 6, 8, 10]\nexitcode 0\n", result
    result.assert_unnoticed()
    # The parent reports; so does every fresh interpreter that imported a
    # library and exits normally.  spawn children are fresh interpreters;
    # forkserver children are forked from the server and leave through os._exit.
    parent = prefix.report(ACME)
    assert parent in result.datagrams, result
    others = [data for data in result.datagrams if data != parent]
    allowed = {prefix.report(BETA), prefix.report(ALPHA), prefix.report(ACME, BETA), prefix.report(ACME, ALPHA)}
    assert set(others) <= allowed, result
    if method == "spawn":
        # 2 pool workers (one may get no task) and one Process.
        assert prefix.report(ALPHA) in others and 1 <= others.count(prefix.report(BETA)) <= 2, result


def test_subprocess_chain(case, prefix):
    result = case("""
        import subprocess, sys
        import acme_widgets
        inner = "import acmens.beta; print('c')"
        middle = f"import subprocess, sys; import acmens.alpha; subprocess.run([sys.executable, '-c', {inner!r}], check=True); print('b')"
        subprocess.run([sys.executable, '-c', middle], check=True)
        print('a')
    """, expect=3)
    result.assert_reports(prefix.report(BETA), prefix.report(ALPHA), prefix.report(ACME))


# --- threads --------------------------------------------------------------------

def test_daemon_threads_still_importing_at_exit(case, prefix, tmp_path):
    (tmp_path / "churn_local.py").write_text("X = 1\n")
    code = """
        import importlib, sys, threading, time
        started = threading.Event()

        def churn():
            import acmens.beta
            started.set()
            while True:
                for name in ('churn_local', 'colorsys'):
                    importlib.import_module(name)
                    sys.modules.pop(name, None)
                time.sleep(0.001)

        for _ in range(2):
            threading.Thread(target=churn, daemon=True).start()
        started.wait()
        import acme_widgets
        print('main done')
    """
    # CPython itself now and then crashes at finalisation while daemon
    # threads import (heap corruption, SIGSEGV or SIGABRT; seen on 3.12.1
    # with and without popcon-site).  A run where either process died of a
    # signal says nothing about popcon-site, so it is repeated, at most 3 times.
    for _ in range(3):
        result = case(code, expect=1)
        if (result.active.rc or 0) >= 0 and (result.quiet.rc or 0) >= 0:
            break
    result.assert_unnoticed()
    assert result.datagrams == [prefix.report(ACME, BETA)], result


def test_non_daemon_thread_importing_before_exit(case, prefix):
    result = case("""
        import threading, time
        def late():
            time.sleep(0.2)
            import acmens.beta
        threading.Thread(target=late).start()
        import acme_widgets
    """, expect=1)
    result.assert_reports(prefix.report(ACME, BETA))


def test_daemon_thread_blocked_inside_an_import_at_exit(case, prefix, tmp_path):
    (tmp_path / "slow_local.py").write_text("import threading\nthreading.Event().wait()\n")
    result = case("""
        import threading, time
        threading.Thread(target=lambda: __import__('slow_local'), daemon=True).start()
        time.sleep(0.2)
        import acme_widgets
    """, expect=1)
    result.assert_reports(prefix.report(ACME))


# --- signals, exits, exceptions -----------------------------------------------------

@pytest.mark.parametrize("how", ["signal", "raise", "handler-exit"])
def test_sigint_and_keyboard_interrupt(case, prefix, how):
    body = {
        "signal": "os.kill(os.getpid(), signal.SIGINT)\ntime.sleep(30)",
        "raise": "raise KeyboardInterrupt",
        "handler-exit": ("signal.signal(signal.SIGINT, lambda *a: sys.exit(130))\n"
                         "os.kill(os.getpid(), signal.SIGINT)\ntime.sleep(30)"),
    }[how]
    result = case("import os, signal, sys, time\nimport acme_widgets\nprint('before')\n" + body, expect=1)
    result.assert_reports(prefix.report(ACME))
    assert result.active.rc in (-2, 1, 130), result


@pytest.mark.parametrize("code", ["0", "3", "'a message'"])
def test_sys_exit_codes(case, prefix, code):
    result = case(f"import sys, acme_widgets\nprint('out')\nsys.exit({code})", expect=1)
    result.assert_reports(prefix.report(ACME))


@pytest.mark.parametrize("code", ["1", "255", "256", "-1", "None", "True", "2**40"])
def test_odd_sys_exit_codes(newest_case, prefix, code):
    result = newest_case(f"import sys, acme_widgets\nprint('out')\nsys.exit({code})", expect=1)
    result.assert_reports(prefix.report(ACME))


@pytest.mark.parametrize("error", [
    "raise ValueError('boom')",
    "raise RuntimeError('outer') from KeyError('inner')",
    "def f(n): return f(n + 1)\nf(0)",
    "raise SystemExit(object())",
    "raise MemoryError",
    "class Bad(Exception):\n    def __str__(self): raise TypeError('no str')\nraise Bad()",
])
def test_unhandled_exceptions(case, prefix, error):
    result = case("import acme_widgets\n" + error, expect=1)
    result.assert_reports(prefix.report(ACME))


def test_os_exit_reports_nothing(case):
    result = case("import os, acme_widgets\nprint('out', flush=True)\nos._exit(7)")
    result.assert_reports()
    assert result.active.rc == 7


def test_sigterm_default_action_reports_nothing(case):
    result = case("import os, signal, time, acme_widgets\nos.kill(os.getpid(), signal.SIGTERM)\ntime.sleep(30)")
    result.assert_reports()
    assert result.active.rc == -15


@pytest.mark.parametrize("fault", [
    "exception-in-another-handler", "handler-imports-a-library", "handler-calls-os-exit", "exit-inside-handler"])
def test_program_exit_handlers(case, prefix, fault):
    handler = {
        "exception-in-another-handler": "def h():\n    raise ValueError('handler')\n",
        "handler-imports-a-library": "def h():\n    import acmens.beta\n",
        "handler-calls-os-exit": "def h():\n    os._exit(5)\n",
        "exit-inside-handler": "def h():\n    sys.exit(9)\n",
    }[fault]
    expected = {
        "handler-imports-a-library": [prefix.report(ACME, BETA)],
        "handler-calls-os-exit": [],
    }.get(fault, [prefix.report(ACME)])
    result = case(f"import atexit, os, sys, acme_widgets\n{handler}atexit.register(h)\n", expect=len(expected))
    result.assert_reports(*expected)


@pytest.mark.parametrize("fault", [
    "stdout-closed", "fd-1-and-2-closed", "debug-with-fd-2-closed", "stdout-is-none", "broken-pipe",
])
def test_closed_or_broken_standard_streams(case, prefix, fault):
    body, env = {
        "stdout-closed": ("sys.stdout.close()", None),
        "fd-1-and-2-closed": ("os.close(1); os.close(2)", None),
        "debug-with-fd-2-closed": ("os.close(2)", {"PYTHON_POPCONTEST_DEBUG": "1"}),
        "stdout-is-none": ("sys.stdout = None; sys.stderr = None", None),
        "broken-pipe": ("r, w = os.pipe(); os.close(r); os.dup2(w, 1); os.dup2(w, 2)", {"PYTHON_POPCONTEST_DEBUG": "1"}),
    }[fault]
    result = case(f"import os, sys, acme_widgets\n{body}\n", env=env, expect=1)
    result.assert_reports(prefix.report(ACME))


@pytest.mark.parametrize("how", ["-c", "script"])
def test_working_directory_removed_before_exit(case, prefix, venv, listener, tmp_path, how):
    # Test suites chdir into a temporary directory and remove it; relative
    # sys.path entries ('' for -c) then have no absolute form.
    gone = tmp_path / "gone"
    code = ("import os, sys, acme_widgets\n"
            "d = sys.argv[-1] + '-' + os.environ.get('PYTHON_POPCONTEST_DISABLE', 'on')\n"
            "os.mkdir(d); os.chdir(d); os.rmdir(d)\nprint('out')\n")
    if how == "-c":
        cmd = [venv.python, "-c", code, str(gone)]
    else:
        (tmp_path / "case.py").write_text(code)
        cmd = [venv.python, str(tmp_path / "case.py"), str(gone)]
    result = faults.twin(cmd, listener=listener, prefix=prefix, expect=1, cwd=tmp_path)
    result.assert_reports(prefix.report(ACME))


def test_out_of_file_descriptors_at_exit(case, prefix):
    result = case("""
        import os, resource, acme_widgets
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))
        fds = []
        try:
            while True:
                fds.append(os.open(os.devnull, os.O_RDONLY))
        except OSError:
            pass
        print('exhausted')
    """)
    result.assert_reports()  # no descriptor left for a socket: nothing can be sent


@pytest.mark.parametrize("fault", ["low-recursion-limit", "deep-stack", "import-hook-that-prints",
                                   "import-hook-that-refuses", "meta-path-cleared"])
def test_program_state_at_exit(case, prefix, fault):
    body = {
        "low-recursion-limit": "sys.setrecursionlimit(60)",
        "deep-stack": "def f(n):\n    return f(n - 1) if n else sys.exit(0)\nf(sys.getrecursionlimit() - 40)",
        "import-hook-that-prints": (
            "import builtins\n_orig = builtins.__import__\n"
            "def hook(name, *a, **k):\n    print('import', name)\n    return _orig(name, *a, **k)\n"
            "builtins.__import__ = hook"
        ),
        "import-hook-that-refuses": (
            "import builtins\n"
            "def hook(name, *a, **k):\n    raise ImportError('imports are closed: ' + name)\n"
            "builtins.__import__ = hook"
        ),
        "meta-path-cleared": "sys.meta_path.clear(); sys.path_hooks.clear(); sys.path_importer_cache.clear()",
    }[fault]
    result = case(f"import sys, acme_widgets\n{body}\n", expect=1)
    result.assert_reports(prefix.report(ACME))


# --- interpreter flags --------------------------------------------------------------

@pytest.mark.parametrize("flags", [["-I"], ["-E"], ["-s"], ["-I", "-s", "-E"], ["-B", "-u"], ["-X", "dev"],
                                   ["-W", "error"], ["-O"], ["-X", "frozen_modules=off"]],
                         ids=lambda f: "".join(f))
def test_interpreter_flags_that_keep_site(case, prefix, flags):
    result = case("import sys, acme_widgets\nprint('out')\nprint('err', file=sys.stderr)", flags=flags, expect=1)
    result.assert_reports(prefix.report(ACME))


def test_dash_capital_s_sends_nothing(case, venv):
    code = f"import sys\nsys.path.append({str(venv.site_packages)!r})\nimport acme_widgets\nprint('out')"
    case(code, flags=["-S"]).assert_reports()


def test_dash_capital_s_then_site_main(case, prefix, venv):
    # -S, then the program runs site.main() itself: the .pth runs late.
    code = "import site\nsite.main()\nimport acme_widgets\nprint('out')"
    result = case(code, flags=["-S"])
    result.assert_unnoticed()
    assert result.datagrams in ([], [prefix.report(ACME)]), result


# --- venvs with and without system site-packages ----------------------------------

def _base_module(interp):
    """A distribution installed beside the base interpreter, and its module."""
    return "pip", "pip"


def test_venv_with_system_site_packages(case, prefix, system_site_venv, interp):
    dist, module = _base_module(interp)
    probe = subprocess.run([system_site_venv, "-c", f"import {module}"], capture_output=True,
                           env={**os.environ, "PYTHON_POPCONTEST_DISABLE": "1"})
    if probe.returncode != 0:
        require(f"the base interpreter {interp.executable} has no {module} to import")
    result = case(f"import {module}, acme_widgets\nprint('out')", python=system_site_venv, expect=1)
    result.assert_reports(prefix.report(dist, ACME))


def test_venv_without_system_site_packages_does_not_see_the_base(case, prefix, system_site_venv):
    # The base interpreter's site-packages, where the system-site venv finds
    # pip, is not on this venv's sys.path, and nothing from it is counted.
    base = subprocess.run([system_site_venv, "-c", "import os, pip; print(os.path.dirname(os.path.dirname("
                           "os.path.realpath(pip.__file__))))"], capture_output=True, text=True,
                          env={**os.environ, "PYTHON_POPCONTEST_DISABLE": "1"}).stdout.strip()
    assert base, "the base interpreter has no pip"
    result = case(f"""
        import os, sys
        assert {base!r} not in [os.path.realpath(p) for p in sys.path], sys.path
        import acme_widgets
        print('out')
    """, expect=1)
    result.assert_reports(prefix.report(ACME))


# --- subinterpreters ----------------------------------------------------------------

SUBINTERPRETER = """
import sys
try:
    import _interpreters as interpreters
except ImportError:
    import _xxsubinterpreters as interpreters
import acme_widgets
interp = interpreters.create()
code = "import acmens.beta\\nprint('in sub')"
if hasattr(interpreters, 'run_string'):
    interpreters.run_string(interp, code)
else:
    interpreters.exec(interp, code)
interpreters.destroy(interp)
print('done')
"""


def test_subinterpreters(case, prefix):
    result = case(SUBINTERPRETER, expect=2)
    assert result.quiet.stdout == b"in sub\ndone\n", result
    # A subinterpreter runs site and the .pth again and its exit handlers
    # when it is destroyed: it reports what it imported, as an interpreter of
    # its own (as mod_wsgi's per-application subinterpreters need), and the
    # main interpreter reports its own imports.
    result.assert_reports(prefix.report(BETA), prefix.report(ACME))


# --- MPI and Slurm ranks --------------------------------------------------------------

@pytest.mark.parametrize("variable,value,reports", [("SLURM_PROCID", "3", False), ("OMPI_COMM_WORLD_RANK", "0", True)])
def test_rank_variables(case, prefix, variable, value, reports):
    result = case("import acme_widgets\nprint('rank')", env={variable: value}, expect=int(reports))
    result.assert_reports(*([prefix.report(ACME)] if reports else []))


@pytest.mark.parametrize("variable", RANK_VARS)
@pytest.mark.parametrize("value,reports", [("3", False), ("abc", False), ("-1", False), ("0", True), (" 0 ", True),
                                           ("", True)])
def test_every_rank_variable_and_value(newest_case, prefix, variable, value, reports):
    result = newest_case("import acme_widgets\nprint('rank')", env={variable: value}, expect=int(reports))
    result.assert_reports(*([prefix.report(ACME)] if reports else []))


def test_rank_variable_with_a_forked_child_and_all_ranks(case, prefix):
    code = "import os, sys, acme_widgets\nif os.fork() == 0:\n    import acmens.beta\n    sys.exit(0)\nos.wait()\n"
    case(code, env={"SLURM_PROCID": "7"}).assert_reports()
    result = case(code, env={"SLURM_PROCID": "7", "PYTHON_POPCONTEST_ALL_RANKS": "1"}, expect=2)
    result.assert_reports(prefix.report(BETA), prefix.report(ACME))


def test_import_tracing_shows_only_the_exit_paths_own_imports(case, prefix):
    # -X importtime asks the interpreter to trace every import, so the exit
    # path's own imports appear in the trace: the one accepted difference.
    # Everything else on stderr, and stdout and the exit code, stay the same.
    result = case("import sys, acme_widgets\nprint('out')\nprint('err', file=sys.stderr)\n",
                  flags=["-X", "importtime"], expect=1)
    assert (result.active.rc, result.active.stdout) == (result.quiet.rc, result.quiet.stdout), result
    active = result.active.stderr.decode().splitlines()
    quiet = result.quiet.stderr.decode().splitlines()
    trace = [line for line in active if line.startswith("import time:")]
    names = [line.rpartition("|")[2].strip() for line in trace if line not in quiet]
    assert [line for line in active if not line.startswith("import time:")] == \
        [line for line in quiet if not line.startswith("import time:")], result
    assert "popcon_site.reporter" in names, result
    assert set(quiet) - set(active) <= {line for line in quiet if line.startswith("import time:")}, result
    assert result.datagrams == [prefix.report(ACME)], result
