"""popcon-site benchmarks: ``make bench`` (or ``python bench/run.py``).

Prints one table. Each measured configuration stands beside the comparison
it was measured against in the same run, with its target and PASS/MISS.
Instruction counts come from ``valgrind --tool=callgrind``; wall times are
medians of interleaved runs. Logs go to stderr, the table to stdout.

    python bench/run.py                    # every row, full repeat counts
    python bench/run.py --quick            # fewer repeats, a minute or two
    python bench/run.py --rows startup,exit --python 3.11
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness  # noqa: E402
import rows  # noqa: E402
from harness import Skip, log  # noqa: E402

ROWS = {
    "startup": rows.startup,
    "exit": rows.exit_row,
    "index": rows.index_rows,
    "readonly": rows.readonly_row,
    "collector": rows.collector_row,
}
COLUMNS = [("row", "row"), ("config", "configuration"), ("instr", "instr"), ("d_instr", "+instr"),
           ("x_instr", "x instr"), ("wall", "wall median"), ("d_wall", "+wall"), ("x_wall", "x wall"),
           ("target", "target"), ("result", "result")]


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} CPUs, {cpu}, {platform.system()} {platform.release()}"


def source_revision(source: Path) -> str:
    """The commit the wheel was built from, with "+changes" for a dirty tree."""
    try:
        rev = subprocess.run(["git", "-C", str(source), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(source), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown revision"
    return f"commit {rev}{'+changes' if dirty else ''}"


def format_table(lines: list[rows.Line]) -> str:
    cells = [[title for _, title in COLUMNS]]
    cells += [[getattr(line, key) for key, _ in COLUMNS] for line in lines]
    widths = [max(len(row[i]) for row in cells) for i in range(len(COLUMNS))]
    numeric = {"instr", "d_instr", "x_instr", "wall", "d_wall", "x_wall"}
    out = []
    previous = None
    for n, row in enumerate(cells):
        if n == 1 or (n > 1 and row[0] != previous):
            out.append("  ".join("-" * w for w in widths))
        previous = row[0]
        shown = list(row)
        if n > 1 and row[0] == cells[n - 1][0]:
            shown[0] = ""
        out.append("  ".join(cell.rjust(w) if key in numeric else cell.ljust(w)
                             for (key, _), cell, w in zip(COLUMNS, shown, widths)).rstrip())
    return "\n".join(out)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer repeats (noisier wall times)")
    parser.add_argument("--rows", default=",".join(ROWS),
                        help=f"comma-separated subset of: {', '.join(ROWS)} (default: all)")
    parser.add_argument("--python", default=",".join(harness.VERSIONS),
                        help="Python versions for the start-up row (default: every installed 3.10-3.13)")
    parser.add_argument("--target", default="3.11",
                        help="Python version for the other rows; the targets are set for 3.11 (default)")
    parser.add_argument("--workdir", type=Path, default=harness.ROOT / ".cache" / "bench",
                        help="venvs, synthetic trees and results are kept here between runs")
    parser.add_argument("--source", type=Path, default=harness.ROOT,
                        help="the popcon-site source tree to build the wheel from (default: this checkout)")
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    parser.add_argument("--readonly-child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.readonly_child:
        print(json.dumps(rows.readonly_child(json.loads(args.readonly_child))))
        return 0

    selected = [r.strip() for r in args.rows.split(",") if r.strip()]
    unknown = [r for r in selected if r not in ROWS]
    if unknown:
        parser.error(f"unknown rows {unknown}; choose from {list(ROWS)}")
    if not harness.have_valgrind():
        parser.error("valgrind is needed for instruction counts (Debian/Ubuntu: apt-get install valgrind)")

    found = harness.discover_interpreters()
    if not found:
        parser.error("no Python 3.10-3.13 interpreter found via `pyenv root` or PATH")
    wanted = {v.strip() for v in args.python.split(",")}
    interpreters = [i for i in found if i.version in wanted]
    target = next((i for i in found if i.version == args.target), None)
    if target is None:
        target = found[-1]
        log(f"no Python {args.target}; using {target.full_version} for the non-start-up rows")
    log("interpreters: " + ", ".join(f"{i.full_version} ({i.executable})" for i in found))

    work = args.workdir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    log("building the popcon-site wheel from the checkout")
    wheel = harness.build_wheel(target, work / "wheel", args.source)
    home = work / "home"
    home.mkdir(exist_ok=True)
    listener = harness.Listener()
    ctx = rows.Context(work=work, wheel=wheel, wheel_key=harness.file_digest(wheel), quick=args.quick,
                       target=target, interpreters=interpreters, home=home, listener=listener)

    started = time.monotonic()
    lines: list[rows.Line] = []
    notes: list[str] = []
    failed = False
    for name in selected:
        try:
            lines += ROWS[name](ctx)
        except Skip as why:
            notes.append(f"{name}: skipped: {why}")
            log(notes[-1])
        except Exception:  # a broken row must not hide the others
            failed = True
            notes.append(f"{name}: FAILED, see the log above")
            log(f"{name} failed:\n{traceback.format_exc()}")
    listener.close()

    print(f"popcon-site benchmarks: {wheel.name} ({source_revision(args.source)}); {machine()}; "
          f"{'quick' if args.quick else 'full'} run of {time.monotonic() - started:.0f} s")
    print("instr: valgrind --tool=callgrind instructions of the whole process (median of "
          f"{ctx.instr_repeat}); wall: median of interleaved runs; + and x: against the first line of each row")
    print(format_table(lines))
    for note in notes:
        print(note)
    results = {"wheel": wheel.name, "machine": machine(), "quick": args.quick,
               "lines": [line.__dict__ for line in lines], "notes": notes}
    (work / "results.json").write_text(json.dumps(results, indent=1))
    (work / "table.txt").write_text(format_table(lines) + "\n" + "\n".join(notes) + "\n")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
