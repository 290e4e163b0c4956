"""`popcon-site status`, `index`, `mapping` and the `[collector]` extra as installed from the wheel into a venv."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

from popcon_site.collector.mapping import mapping_yaml
from support import distributions as d
from support.collector_proc import wait_until
from support.environments import create_venv
from support.processes import clean_environ, run_python

REPO = Path(__file__).resolve().parents[2]


def status(python, *flags, env=None, listener=None):
    result = run_python(python, [*flags, "-m", "popcon_site", "status"], listener=listener, prefix=None,
                        env=env or {})
    assert result.rc == 0, result
    assert "Traceback" not in result.stderr
    return result


def test_status_says_active_and_shows_the_effective_settings(venv, listener):
    result = status(venv.python, listener=listener, env={
        "PYTHON_POPCONTEST_STATSD_HOST": "127.0.0.1", "PYTHON_POPCONTEST_STATSD_PORT": str(listener.port),
        "PYTHON_POPCONTEST_STATSD_PREFIX": "python_popcon.hub_a.library_used",
    })
    out = result.stdout
    assert "status:      ACTIVE" in out and "popcon_site.pth" in out
    assert "prefix:      python_popcon.hub_a.library_used (denominator python_popcon.hub_a.reports)" in out
    assert "reports go:  statsd over UDP to 127.0.0.1:%d" % listener.port in out
    assert "index:" in out and "environment" in out
    # The command is admin tooling: it never reports itself.
    assert result.datagrams == []


def test_status_explains_why_not(venv):
    cases = [
        ({"PYTHON_POPCONTEST_DISABLE": "1"}, (), "INACTIVE: opted out"),
        ({"PYTHON_POPCONTEST_DISABLE": "please"}, (), "INACTIVE: opted out"),
        ({"SLURM_PROCID": "3"}, (), "INACTIVE: SLURM_PROCID='3' is not rank 0"),
        ({"PYTHON_POPCONTEST_STATSD_PREFIX": "bad prefix"}, (), "INACTIVE: installed, but sends nothing"),
        ({"PYTHONPATH": str(venv.site_packages)}, ("-S",), "INACTIVE: site is disabled (-S)"),
    ]
    for env, flags, expected in cases:
        out = status(venv.python, *flags, env=env).stdout
        assert expected in out, (env, flags, out)
    dry = status(venv.python, env={"PYTHON_POPCONTEST_DRY_RUN": "1"}).stdout
    assert "ACTIVE" in dry and "dry run writes the lines to stderr" in dry


def test_status_in_an_interpreter_without_popcon_site(tmp_path):
    env = clean_environ()
    env["PYTHONPATH"] = str(REPO)
    done = subprocess.run([sys.executable, "-m", "popcon_site", "status"], capture_output=True, text=True,
                          env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "INACTIVE: not installed in this environment" in done.stdout


def test_index_writes_the_environment_cache_and_status_sees_it(scratch_venv):
    before = status(scratch_venv.python).stdout
    popcon = scratch_venv.root / "bin" / "popcon-site"
    env = clean_environ()
    done = subprocess.run([str(popcon), "index"], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    cache = Path(done.stdout.split(" into ")[1].strip())
    assert cache.is_file() and str(scratch_venv.root) in str(cache)
    after = status(scratch_venv.python).stdout
    line = [entry for entry in after.splitlines() if entry.strip().startswith("environment")][0]
    assert line.endswith(": fresh"), after
    assert before != after


def test_mapping_and_version_from_the_installed_command(venv):
    popcon = venv.root / "bin" / "popcon-site"
    done = subprocess.run([str(popcon), "mapping"], capture_output=True, text=True, env=clean_environ())
    assert done.returncode == 0 and done.stdout == mapping_yaml()
    done = subprocess.run([str(popcon), "--version"], capture_output=True, text=True, env=clean_environ())
    assert done.returncode == 0 and done.stdout.startswith("popcon-site ")


def test_collect_without_the_collector_extra_says_what_to_install(venv, tmp_path):
    done = subprocess.run([str(venv.root / "bin" / "popcon-site"), "collect", "--db", str(tmp_path / "db"),
                           "--udp", "127.0.0.1:0", "--http", "127.0.0.1:0"],
                          capture_output=True, text=True, env=clean_environ())
    assert done.returncode == 1, done
    assert "Traceback" not in done.stderr and "popcon-site[collector]" in done.stderr


def test_status_wording_and_its_directory_count_agree_with_index(scratch_venv):
    import re
    out = status(scratch_venv.python).stdout
    line = [entry for entry in out.splitlines() if entry.startswith("status:")][0]
    # Not "ACTIVE: active (...)".
    assert re.match(r"status: +ACTIVE: reports at exit \(.*popcon_site\.pth\)$", line), line
    counted = int(re.search(r"^index: +(\d+) directories$", out, re.M).group(1))
    done = subprocess.run([str(scratch_venv.root / "bin" / "popcon-site"), "index"], capture_output=True, text=True,
                          env=clean_environ())
    assert done.returncode == 0, done.stderr
    indexed = int(re.match(r"indexed (\d+) directories", done.stdout).group(1))
    # sys.path names a pythonXY.zip that does not exist: neither counts it.
    assert counted == indexed, (out, done.stdout)


def test_collector_extra_from_the_wheel_collects_and_reports(newest_interp, tmp_path, core_wheel, synthetic_wheels):
    # What an admin does: install popcon-site[collector] from the wheel (its
    # dependencies come from the package index), run the installed command,
    # and read the report that real processes of the environment produced.
    env_dir = tmp_path / "collector-env"
    venv = create_venv(newest_interp, env_dir)
    venv.pip("install", "--quiet", f"{core_wheel}[collector]", str(synthetic_wheels[d.ACME.canonical]))
    cli = env_dir / "bin" / "popcon-site"
    db = tmp_path / "counts.sqlite3"
    collect = subprocess.Popen([cli, "collect", "--udp", "127.0.0.1:0", "--http", "127.0.0.1:0", "--db", db],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
                               env=clean_environ())
    try:
        start_line = collect.stdout.readline()
        match = re.search(r"udp 127\.0\.0\.1:(\d+) and http://127\.0\.0\.1:(\d+)/metrics", start_line)
        assert match, start_line + collect.stderr.read()
        env = {"PYTHON_POPCONTEST_STATSD_HOST": "127.0.0.1", "PYTHON_POPCONTEST_STATSD_PORT": match.group(1)}
        for _ in range(2):
            ran = run_python(venv.python, ["-c", "import acme_widgets"], listener=None, prefix=None, env=env)
            assert (ran.rc, ran.stdout, ran.stderr) == (0, "", ""), ran

        def counted():
            with urllib.request.urlopen(f"http://127.0.0.1:{match.group(2)}/metrics", timeout=10) as response:
                return "python_popcon_reports_total 2.0" in response.read().decode()

        wait_until(counted, "the two reports", deadline=30)
        collect.send_signal(signal.SIGTERM)
        assert collect.wait(timeout=30) == 0, collect.stderr.read()
    finally:
        if collect.poll() is None:
            collect.kill()
            collect.wait()
    done = subprocess.run([cli, "report", "--db", db, "--json"], capture_output=True, text=True, env=clean_environ(),
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"processes": 2, "libraries": {d.ACME.canonical: 2}}


def test_report_unused_defaults_to_the_interpreter_running_it(venv, start):
    # The installed command, run by the environment's own python, lists that
    # environment; a store is all it needs, not the collector extra.
    collector = start()
    collector.send(f"{collector.prefix}.acme-widgets-pro:2|c\n{collector.denominator}:1|c".encode())
    collector.fence()
    assert collector.stop() == (0, "")
    result = run_python(venv.python, ["-m", "popcon_site", "report", "--db", str(collector.db), "--unused", "--json"],
                        listener=None, prefix=None)
    assert result.rc == 0, result
    doc = json.loads(result.stdout)
    assert doc["processes"] == 2 and doc["libraries"] == {"acme-widgets-pro": 2}
    assert {"acmens-alpha", "acmens-beta", "earlylib", "pip"} <= set(doc["unused"]), doc
    assert not {"acme-widgets-pro", "popcon-site"} & set(doc["unused"]), doc
