"""A project's own checkout, wherever it lives, never names the project on the wire.

Any setuptools project that was ever built or installed in development mode
keeps its ``*.egg-info`` in its checkout, and HPC and lab projects live in
/scratch or /srv as often as under $HOME.  These run real processes against a
checkout outside the home directory.
"""

import os
import subprocess

import pytest

from support import distributions as d
from support.processes import case_environ, run_python

ACME = d.ACME.canonical
SECRET = "acme-secret-project"


@pytest.fixture
def checkout(tmp_path):
    """A project checkout outside $HOME with its package, metadata and a script in a subdirectory."""
    root = tmp_path / "srv" / "secretproj"
    d.write_egg_info(root, "acme_secret_project", "0.1", {"acme_secret_project/__init__.py": "X = 1\n"},
                     ["acme_secret_project"], "3")
    (root / "pyproject.toml").write_text('[project]\nname = "acme-secret-project"\nversion = "0.1"\n')
    (root / "scripts").mkdir()
    (root / "scripts" / "run.py").write_text(
        "import os, sys\n"
        "sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))\n"
        "import acme_secret_project, acme_widgets\n"
    )
    return root


def _run(venv, listener, prefix, args, **kwargs):
    return run_python(venv.python, args, listener=listener, prefix=prefix, **kwargs)


def test_checkout_added_to_sys_path_by_a_script_in_a_subdirectory(venv, listener, prefix, checkout):
    result = _run(venv, listener, prefix, [str(checkout / "scripts" / "run.py")], cwd=checkout / "scripts", expect=1)
    assert result.rc == 0, result
    assert result.datagrams == [prefix.report(ACME)], result


def test_checkout_on_pythonpath_from_a_subdirectory(venv, listener, prefix, checkout):
    (checkout / "tests").mkdir()
    result = _run(venv, listener, prefix, ["-c", "import acme_secret_project, acme_widgets"], cwd=checkout / "tests",
                  env={"PYTHONPATH": str(checkout)}, expect=1)
    assert result.datagrams == [prefix.report(ACME)], result


def test_src_layout_checkout_on_pythonpath(venv, listener, prefix, tmp_path):
    root = tmp_path / "work" / "proj"
    src = root / "src"
    d.write_egg_info(src, "acme_secret_project", "0.1", {"acme_secret_project/__init__.py": "X = 1\n"},
                     ["acme_secret_project"], "3")
    (root / "setup.cfg").write_text("[metadata]\nname = acme-secret-project\n")
    result = _run(venv, listener, prefix, ["-c", "import acme_secret_project, acme_widgets"],
                  env={"PYTHONPATH": str(src)}, expect=1)
    assert result.datagrams == [prefix.report(ACME)], result


def test_an_admin_can_count_checkouts_too(venv, listener, prefix, checkout):
    result = _run(venv, listener, prefix, ["-c", "import acme_secret_project, acme_widgets"],
                  env={"PYTHONPATH": str(checkout), "PYTHON_POPCONTEST_INCLUDE_USER": "1"}, expect=1)
    assert result.datagrams == [prefix.report(ACME, SECRET)], result


def test_a_copy_of_a_library_on_pythonpath_is_not_the_installed_library(venv, listener, prefix, tmp_path):
    # A PYTHONPATH directory outside any checkout holding its own
    # acme_widgets.py: the module imported is that copy, not the distribution.
    shared = tmp_path / "opt" / "shared"
    shared.mkdir(parents=True)
    (shared / "acme_widgets.py").write_text("X = 'copy'\n")
    result = _run(venv, listener, prefix, ["-c", "import acme_widgets, acmens.beta\nassert acme_widgets.X == 'copy'"],
                  env={"PYTHONPATH": str(shared)}, expect=1)
    assert result.rc == 0, result
    assert result.datagrams == [prefix.report("acmens-beta")], result


def test_dry_run_with_stderr_closed_never_writes_into_the_programs_files(venv, listener, prefix, tmp_path):
    # Started with fd 2 closed (2>&-), the program's first open() gets fd 2.
    script = "import acme_widgets\nf = open('data.txt', 'w')\nf.write('user data\\n')\nf.flush()\n"
    env = case_environ(listener, prefix, {"PYTHON_POPCONTEST_DRY_RUN": "1", "PYTHON_POPCONTEST_DEBUG": "1"})
    proc = subprocess.run([str(venv.python), "-c", script], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                          stdin=subprocess.DEVNULL, preexec_fn=lambda: os.close(2), timeout=60)
    assert proc.returncode == 0, proc
    assert (tmp_path / "data.txt").read_text() == "user data\n"
    assert listener.collect(expect=0) == []


# --- the program's own directories, however they are spelled ---------------------

@pytest.fixture
def script_dir(tmp_path):
    """A directory holding a script and the metadata of a private project, but
    no checkout marker: private because the script runs from it."""
    from support.faults import write_dist_info

    proj = tmp_path / "proj"
    write_dist_info(proj, "acme_secret_thing", "1.0", {"acme_secret_thing.py": "X = 1\n"})
    (proj / "run.py").write_text("import acme_secret_thing, acme_widgets\n")
    (tmp_path / "projlink").symlink_to(proj)
    return proj


@pytest.mark.parametrize("spelling", ["double-slash", "symlink", "dot-segments"])
@pytest.mark.parametrize("how", ["script", "-c in it", "-m in it"])
def test_script_directory_reached_under_another_spelling_is_not_reported(venv, listener, prefix, script_dir,
                                                                         spelling, how):
    path = {"double-slash": "/" + str(script_dir), "symlink": str(script_dir.parent / "projlink"),
            "dot-segments": str(script_dir / ".." / "proj" / ".")}[spelling]
    args = {"script": [str(script_dir / "run.py")], "-c in it": ["-c", "import acme_secret_thing, acme_widgets"],
            "-m in it": ["-m", "run"]}[how]
    result = _run(venv, listener, prefix, args, cwd=script_dir, env={"PYTHONPATH": path}, expect=1)
    assert result.rc == 0, result
    assert result.datagrams == [prefix.report(ACME)], result


@pytest.mark.parametrize("bound", ["the home", "a directory in the home"])
def test_home_directory_reached_through_another_mount_is_not_reported(venv, listener, prefix, tmp_path, bound):
    # Clusters mount home directories in more than one place (autofs, /net/...).
    from conftest import require
    from support import faults
    from support.faults import write_dist_info

    if faults.netns_available():  # the same needs: root and unshare
        require(f"a private mount namespace is needed: {faults.netns_available()}")
    # As a container binds it (--bind ~/lib:/opt/lib): the mount shares no
    # ancestor with the home when a directory inside it is bound.
    home, mount = tmp_path / "home", tmp_path / "mnt"
    write_dist_info(home / "lib", "alice_private_tool", "1.0", {"alice_private_tool.py": "X = 1\n"})
    mount.mkdir()
    source, on_path = (home, mount / "lib") if bound == "the home" else (home / "lib", mount)
    code = "import alice_private_tool, acme_widgets"
    wrapped = ["-m", "sh", "-c", 'mount --bind "$1" "$2" && shift 2 && exec "$@"', "bind", str(source), str(mount),
               str(venv.python), "-c", code]
    result = run_python("unshare", wrapped, listener=listener, prefix=prefix, cwd=tmp_path,
                        env={"HOME": str(home), "PYTHONPATH": str(on_path)}, expect=1)
    assert (result.rc, result.stderr) == (0, ""), result
    assert result.datagrams == [prefix.report(ACME)], result
