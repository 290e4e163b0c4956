"""Activation: the baseline after site initialisation, idempotency, fork, ranks."""

import os

import pytest

from support import distributions as d
from support.processes import RANK_VARS, run_python

ACME = d.ACME.canonical


# --- the baseline -------------------------------------------------------------

def test_startup_hooks_really_import_their_libraries(hooked_venv, listener, prefix):
    # Guards the next tests: the hooks must run, or "not counted" proves nothing.
    script = "import sys; print(sorted(m for m in ('earlylib', 'latelib', 'sitelib') if m in sys.modules))"
    result = run_python(hooked_venv.python, ["-c", script], listener=listener, prefix=prefix)
    assert result.stdout == "['earlylib', 'latelib', 'sitelib']\n", result


def test_libraries_imported_by_pth_files_and_sitecustomize_are_not_counted(hooked_venv, listener, prefix):
    script = "import earlylib, latelib, sitelib, acme_widgets"
    result = run_python(hooked_venv.python, ["-c", script], listener=listener, prefix=prefix, expect=1)
    assert result.rc == 0, result
    assert result.datagrams == [prefix.report(ACME)], result


def test_startup_imports_alone_send_nothing(hooked_venv, listener, prefix):
    result = run_python(hooked_venv.python, ["-c", "import latelib, sitelib"], listener=listener, prefix=prefix)
    assert (result.rc, result.stderr, result.datagrams) == (0, "", []), result


USERCUSTOMIZE_CHECK = "import sys, acme_widgets, pip; print('usercustomize' in sys.modules)"


def test_libraries_imported_by_usercustomize_are_not_counted(system_site_venv, listener, prefix, tmp_path):
    # usercustomize runs only where the user site is enabled, as it is in a
    # venv with --system-site-packages; it runs after every .pth file.
    user_base = tmp_path / "userbase"
    probe = run_python(system_site_venv, ["-c", "import site; print(site.getusersitepackages())"],
                       listener=None, prefix=None, env={"PYTHONUSERBASE": str(user_base),
                                                        "PYTHON_POPCONTEST_DISABLE": "1"})
    user_site = probe.stdout.strip()
    assert user_site.startswith(str(user_base)), probe
    os.makedirs(user_site)
    with open(os.path.join(user_site, "usercustomize.py"), "w") as f:
        f.write("import acme_widgets\n")
    result = run_python(system_site_venv, ["-c", USERCUSTOMIZE_CHECK], listener=listener, prefix=prefix,
                        env={"PYTHONUSERBASE": str(user_base)}, expect=1)
    assert (result.rc, result.stdout, result.stderr) == (0, "True\n", ""), result
    # pip comes from the base interpreter and counts; acme-widgets-pro,
    # imported by usercustomize during start-up, does not.
    assert result.datagrams == [prefix.report("pip")], result


# --- idempotency: the .pth line and the PEP 829 entry point -----------------

CALL_START_ENTRY_POINT = """
import importlib, os, sys, sysconfig
start = os.path.join(sysconfig.get_paths()['purelib'], 'popcon_site.start')
with open(start, encoding='ascii') as f:
    module, _, func = f.read().strip().partition(':')
# What Python 3.15's site does with a .start file, after the .pth already ran.
getattr(importlib.import_module(module), func)()
getattr(importlib.import_module(module), func)()
import acme_widgets
"""


def test_start_entry_point_after_the_pth_still_reports_once(run, prefix):
    result = run("-c", CALL_START_ENTRY_POINT, expect=1)
    assert result.rc == 0, result
    assert result.datagrams == [prefix.report(ACME)], result


# What Python 3.15's site does when a .start file stands beside the .pth of
# the same name: the .pth import line is skipped and the entry point is
# called while site is still initialising.  Emulated by a sitecustomize.
START_ENTRY_POINT_ONLY = """
import importlib, os, sysconfig
start = os.path.join(sysconfig.get_paths()['purelib'], 'popcon_site.start')
with open(start, encoding='ascii') as f:
    module, _, func = f.read().strip().partition(':')
getattr(importlib.import_module(module), func)()
"""


def test_start_entry_point_alone_activates_and_reports_once(scratch_venv, listener, prefix):
    (scratch_venv.site_packages / "popcon_site.pth").unlink()
    (scratch_venv.site_packages / "sitecustomize.py").write_text(START_ENTRY_POINT_ONLY)
    quiet = run_python(scratch_venv.python, ["-c", "import sys; print('popcon_site' in sys.modules)"],
                       listener=listener, prefix=prefix)
    assert (quiet.rc, quiet.stdout, quiet.stderr, quiet.datagrams) == (0, "True\n", "", []), quiet
    result = run_python(scratch_venv.python, ["-c", "import acme_widgets, acmens.beta"], listener=listener,
                        prefix=prefix, expect=1)
    assert (result.rc, result.stdout, result.stderr) == (0, "", ""), result
    assert result.datagrams == [prefix.report(ACME, "acmens-beta")], result


def test_pth_line_executed_again_still_reports_once(run, prefix):
    script = (
        "import os, sysconfig\n"
        "pth = os.path.join(sysconfig.get_paths()['purelib'], 'popcon_site.pth')\n"
        "exec(open(pth, encoding='ascii').read())\n"
        "import site; site.addsitedir(sysconfig.get_paths()['purelib'])\n"
        "import acme_widgets\n"
    )
    result = run("-c", script, expect=1)
    assert result.rc == 0, result
    assert result.datagrams == [prefix.report(ACME)], result


# --- fork ----------------------------------------------------------------------

FORK_THEN_EXIT = """
import os, sys
import acme_widgets
pid = os.fork()
if pid == 0:
    import deepns.one.two.leaf
    sys.exit(0)
_, status = os.waitpid(pid, 0)
assert status == 0, status
import acmens.alpha
"""


def test_forked_child_reports_only_its_own_imports(run, prefix):
    result = run("-c", FORK_THEN_EXIT, expect=2)
    assert result.rc == 0, result
    assert sorted(result.datagrams) == sorted([
        prefix.report("deepns-leaf"),               # the child, after the fork
        prefix.report(ACME, "acmens-alpha"),        # the parent, before and after
    ]), result


def test_forked_child_with_only_inherited_modules_sends_nothing(run, prefix):
    script = FORK_THEN_EXIT.replace("    import deepns.one.two.leaf\n", "    import acme_widgets\n")
    result = run("-c", script, expect=1)
    assert result.rc == 0, result
    assert result.datagrams == [prefix.report(ACME, "acmens-alpha")], result


def test_fork_before_any_import_still_separates_parent_and_child(run, prefix):
    script = (
        "import os, sys\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    import acmens.beta\n"
        "    sys.exit(0)\n"
        "os.waitpid(pid, 0)\n"
        "import acme_widgets\n"
    )
    result = run("-c", script, expect=2)
    assert sorted(result.datagrams) == sorted([prefix.report("acmens-beta"), prefix.report(ACME)]), result


def test_forked_child_leaving_through_os_exit_reports_nothing(run, prefix):
    script = (
        "import os\n"
        "import acme_widgets\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    import acmens.beta\n"
        "    os._exit(0)\n"
        "os.waitpid(pid, 0)\n"
    )
    result = run("-c", script, expect=1)
    assert result.datagrams == [prefix.report(ACME)], result


def test_multiprocessing_fork_workers_do_not_duplicate_the_parent(run, prefix):
    script = (
        "import multiprocessing as mp\n"
        "import acme_widgets\n"
        "def work(x):\n"
        "    import acmens.beta\n"
        "    return x\n"
        "with mp.get_context('fork').Pool(2) as pool:\n"
        "    assert pool.map(work, range(4)) == list(range(4))\n"
    )
    result = run("-c", script, expect=1)
    assert result.rc == 0, result
    assert result.datagrams == [prefix.report(ACME)], result


# --- MPI and Slurm ranks ---------------------------------------------------------

@pytest.mark.parametrize("variable", RANK_VARS)
def test_nonzero_rank_sends_nothing(run, variable):
    result = run("-c", "import acme_widgets", env={variable: "3"})
    assert (result.rc, result.stdout, result.stderr, result.datagrams) == (0, "", "", []), result


@pytest.mark.parametrize("variable", RANK_VARS)
def test_rank_zero_reports(run, prefix, variable):
    result = run("-c", "import acme_widgets", env={variable: "0"}, expect=1)
    assert result.datagrams == [prefix.report(ACME)], result


@pytest.mark.parametrize("value", ["1", "true", "YES"])
def test_all_ranks_makes_a_nonzero_rank_report(run, prefix, value):
    env = {"OMPI_COMM_WORLD_RANK": "5", "SLURM_PROCID": "5", "PYTHON_POPCONTEST_ALL_RANKS": value}
    result = run("-c", "import acme_widgets", env=env, expect=1)
    assert result.datagrams == [prefix.report(ACME)], result
