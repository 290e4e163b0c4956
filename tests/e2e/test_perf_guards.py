"""Behaviour that keeps popcon-site cheap, checked without timing anything.

The timings themselves live in bench/.  Here: start-up imports nothing but
the package itself, and the index is rebuilt after pip install or uninstall,
and only then.
"""

from support import distributions as d
from support.processes import run_python

ACME = d.ACME.canonical
SURVIVOR = d.SURVIVOR.canonical


def _imported_by_site(result):
    """The modules imported while ``site`` ran, from ``-X importtime``: nested
    imports are printed before their parent, so they are the lines before
    the one for site itself."""
    names = []
    for line in result.stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        name = line.rsplit("|", 1)[1].strip()
        if name == "site":
            return names
        names.append(name)
    raise AssertionError(f"no import of site in\n{result.stderr}")


def _imported_by_the_package(result):
    """Modules that importing popcon_site imported in turn: with -X importtime
    they are the lines just before popcon_site's own, nested deeper."""
    lines = [line.rsplit("|", 1)[1] for line in result.stderr.splitlines()
             if line.startswith("import time:") and "|" in line]
    names = [line.strip() for line in lines]
    at = names.index("popcon_site")
    depth = len(lines[at]) - len(lines[at].lstrip())
    nested = []
    for line in reversed(lines[:at]):
        if len(line) - len(line.lstrip()) <= depth:
            break
        nested.append(line.strip())
    return nested


def test_start_up_imports_nothing_but_the_package(venv, listener, prefix):
    # The same interpreter, activated and opted out.  The .pth line imports
    # popcon_site either way, so what site imported must be the same: the
    # activation itself loads nothing.  (The exit handler and atexit are set up
    # only at the first import after start-up.)
    args = ["-X", "importtime", "-c", "pass"]
    active = run_python(venv.python, args, listener=listener, prefix=prefix)
    quiet = run_python(venv.python, args, listener=listener, prefix=prefix, env={"PYTHON_POPCONTEST_DISABLE": "1"})
    assert "popcon_site" in _imported_by_site(active), active
    # Importing the package loads nothing that start-up had not loaded.
    assert _imported_by_the_package(active) == [], active
    assert sorted(_imported_by_site(active)) == sorted(_imported_by_site(quiet)), (active, quiet)
    assert active.datagrams == [], active


def _rebuilt(venv, listener, prefix, module, expected):
    """Run one process importing ``module``; return whether it re-indexed."""
    result = run_python(venv.python, ["-c", f"import {module}"], listener=listener, prefix=prefix,
                        env={"PYTHON_POPCONTEST_DEBUG": "1"}, expect=1 if expected else 0)
    assert result.datagrams == ([prefix.report(*expected)] if expected else []), result
    return "popcon-site: indexed " in result.stderr


def test_index_is_rebuilt_after_pip_install_and_uninstall_and_only_then(scratch_venv, listener, prefix,
                                                                        synthetic_wheels):
    assert _rebuilt(scratch_venv, listener, prefix, "acme_widgets", [ACME])  # cold
    assert not _rebuilt(scratch_venv, listener, prefix, "acme_widgets", [ACME])  # warm
    assert not _rebuilt(scratch_venv, listener, prefix, "acme_widgets", [ACME])

    scratch_venv.pip("install", "--no-deps", str(synthetic_wheels[SURVIVOR]))
    assert _rebuilt(scratch_venv, listener, prefix, "survivor", [SURVIVOR])
    assert not _rebuilt(scratch_venv, listener, prefix, "survivor", [SURVIVOR])

    scratch_venv.pip("uninstall", "--yes", SURVIVOR)
    # The module is gone, so the process fails to import it and sends nothing,
    # but the new state of site-packages is indexed once.
    code = "import acme_widgets\ntry:\n    import survivor\nexcept ImportError:\n    pass"
    result = run_python(scratch_venv.python, ["-c", code], listener=listener, prefix=prefix,
                        env={"PYTHON_POPCONTEST_DEBUG": "1"}, expect=1)
    assert "popcon-site: indexed " in result.stderr, result
    assert result.datagrams == [prefix.report(ACME)], result
    assert not _rebuilt(scratch_venv, listener, prefix, "acme_widgets", [ACME])
