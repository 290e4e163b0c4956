"""Where the exit path's cost goes, step by step (for optimising the core).

Replays what ``_bootstrap._report_at_exit`` does in a process that imported
the 20 synthetic libraries, stopping after step k, for k = 0..N. The
difference between successive callgrind counts is the instruction cost of
step k, finalisation included; wall microseconds come from perf_counter_ns
inside the full process (median over several processes).

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
    ("import popcon_site.config", "from popcon_site import config"),
    ("import popcon_site.wire", "from popcon_site import wire"),
    ("import popcon_site.index", "from popcon_site import index"),
    ("import popcon_site.reporter", "from popcon_site import reporter"),
    ("candidates (bootstrap filter)", "cands = _b._third_party_candidates(sys.modules.copy())"),
    ("config.settings_from_environ", "s = config.settings_from_environ(os.environ)"),
    ("index.search_dirs", "dirs = index.search_dirs(_b._search_path, s.include_user, None)"),
    ("index.load (warm)", "idx = index.load(dirs)"),
    ("Index.libraries", "libs = idx.libraries(cands); libs.pop('popcon-site', None)"),
    ("wire.report_lines + pack", "dg = wire.pack_datagrams(wire.report_lines(s.prefix, libs, s.versions))"),
    ("wire.send_datagrams", "wire.send_datagrams(s.host, s.port, dg)"),
]


def script(upto: int, timed: bool) -> str:
    names = ", ".join(synthetic.library_names(20))
    lines = [f"import {names}", "import os, sys, time, atexit", "import popcon_site._bootstrap as _b",
             # the real handler must not report a second time
             "atexit.unregister(_b._report_at_exit)", "_t = []"]
    for _, code in STEPS[:upto]:
        lines.append("_t.append(time.perf_counter_ns())" if timed else "")
        lines.append(code)
    if timed:
        lines.append("_t.append(time.perf_counter_ns())")
        lines.append("print(' '.join(str(b - a) for a, b in zip(_t, _t[1:])))")
    return "\n".join(line for line in lines if line)


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
    harness.run([python, "-c", script(len(STEPS), False)], env=env)  # warms the index cache
    counts = [harness.instructions(harness.Config(f"upto {k}", [python, "-c", script(k, False)], env))
              for k in range(len(STEPS) + 1)]
    walls = []
    for _ in range(args.runs):
        out = harness.run([python, "-c", script(len(STEPS), True)], env=env).stdout.split()
        walls.append([int(x) for x in out])
    listener.close()
    print(f"exit path of a 20-library process, {venvs[0].name}; instructions include finalisation")
    print(f"{'step':34} {'+instr':>9} {'wall us':>8}")
    for k, (name, _) in enumerate(STEPS):
        us = statistics.median(w[k] for w in walls) / 1e3
        print(f"{name:34} {(counts[k + 1] - counts[k]) / 1e6:+8.3f}M {us:8.1f}")
    total_us = statistics.median(sum(w) for w in walls) / 1e3
    print(f"{'total':34} {(counts[-1] - counts[0]) / 1e6:+8.3f}M {total_us:8.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
