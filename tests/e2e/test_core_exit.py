"""The exit path under the ways real programs end: threads, signals, odd flags, closed fds."""

import signal

import pytest

from support import distributions as d
from support.processes import run_python

ACME = d.ACME.canonical


def test_library_imported_by_a_thread_is_counted(run, prefix):
    script = (
        "import threading\n"
        "t = threading.Thread(target=lambda: __import__('acmens.beta'))\n"
        "t.start(); t.join()\n"
    )
    result = run("-c", script, expect=1)
    assert result.datagrams == [prefix.report("acmens-beta")], result


def test_daemon_thread_changing_sys_modules_during_exit_does_not_stop_the_report(run, prefix):
    script = (
        "import itertools, sys, threading\n"
        "import acme_widgets\n"
        "def churn():\n"
        "    for i in itertools.count():\n"
        "        sys.modules['churn_%d' % i] = None\n"
        "        sys.modules.pop('churn_%d' % (i - 50), None)\n"
        "threading.Thread(target=churn, daemon=True).start()\n"
    )
    result = run("-c", script, expect=1)
    assert (result.rc, result.stderr) == (0, ""), result
    assert result.datagrams == [prefix.report(ACME)], result


def test_unhandled_keyboard_interrupt_keeps_its_exit_status_while_the_index_is_built(scratch_venv, listener, prefix):
    # A fresh venv: the exit path builds the index.  On 3.10 evaluating source
    # text (namedtuple, so anything importing functools) in an exit handler
    # cleared the record of the unhandled KeyboardInterrupt: rc 1, not -SIGINT.
    script = "import os, signal\nimport acme_widgets\nos.kill(os.getpid(), signal.SIGINT)\nimport time\ntime.sleep(30)"
    quiet = run_python(scratch_venv.python, ["-c", script], listener=listener, prefix=prefix,
                       env={"PYTHON_POPCONTEST_DISABLE": "1"})
    cold = run_python(scratch_venv.python, ["-c", script], listener=listener, prefix=prefix, expect=1)
    assert quiet.rc == -signal.SIGINT, quiet
    assert (cold.rc, cold.stdout, cold.stderr) == (quiet.rc, quiet.stdout, quiet.stderr), cold
    assert cold.datagrams == [prefix.report(ACME)], cold


def test_keyboard_interrupt_still_reports(run, prefix):
    script = "import os, signal\nimport acme_widgets\nos.kill(os.getpid(), signal.SIGINT)\nimport time\ntime.sleep(30)"
    result = run("-c", script, expect=1)
    assert "KeyboardInterrupt" in result.stderr, result
    assert result.datagrams == [prefix.report(ACME)], result


def test_sigterm_sends_nothing_and_nothing_broken(run):
    script = "import os, signal\nimport acme_widgets\nos.kill(os.getpid(), signal.SIGTERM)\nimport time\ntime.sleep(30)"
    result = run("-c", script)
    assert result.rc == -15 and result.datagrams == [], result


def test_closed_stderr_with_debug_on_still_reports(run, prefix):
    script = "import os, sys\nimport acme_widgets\nos.close(2)\nsys.stderr = None"
    result = run("-c", script, env={"PYTHON_POPCONTEST_DEBUG": "1"}, expect=1)
    assert result.rc == 0, result
    assert result.datagrams == [prefix.report(ACME)], result


@pytest.mark.parametrize("flags", [["-OO"], ["-W", "error"], ["-X", "dev"], ["-u"], ["-X", "frozen_modules=off"]],
                         ids=["OO", "Werror", "Xdev", "u", "nofrozen"])
def test_more_interpreter_flags_still_report(run, prefix, tmp_path, flags):
    result = run(*flags, "-c", "import acme_widgets", cwd=tmp_path, expect=1)
    assert (result.rc, result.stderr) == (0, ""), result
    assert result.datagrams == [prefix.report(ACME)], result


def test_zipapp_reports_the_libraries_it_uses_but_not_itself(run, prefix, tmp_path):
    import zipapp

    source = tmp_path / "app"
    source.mkdir()
    (source / "__main__.py").write_text("import appmod\n")
    (source / "appmod.py").write_text("import acme_widgets\n")
    target = tmp_path / "app.pyz"
    zipapp.create_archive(source, target)
    result = run(str(target), cwd=tmp_path, expect=1)
    assert result.rc == 0, result
    assert result.datagrams == [prefix.report(ACME)], result


def test_exec_replaces_the_process_and_the_new_image_reports_itself(run, prefix):
    script = "import os, sys\nimport acme_widgets\nos.execv(sys.executable, [sys.executable, '-c', 'import acmens.beta'])"
    result = run("-c", script, expect=1)
    assert result.rc == 0, result
    assert result.datagrams == [prefix.report("acmens-beta")], result
