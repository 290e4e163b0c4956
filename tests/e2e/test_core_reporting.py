"""What one real process sends at exit, on every interpreter found.

Each test runs a real interpreter from a throwaway venv that has the built
wheel installed, and reads the real UDP datagrams it sent.
"""

import pytest

from support import distributions as d

ACME = d.ACME.canonical


def test_library_import_sends_the_library_and_the_denominator(run, prefix):
    result = run("-c", "import acme_widgets", expect=1)
    assert result.rc == 0, result
    assert result.datagrams == [prefix.report(ACME)], result
    assert result.lines == [f"{prefix.name}.acme-widgets-pro:1|c", f"{prefix.parent}.reports:1|c"]


def test_default_prefix_names_match_the_contract(venv, listener):
    from support.processes import run_python

    result = run_python(venv.python, ["-c", "import acme_widgets"], listener=listener, prefix=None, expect=1)
    assert result.datagrams == [b"python_popcon.library_used.acme-widgets-pro:1|c\npython_popcon.reports:1|c"], result


def test_python_c_pass_sends_nothing(run):
    result = run("-c", "pass")
    assert (result.rc, result.stdout, result.stderr, result.datagrams) == (0, "", "", [])


def test_stdlib_only_process_sends_nothing(run):
    result = run("-c", "import json, socket, email.message, xml.dom.minidom, sqlite3, asyncio")
    assert (result.rc, result.stderr, result.datagrams) == (0, "", []), result


def test_importing_popcon_site_itself_sends_nothing(run):
    result = run("-c", "import popcon_site.config, popcon_site.wire, popcon_site.index")
    assert (result.rc, result.stderr, result.datagrams) == (0, "", []), result


def test_each_library_counts_once_per_process(run, prefix):
    script = (
        "import importlib, acme_widgets, acme_widgets.gears\n"
        "importlib.reload(acme_widgets)\n"
        "import acmens.alpha, acmens.alpha.util, acmens.beta\n"
        "import oldegg, oldegg.core\n"
    )
    result = run("-c", script, expect=1)
    assert result.datagrams == [prefix.report(ACME, "acmens-alpha", "acmens-beta", d.EGG_CANONICAL)], result


def test_script_output_and_exit_code_are_untouched(run, prefix, tmp_path):
    script = tmp_path / "tool.py"
    script.write_text("import sys, acme_widgets\nprint('out')\nprint('err', file=sys.stderr)\nsys.exit(3)\n")
    result = run(str(script), expect=1)
    assert (result.rc, result.stdout, result.stderr) == (3, "out\n", "err\n")
    assert result.datagrams == [prefix.report(ACME)]


def test_an_uncaught_exception_still_reports_and_keeps_its_traceback(run, prefix):
    result = run("-c", "import acme_widgets\nraise ValueError('boom')", expect=1)
    assert result.rc == 1 and result.stderr.rstrip().endswith("ValueError: boom"), result
    assert "popcon" not in result.stderr
    assert result.datagrams == [prefix.report(ACME)]


def test_local_module_in_the_working_directory_never_appears(run, prefix, tmp_path):
    (tmp_path / "localmod.py").write_text("X = 1\n")
    (tmp_path / "private_research_helpers").mkdir()
    (tmp_path / "private_research_helpers" / "__init__.py").write_text("")
    result = run("-c", "import localmod, private_research_helpers, acme_widgets", cwd=tmp_path, expect=1)
    assert result.rc == 0, result
    assert result.datagrams == [prefix.report(ACME)], result


def test_local_module_shadowing_an_installed_library_is_not_counted(run, prefix, tmp_path):
    (tmp_path / "acme_widgets.py").write_text("X = 1\n")
    script = "import acme_widgets, acmens.beta\nassert acme_widgets.X == 1"
    result = run("-c", script, cwd=tmp_path, expect=1)
    assert result.rc == 0, result
    assert result.datagrams == [prefix.report("acmens-beta")], result


def test_only_local_modules_sends_nothing(run, tmp_path):
    (tmp_path / "localmod.py").write_text("X = 1\n")
    result = run("-c", "import localmod", cwd=tmp_path)
    assert (result.rc, result.stderr, result.datagrams) == (0, "", []), result


def test_local_portion_of_an_installed_namespace_is_not_counted(run, prefix, tmp_path):
    # acmens is a namespace whose other portions are installed distributions.
    (tmp_path / "acmens" / "gamma").mkdir(parents=True)
    (tmp_path / "acmens" / "gamma" / "__init__.py").write_text("")
    result = run("-c", "import acmens.gamma, acmens.alpha", cwd=tmp_path, expect=1)
    assert result.rc == 0, result
    assert result.datagrams == [prefix.report("acmens-alpha")], result


def test_script_next_to_its_helper_modules(run, prefix, tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    (project / "helpers.py").write_text("import acme_widgets\n")
    (project / "main.py").write_text("import helpers\n")
    result = run(str(project / "main.py"), cwd=tmp_path, expect=1)
    assert result.datagrams == [prefix.report(ACME)], result


def test_python_m_runs_an_installed_library(run, prefix, tmp_path):
    result = run("-m", "acme_widgets", cwd=tmp_path, expect=1)
    assert (result.rc, result.stdout) == (0, "acme main 12\n"), result
    assert result.datagrams == [prefix.report(ACME)], result


def test_namespace_portions_resolve_to_their_own_distributions(run, prefix):
    result = run("-c", "import acmens.beta", expect=1)
    assert result.datagrams == [prefix.report("acmens-beta")], result


def test_deep_namespace_resolves_to_the_deepest_owner(run, prefix):
    result = run("-c", "import deepns.one.two.leaf.sub", expect=1)
    assert result.datagrams == [prefix.report("deepns-leaf")], result
    result = run("-c", "import deepns.one.other", expect=1)
    assert result.datagrams == [prefix.report("deepns-other")], result


def test_namespace_parent_alone_is_not_a_library(run):
    result = run("-c", "import deepns.one.two")
    assert (result.rc, result.datagrams) == (0, []), result


def test_egg_info_install_with_top_level_txt(run, prefix):
    result = run("-c", "import oldegg.core", expect=1)
    assert result.datagrams == [prefix.report(d.EGG_CANONICAL)], result


def test_subprocesses_report_themselves(run, prefix):
    script = (
        "import subprocess, sys\n"
        "subprocess.run([sys.executable, '-c', 'import acmens.beta'], check=True)\n"
        "import acme_widgets\n"
    )
    result = run("-c", script, expect=2)
    assert sorted(result.datagrams) == sorted([prefix.report("acmens-beta"), prefix.report(ACME)]), result


def test_spawned_multiprocessing_children_report_themselves(run, prefix, tmp_path):
    script = tmp_path / "spawner.py"
    script.write_text(
        "import multiprocessing as mp\n"
        "def work():\n"
        "    import acmens.beta\n"
        "if __name__ == '__main__':\n"
        "    import acme_widgets\n"
        "    child = mp.get_context('spawn').Process(target=work)\n"
        "    child.start()\n"
        "    child.join()\n"
        "    assert child.exitcode == 0\n"
    )
    result = run(str(script), cwd=tmp_path, expect=2)
    assert result.rc == 0, result
    assert sorted(result.datagrams) == sorted([prefix.report("acmens-beta"), prefix.report(ACME)]), result


def test_many_libraries_are_split_into_datagrams_of_at_most_512_bytes(venv, listener, tmp_path):
    from support.processes import Prefix, run_python

    long_prefix = Prefix("popcontest." + "x" * 150 + ".library_used")
    script = "import acme_widgets, acmens.alpha, acmens.beta, deepns.one.two.leaf, deepns.one.other, oldegg"
    result = run_python(venv.python, ["-c", script], listener=listener, prefix=long_prefix, expect=2)
    assert all(len(data) <= 512 for data in result.datagrams), result
    assert len(result.datagrams) >= 2
    assert sorted(result.lines) == sorted(
        [long_prefix.library(n) for n in (ACME, "acmens-alpha", "acmens-beta", "deepns-leaf", "deepns-other",
                                          d.EGG_CANONICAL)] + [long_prefix.denominator])


@pytest.mark.parametrize("flags", [["-E"], ["-I"], ["-s"], ["-B"], ["-X", "importtime"]],
                         ids=["E", "I", "s", "B", "importtime"])
def test_interpreter_flags_that_keep_site_still_report(run, prefix, tmp_path, flags):
    # -E and -I ignore the interpreter's PYTHON* variables, not ours, and
    # still process .pth files.
    result = run(*flags, "-c", "import acme_widgets", cwd=tmp_path, expect=1)
    assert result.rc == 0, result
    assert result.datagrams == [prefix.report(ACME)], result


def test_dash_capital_s_processes_no_pth_and_sends_nothing(run, venv):
    script = f"import sys; sys.path.append({str(venv.site_packages)!r}); import acme_widgets"
    result = run("-S", "-c", script)
    assert (result.rc, result.datagrams) == (0, []), result
