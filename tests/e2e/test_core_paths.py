"""Where distributions live: PYTHONPATH module trees, home directories, broken metadata."""

import os
import shutil

import pytest

from support import distributions as d
from support.environments import pip_target

ACME = d.ACME.canonical


@pytest.mark.parametrize("flags", [[], ["-I"]], ids=["default", "isolated"])
def test_system_tree_inserted_first_before_any_import_is_reported(run, prefix, hpc_tree, tmp_path, flags):
    # The tree goes in front of the script's own directory before the first
    # import, which is when the baseline is taken.
    script = tmp_path / "launcher.py"
    script.write_text(f"import sys\nsys.path.insert(0, {str(hpc_tree)!r})\nimport hpctool\n")
    result = run(*flags, str(script), expect=1)
    assert result.rc == 0, result
    assert result.datagrams == [prefix.report("hpc-tool")], result


@pytest.fixture
def hpc_tree(venv, synthetic_wheels, tmp_path):
    """A system module tree outside the venv, as HPC sites add through PYTHONPATH."""
    tree = tmp_path / "opt" / "modules" / "python"
    pip_target(venv, tree, [synthetic_wheels[d.HPCTOOL.canonical]])
    return tree


def test_script_that_moves_site_packages_to_the_front_still_counts_its_libraries(run, prefix, venv, tmp_path):
    # site-packages is on sys.path already; the script's own directory is
    # then second, and it is that one which is the program's.
    script = tmp_path / "front.py"
    script.write_text(f"import sys\nsys.path.insert(0, {str(venv.site_packages)!r})\nimport acme_widgets\n")
    result = run(str(script), expect=1)
    assert result.rc == 0, result
    assert result.datagrams == [prefix.report(ACME)], result


@pytest.mark.parametrize("how", ["-c", "-m"])
def test_system_tree_that_sitecustomize_puts_first_is_counted_and_the_working_directory_is_not(
        scratch_venv, listener, prefix, hpc_tree, tmp_path, how):
    from support.faults import write_dist_info
    from support.processes import run_python

    (scratch_venv.site_packages / "sitecustomize.py").write_text(f"import sys\nsys.path.insert(0, {str(hpc_tree)!r})\n")
    work = tmp_path / "work"
    write_dist_info(work, "acme_secret_cwd", "1.0", {"acme_secret_cwd.py": "import hpctool\n"})
    args = ["-c", "import acme_secret_cwd"] if how == "-c" else ["-m", "acme_secret_cwd"]
    result = run_python(scratch_venv.python, args, listener=listener, prefix=prefix, cwd=work, expect=1)
    assert result.rc == 0, result
    assert result.datagrams == [prefix.report("hpc-tool")], result


def test_system_tree_on_pythonpath_is_reported(run, prefix, hpc_tree):
    result = run("-c", "import hpctool, acme_widgets", env={"PYTHONPATH": str(hpc_tree)}, expect=1)
    assert result.rc == 0, result
    assert result.datagrams == [prefix.report("hpc-tool", ACME)], result


def test_system_tree_added_to_sys_path_at_run_time_is_reported(run, prefix, hpc_tree):
    # As notebooks do: some imports first, then a shared tree added by hand.
    script = f"import json, sys\nsys.path.append({str(hpc_tree)!r})\nimport hpctool"
    result = run("-c", script, expect=1)
    assert result.rc == 0, result
    assert result.datagrams == [prefix.report("hpc-tool")], result


@pytest.fixture
def home_install(venv, synthetic_wheels, tmp_path):
    """A user's own install under their home directory, outside the environment."""
    home = tmp_path / "home" / "someone"
    target = home / "pylib"
    pip_target(venv, target, [synthetic_wheels[d.HOMELIB.canonical]])
    return home, target


def test_install_under_the_home_directory_is_not_reported(run, prefix, home_install):
    home, target = home_install
    env = {"HOME": str(home), "PYTHONPATH": str(target)}
    result = run("-c", "import homelib, acme_widgets", env=env, expect=1)
    assert result.rc == 0, result
    assert result.datagrams == [prefix.report(ACME)], result
    assert b"home-private-lib" not in b"".join(result.datagrams)


def test_home_install_alone_sends_nothing(run, home_install):
    home, target = home_install
    result = run("-c", "import homelib", env={"HOME": str(home), "PYTHONPATH": str(target)})
    assert (result.rc, result.datagrams) == (0, []), result


def test_include_user_counts_home_installs(run, prefix, home_install):
    home, target = home_install
    env = {"HOME": str(home), "PYTHONPATH": str(target), "PYTHON_POPCONTEST_INCLUDE_USER": "1"}
    result = run("-c", "import homelib", env=env, expect=1)
    assert result.datagrams == [prefix.report("home-private-lib")], result


def test_venv_inside_the_home_directory_is_still_reported(run, prefix, venv):
    # The environment's own prefix is under HOME here: its libraries count.
    result = run("-c", "import acme_widgets", env={"HOME": str(venv.root.parent)}, expect=1)
    assert result.datagrams == [prefix.report(ACME)], result


def _broken_tree(base, venv, synthetic_wheels):
    """A directory with one good distribution among several broken ones."""
    tree = base / "broken-tree"
    pip_target(venv, tree, [synthetic_wheels[d.SURVIVOR.canonical]])
    d.write_broken_distributions(tree)
    return tree


def test_broken_metadata_never_stops_the_others(run, prefix, venv, synthetic_wheels, tmp_path):
    tree = _broken_tree(tmp_path, venv, synthetic_wheels)
    result = run("-c", "import survivor, acme_widgets", env={"PYTHONPATH": str(tree)}, expect=1)
    assert result.rc == 0 and result.stderr == "", result
    assert result.datagrams == [prefix.report("survivor", ACME)], result


def test_distribution_removed_after_the_index_was_cached_is_no_longer_reported(run, prefix, venv, synthetic_wheels,
                                                                               tmp_path):
    tree = tmp_path / "tree"
    pip_target(venv, tree, [synthetic_wheels[d.HPCTOOL.canonical], synthetic_wheels[d.SURVIVOR.canonical]])
    env = {"PYTHONPATH": str(tree)}
    result = run("-c", "import hpctool, survivor", env=env, expect=1)
    assert result.datagrams == [prefix.report("hpc-tool", "survivor")], result
    # Remove hpc-tool's metadata but leave its code, as a broken uninstall would.
    for info in tree.glob("HPC_Tool-*.dist-info"):
        shutil.rmtree(info)
    stat = os.stat(tree)
    os.utime(tree, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    result = run("-c", "import hpctool, survivor", env=env, expect=1)
    assert result.datagrams == [prefix.report("survivor")], result


def test_cache_is_written_inside_the_environment(run, prefix, venv):
    result = run("-c", "import acme_widgets", expect=1)
    assert result.datagrams == [prefix.report(ACME)]
    caches = list((venv.root / "var" / "cache" / "popcon-site").glob("index-*.marshal"))
    assert caches, "the exit path should cache its index inside the environment"


EXIT_IMPORT_LOGGER = """
import os, sys
class ImportLogger:
    armed = False
    def find_spec(self, name, path=None, target=None):
        if ImportLogger.armed:
            os.write(1, b"exit-import " + name.encode() + b"\\n")
        return None
sys.meta_path.insert(0, ImportLogger())
import acme_widgets
ImportLogger.armed = True
"""
COSTLY = ("importlib.metadata", "statsd", "packaging", "json", "socket", "email", "re")


def test_warm_exit_path_imports_none_of_the_costly_modules(run, prefix):
    run("-c", "import acme_widgets", expect=1)  # warms the index cache
    result = run("-c", EXIT_IMPORT_LOGGER, expect=1)
    assert result.datagrams == [prefix.report(ACME)], result
    exit_imports = [line.split()[1] for line in result.stdout.splitlines() if line.startswith("exit-import ")]
    assert "popcon_site.reporter" in exit_imports, result  # the logger really sees the exit path
    costly = [m for m in exit_imports if m in COSTLY or m.startswith(tuple(c + "." for c in COSTLY))]
    assert costly == [], exit_imports
