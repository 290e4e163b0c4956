"""`make demo`: popcon-site end to end, on real processes, in a throwaway venv.

1. creates the environment to be counted, a venv with this checkout's
   popcon-site and a handful of small libraries from PyPI, and a venv of its
   own for the collector, popcon-site[collector];
2. starts `popcon-site collect` on free loopback ports with a temporary store;
3. runs a realistic mix of Python processes in that venv: scripts, `-m`, a
   subprocess, a multiprocessing pool, one that imports nothing and one that
   opted out;
4. stops the collector with SIGTERM (it flushes and exits 0);
5. prints `popcon-site report --unused` for the counted environment.

Usage: python demo/run.py [--keep]   (--keep leaves the temporary directory)
"""

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import venv
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# Small, pure-Python, widely used.  types-six provides no importable module
# (stubs only), so it shows up apart in the unused list.
LIBRARIES = ["attrs", "six", "idna", "python-dateutil", "PyYAML", "tabulate", "colorama", "types-six"]

ANALYSE = """
import subprocess, sys
import yaml
from dateutil import parser

config = yaml.safe_load("when: 2026-12-03T18:00:00")
print("parsed", parser.isoparse(str(config["when"])).year)
# A subprocess is a process of its own, and reports for itself.
subprocess.run([sys.executable, "-c", "import idna; print(idna.encode('bücher.example'))"], check=True)
"""

POOL = """
import multiprocessing
import attr


def work(n):
    import six
    return six.text_type(n * n)


if __name__ == "__main__":
    # Spawned workers are full interpreters and report for themselves once
    # they exit normally (close + join; terminate() would kill them first).
    pool = multiprocessing.get_context("spawn").Pool(2)
    print("squares", pool.map(work, range(6)))
    pool.close()
    pool.join()
"""

LOCAL_TOOL = """
# A local module: never reported itself; what it imports from the venv is.
import attr


@attr.s
class Point:
    x = attr.ib()


print("local tool", Point(1))
"""


# The temporary directory, printed once in full and then as $DEMO.
_WORK = None


def shown(text):
    return text.replace(_WORK, "$DEMO") if _WORK else text


def step(text):
    print("==> " + shown(text), flush=True)


def run(cmd, env, cwd, quiet=False):
    command_text = " ".join(str(part) for part in cmd)
    done = subprocess.run([str(part) for part in cmd], env=env, cwd=cwd, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        sys.stderr.write(done.stdout + done.stderr)
        raise SystemExit("demo: %s failed with exit code %d" % (command_text, done.returncode))
    if not quiet:
        for line in done.stdout.splitlines():
            print("    | " + shown(line))
    return done.stdout


def clean_environ():
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON_POPCONTEST_")}
    env.pop("VIRTUAL_ENV", None)
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env["PIP_NO_INPUT"] = "1"
    return env


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args()

    global _WORK
    work = Path(tempfile.mkdtemp(prefix="popcon-demo-"))
    print("working in %s, shown below as $DEMO" % work)
    _WORK = str(work)
    collector = None
    try:
        base_env = clean_environ()
        setup_env = dict(base_env, PYTHON_POPCONTEST_DISABLE="1")
        env_dir = work / "env"
        step("creating the environment to be counted, a throwaway venv in %s" % env_dir)
        venv.EnvBuilder(with_pip=True).create(env_dir)
        python = env_dir / "bin" / "python"
        step("pip install . %s" % " ".join(LIBRARIES))
        run([python, "-m", "pip", "install", "--quiet", str(REPO), *LIBRARIES], setup_env, work, quiet=True)
        step("popcon-site index  (the admin warms the module index once)")
        run([env_dir / "bin" / "popcon-site", "index"], setup_env, work)

        collector_dir = work / "collector"
        step("creating the collector's own venv in %s: pip install '.[collector]'" % collector_dir)
        venv.EnvBuilder(with_pip=True).create(collector_dir)
        run([collector_dir / "bin" / "python", "-m", "pip", "install", "--quiet", "%s[collector]" % REPO], setup_env,
            work, quiet=True)
        bin_dir = collector_dir / "bin"

        step("starting the collector on free loopback ports")
        db = work / "counts.sqlite3"
        collector = subprocess.Popen(
            [str(bin_dir / "popcon-site"), "collect", "--udp", "127.0.0.1:0", "--http", "127.0.0.1:0",
             "--db", str(db)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, env=base_env,
        )
        start_line = collector.stdout.readline()
        print("    | " + shown(start_line.rstrip()))
        match = re.search(r"udp 127\.0\.0\.1:(\d+)", start_line)
        if not match:
            collector.wait()
            raise SystemExit("demo: the collector did not start: %s" % collector.stderr.read())

        env = dict(base_env, PYTHON_POPCONTEST_STATSD_HOST="127.0.0.1", PYTHON_POPCONTEST_STATSD_PORT=match.group(1))
        project = work / "project"
        project.mkdir()
        (project / "analyse.py").write_text(textwrap.dedent(ANALYSE))
        (project / "pool_job.py").write_text(textwrap.dedent(POOL))
        (project / "localtool.py").write_text(textwrap.dedent(LOCAL_TOOL))

        jobs = [
            ("a script, 3 times (yaml, dateutil; its subprocess uses idna)", [python, "analyse.py"], 3, {}),
            ("python -m localtool (a local module using attrs)", [python, "-m", "localtool"], 1, {}),
            ("python -m pip --version", [python, "-m", "pip", "--version"], 1, {}),
            ("a spawn multiprocessing pool (workers import six)", [python, "pool_job.py"], 1, {}),
            ("python -c pass (imports nothing: sends nothing)", [python, "-c", "pass"], 1, {}),
            ("a process that opted out, importing tabulate", [python, "-c", "import tabulate"], 1,
             {"PYTHON_POPCONTEST_DISABLE": "1"}),
        ]
        for title, cmd, times, extra in jobs:
            step("running %s" % title)
            for _ in range(times):
                run(cmd, dict(env, **extra), project)

        step("stopping the collector (SIGTERM: it drains, flushes and exits 0)")
        collector.send_signal(signal.SIGTERM)
        rc = collector.wait(timeout=60)
        errors = collector.stderr.read()
        collector = None
        print("    | exit code %d%s" % (rc, (": " + errors.strip()) if errors.strip() else ""))
        if rc != 0:
            raise SystemExit("demo: the collector did not stop cleanly")

        step("popcon-site report --db %s --unused --python env/bin/python" % db.name)
        print()
        report = run([bin_dir / "popcon-site", "report", "--db", db, "--unused", "--python", python], setup_env, work,
                     quiet=True)
        sys.stdout.write(shown(report))
    finally:
        if collector is not None and collector.poll() is None:
            collector.kill()
            collector.wait()
        if args.keep:
            print("kept %s" % work)
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
