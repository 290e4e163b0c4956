"""Nothing private leaves a process: a battery of real processes, every byte checked.

The processes run in a venv with system site-packages (so the user site is
live), from a project directory under a fake home, with local modules, a
user-site install, a PYTHONPATH tree under the home and one outside it, a
`__main__` script with a telling name, and secrets in the environment and
argv.  Every datagram they send is captured on a real UDP socket.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest

from conftest import build_once
from support import distributions as d
from support import environments as envs
from support import privacy
from support.processes import run_python

ACME, HPC, HOME_LIB, USER_LIB = d.ACME.canonical, d.HPCTOOL.canonical, d.HOMELIB.canonical, privacy.USERLIB.canonical


@pytest.fixture(scope="session")
def system_site_venv(interp, shared_dir, core_wheel, synthetic_wheels) -> envs.Venv:
    """A venv of ``interp`` that sees the user site (it needs --system-site-packages)."""
    def build(target):
        envs.check_call([sys.executable, "-m", "virtualenv", "--quiet", "--system-site-packages",
                         "-p", interp.executable, target / "env"])
        python = target / "env" / "bin" / "python"
        site_packages = envs.check_call(
            [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).strip()
        venv = envs.Venv(target / "env", python, Path(site_packages), interp.id)
        venv.pip("install", "--quiet", "--no-index", str(core_wheel), str(synthetic_wheels[ACME]))
        (target / "venv.json").write_text(venv.to_json())
    built = build_once(shared_dir, f"privacy-venv-{interp.id}", build)
    return envs.Venv.from_json((built / "venv.json").read_text())


@pytest.fixture(scope="session")
def world(interp, system_site_venv, synthetic_wheels, shared_dir) -> privacy.UserWorld:
    """The user's home, projects, trees and secrets; built once per interpreter, never changed by a test."""
    def build(target):
        userlib_wheel = d.build_wheel(privacy.USERLIB, target / "wheels")
        made = privacy.make_user_world(target, system_site_venv, synthetic_wheels, userlib_wheel)
        (target / "world.json").write_text(made.to_json())
    built = build_once(shared_dir, f"privacy-world-{interp.id}", build)
    return privacy.UserWorld.from_json((built / "world.json").read_text())


def battery(world: privacy.UserWorld) -> list[tuple[str, Path, list[str], dict, frozenset[str]]]:
    """(case, cwd, argv, extra env, libraries it must report): the user's processes."""
    home_script, shared_script = str(world.script), str(world.shared_project / f"{privacy.PROJECT}.py")
    argv = world.secret_argv
    relative_home_tree = os.path.relpath(world.home_tree, world.project)
    # The home tree again, through a symlink that lies outside the home directory.
    alias = world.home.parent.parent / "data-alias"
    if not alias.is_symlink():
        try:
            alias.symlink_to(world.home)
        except FileExistsError:  # another worker made it
            pass
    aliased_tree = alias / world.home_tree.relative_to(world.home)
    local_only = f"import {privacy.LOCAL_MODULE}, {privacy.LOCAL_PACKAGE}.ledger; print('local only')"
    runtime_paths = (
        "import sys\n"
        f"sys.path.insert(0, {relative_home_tree!r})\n"
        f"sys.path.insert(0, {str(aliased_tree)!r})\n"
        f"sys.path.append({str(world.home_tree) + '/'!r})\n"
        f"sys.path.append({str(world.home) + '/./pylib'!r})\n"
        "import homelib, hpctool\n"
        "print(homelib.NAME, hpctool.NAME)\n"
    )
    default = frozenset({ACME, HPC})
    cases = []
    for where, cwd, script in (("home", world.project, home_script), ("shared", world.shared_project, shared_script)):
        launcher = str(cwd / f"{privacy.LAUNCHER}.py")
        cases += [
            (f"{where}-script", cwd, [script, *argv], {}, default),
            (f"{where}-script-exit-code", cwd, [script, *argv], {"ACME_EXIT_CODE": "3"}, default),
            (f"{where}-module", cwd, ["-m", privacy.PROJECT, *argv], {}, default),
            (f"{where}-command", cwd, ["-c", privacy.MAIN_SCRIPT, *argv], {}, default),
            (f"{where}-stdin", cwd, ["-", *argv], {"STDIN": privacy.MAIN_SCRIPT}, default),
            # -s: the user site is off, so the script dies on `import jdoe_userlib`
            # with a traceback; what it imported before still counts.
            (f"{where}-no-user-site-traceback", cwd, ["-s", script, *argv], {}, default),
            (f"{where}-launcher-changes-sys-path-first", cwd, [launcher, *argv], {}, default),
            (f"{where}-local-code-only", cwd, ["-c", local_only, *argv], {}, frozenset()),
            (f"{where}-include-user", cwd, [script, *argv], {"PYTHON_POPCONTEST_INCLUDE_USER": "1"},
             frozenset({ACME, HPC, HOME_LIB, USER_LIB})),
        ]
    # Test suites and sandboxing tools point HOME elsewhere for their own
    # children; the home directory that counts is the one the process started with.
    moved_home = "import os\nos.environ['HOME'] = '/nonexistent'\nimport homelib, hpctool\nprint(homelib.NAME)\n"
    cases.append(("program-moves-home", world.project, ["-c", moved_home, *argv], {}, frozenset({HPC})))
    cases.append(("home-tree-by-other-spellings", world.project, ["-c", runtime_paths, *argv],
                  {"PYTHONPATH": str(world.system_tree)}, frozenset({HPC})))
    return cases


def run_case(python, args, env, cwd, listener, prefix, expect):
    stdin = env.pop("STDIN", None)
    if stdin is None:
        return run_python(python, args, listener=listener, prefix=prefix, env=env, cwd=cwd, expect=expect)
    # `python -` reads the program from stdin, which run_python closes.
    fd, script = tempfile.mkstemp(suffix=".stdin")
    with os.fdopen(fd, "w") as out:
        out.write(stdin)
    try:
        env = {**env, "ACME_STDIN_PROGRAM": script}
        shell = "exec \"$0\" \"$@\" < \"$ACME_STDIN_PROGRAM\""
        return run_python("/bin/sh", ["-c", shell, str(python), *args], listener=listener, prefix=prefix, env=env,
                          cwd=cwd, expect=expect)
    finally:
        os.unlink(script)


def test_nothing_private_leaves_a_process(system_site_venv, world, listener, prefix):
    shape = privacy.contract_line(prefix.name)
    # What the processes could name at all: every distribution on their
    # sys.path, less the project directory (sys.path[0] is the user's code).
    visible = set(run_python(system_site_venv.python, ["-c", privacy.VISIBLE_DISTRIBUTIONS], listener=None,
                             prefix=None, env=world.environ(PYTHON_POPCONTEST_DISABLE="1"),
                             cwd=world.home).stdout.split())
    assert {ACME, HPC, HOME_LIB, USER_LIB} <= visible and privacy.LOCAL_DIST not in visible, visible
    forbidden = world.forbidden()
    checked = 0
    for case, cwd, args, extra, expected in battery(world):
        env = world.environ(**extra)
        sent = run_case(system_site_venv.python, args, dict(env), cwd, listener, prefix, 1 if expected else 0)
        quiet = run_case(system_site_venv.python, args, {**env, "PYTHON_POPCONTEST_DISABLE": "1"}, cwd, None,
                         prefix, 0)
        # The host process notices nothing: same exit code, same bytes out.
        assert (sent.rc, sent.stdout, sent.stderr) == (quiet.rc, quiet.stdout, quiet.stderr), (case, sent, quiet)
        rc = 3 if case.endswith("exit-code") else 1 if case.endswith("traceback") else 0
        assert sent.rc == rc and (sent.stdout or sent.stderr), (case, sent)

        reported = set()
        for datagram in sent.datagrams:
            assert len(datagram) <= 512, (case, datagram)
            text = datagram.decode("ascii")  # raises on any non-ASCII byte
            for line in text.split("\n"):
                match = shape.match(line)
                assert match, (case, line, sent)
                if match.group(1) is not None:
                    assert match.group(1) in visible, (case, line)
                    assert match.group(1) not in reported, (case, "counted twice", line)
                    reported.add(match.group(1))
            # A host name may be as short as a library name: only what the
            # contract explains away may match.
            explained = prefix.report(*expected).decode()
            leaks = [word for word in forbidden if word in text and word not in explained]
            assert leaks == [], (case, leaks, text)
            checked += 1
        assert reported == expected, (case, sent)
        denominators = sum(line.endswith(".reports:1|c") for line in sent.lines)
        assert denominators == (1 if expected else 0), (case, sent)
    assert checked >= 10


def test_user_site_install_is_counted_only_with_include_user(system_site_venv, world, listener, prefix):
    code = "import jdoe_userlib, acme_widgets"
    default = run_python(system_site_venv.python, ["-c", code], listener=listener, prefix=prefix,
                         env=world.environ(), cwd=world.project, expect=1)
    assert default.datagrams == [prefix.report(ACME)], default
    included = run_python(system_site_venv.python, ["-c", code], listener=listener, prefix=prefix,
                          env=world.environ(PYTHON_POPCONTEST_INCLUDE_USER="1"), cwd=world.project, expect=1)
    assert included.datagrams == [prefix.report(ACME, USER_LIB)], included


def test_user_site_alone_sends_nothing(system_site_venv, world, listener, prefix):
    result = run_python(system_site_venv.python, ["-c", "import jdoe_userlib"], listener=listener, prefix=prefix,
                        env=world.environ(), cwd=world.project)
    assert (result.rc, result.stdout, result.stderr, result.datagrams) == (0, "", "", []), result


def test_versions_tag_carries_only_a_version(system_site_venv, world, listener, prefix):
    result = run_python(system_site_venv.python, [str(world.script), *world.secret_argv], listener=listener,
                        prefix=prefix, env=world.environ(PYTHON_POPCONTEST_VERSIONS="1"), cwd=world.project,
                        expect=1)
    assert result.lines == [f"{prefix.name}.{ACME}:1|c|#version:{d.ACME.version}",
                            f"{prefix.name}.{HPC}:1|c|#version:{d.HPCTOOL.version}",
                            prefix.denominator], result


def test_debug_output_goes_only_to_stderr_and_only_when_asked(system_site_venv, world, listener, prefix):
    # Debug may name paths on the user's own terminal; it never goes on the wire.
    result = run_python(system_site_venv.python, [str(world.script)], listener=listener, prefix=prefix,
                        env=world.environ(PYTHON_POPCONTEST_DEBUG="1"), cwd=world.project, expect=1)
    assert result.datagrams == [prefix.report(ACME, HPC)], result
    debug = [line for line in result.stderr.splitlines() if line != "args 1"]
    assert debug and all(line.startswith("popcon-site: ") for line in debug), result.stderr
    assert result.stdout.startswith("main ")


@pytest.mark.parametrize("value", ["1", "true", "YES", "on", "please"])
def test_a_program_can_opt_itself_out_before_exit(system_site_venv, world, listener, prefix, value):
    code = f"import os, acme_widgets, hpctool\nos.environ['PYTHON_POPCONTEST_DISABLE'] = {value!r}\nprint('done')"
    result = run_python(system_site_venv.python, ["-c", code], listener=listener, prefix=prefix,
                        env=world.environ(), cwd=world.project)
    assert (result.rc, result.stdout, result.stderr, result.datagrams) == (0, "done\n", "", []), result


def test_opting_out_in_the_environment_sends_nothing(system_site_venv, world, listener, prefix):
    result = run_python(system_site_venv.python, [str(world.script), *world.secret_argv], listener=listener,
                        prefix=prefix, env=world.environ(PYTHON_POPCONTEST_DISABLE="1"), cwd=world.project)
    assert result.rc == 0 and result.datagrams == [], result
