"""Where the exit path's cost goes, step by step (for optimising the core).

Replays what the exit handler (``popcon_site._at_exit``) and
``popcon_site.reporter.report_at_exit`` do in a process that imported the 20
synthetic libraries, stopping after step k, for k = 0..N. The difference
between successive callgrind counts is the instruction cost of step k,
finalisation included; wall microseconds come from perf_counter_ns inside the
full process (median over several processes).

    python bench/exit_profile.py [--workdir DIR] [--runs N]

Needs the venvs that ``bench/run.py --rows exit`` leaves in the work dir.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness  # noqa: E402
import synthetic  # noqa: E402

STEPS = [
    ("import popcon_site.reporter (+ wire)", "from popcon_site import reporter, wire"),
    # The handler itself, up to the report: reporter.report_at_exit is
    # replaced by one that keeps the candidates.
    ("exit handler: the candidates", "_r = reporter.report_at_exit; _c = []; "
     "reporter.report_at_exit = lambda c, *a: _c.append(c); _p._at_exit(); "
     "reporter.report_at_exit = _r; cands = _c[0]"),
    ("wire.opted_out + nonzero_rank", "wire.opted_out(os.environ); wire.nonzero_rank(os.environ)"),
    ("the program's own directories", "local = reporter._local_directories(_p._script_entry); "
     "sp = reporter._search_path(_p._search_path, local)"),
    ("wire.read_settings", "s = wire.read_settings(os.environ)"),
    ("reporter.search_dirs", "dirs = reporter.search_dirs(sp, False, reporter.debug)"),
    ("reporter.load (warm)", "idx = reporter.load(dirs, reporter.debug)"),
    ("Index.libraries + shadow checks", "libs = idx.libraries(cands, "
     "lambda m, d: not reporter._shadowed(m, d, sp, local)); libs.pop('popcon-site', None)"),
    ("wire.report_lines + pack", "dg = wire.pack_datagrams(wire.report_lines(s[2], libs, False))"),
    ("import _socket", "import _socket"),
    ("wire.send_datagrams", "wire.send_datagrams(s[0], s[1], dg)"),
]


def script(timed: bool, plain: bool = False) -> str:
    """The same source for every k (sys.argv[1]), so compiling it costs the same;
    ``plain`` swaps the two popcon-site lines for stand-ins, for the plain venv."""
    names = ", ".join(synthetic.library_names(20))
    lines = [f"import {names}", "import os, sys, time, atexit",
             "_p = None" if plain else "import popcon_site as _p",
             # the real handler must not report a second time
             "atexit.unregister(print)" if plain else "atexit.unregister(_p._at_exit)", "_t = [time.perf_counter_ns()]", "_k = int(sys.argv[1])"]
    for k, (_, code) in enumerate(STEPS):
        lines.append(f"if _k > {k}:")
        lines.append(f"    {code}")
        if timed:
            lines.append("    _t.append(time.perf_counter_ns())")
    if timed:
        lines.append("print(' '.join(str(b - a) for a, b in zip(_t, _t[1:])))")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=harness.ROOT / ".cache" / "bench")
    parser.add_argument("--target", default="3.11")
    parser.add_argument("--runs", type=int, default=21)
    args = parser.parse_args()
    venvs = sorted((args.workdir / "venvs").glob(f"py{args.target}.*-libs-popcon"))
    if not venvs:
        parser.error("run `bench/run.py --rows exit` first")
    python = str(harness.venv_python(venvs[0]))
    listener = harness.Listener()
    home = args.workdir / "home"
    env = harness.measured_env(listener, home)
    harness.run([python, "-c", script(False), str(len(STEPS))], env=env)  # warms the index cache
    counts = [harness.instructions(harness.Config(f"upto {k}", [python, "-c", script(False), str(k)], env))
              for k in range(len(STEPS) + 1)]
    plain_venvs = sorted((args.workdir / "venvs").glob(f"py{args.target}.*-libs-plain"))
    plain = None
    if plain_venvs:
        plain = harness.instructions(harness.Config(
            "plain", [str(harness.venv_python(plain_venvs[0])), "-c", script(False, plain=True), "0"], env))
    walls = []
    for _ in range(args.runs):
        out = harness.run([python, "-c", script(True), str(len(STEPS))], env=env).stdout.split()
        walls.append([int(x) for x in out])
    listener.close()
    print(f"exit path of a 20-library process, {venvs[0].name}; instructions include finalisation")
    print(f"{'step':38} {'+instr':>9} {'wall us':>8}")
    if plain is not None:
        print(f"{'start-up hook, baseline, fork hook':38} {(counts[0] - plain) / 1e6:+8.3f}M {'':>8}  "
              "(vs the plain venv, exit handler unregistered)")
    for k, (name, _) in enumerate(STEPS):
        us = statistics.median(w[k] for w in walls) / 1e3
        print(f"{name:38} {(counts[k + 1] - counts[k]) / 1e6:+8.3f}M {us:8.1f}")
    total_us = statistics.median(sum(w) for w in walls) / 1e3
    print(f"{'total of the steps':38} {(counts[-1] - counts[0]) / 1e6:+8.3f}M {total_us:8.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
