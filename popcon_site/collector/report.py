"""``popcon-site report``: counts as a table or JSON, and the unused list.

"Unused" means installed in an interpreter's environment and never counted.
Distributions that provide no importable module (command-line tools, type
stubs, metapackages) are listed apart: nothing can import them, so "never
imported" says nothing about whether they are needed.

With ``--min-count K`` the unused list is every installed distribution the
table does not show: never counted and counted fewer than K times alike.
Listing only the never-counted ones would name the hidden ones, as the
installed ones neither shown nor listed; this way the list says nothing that
the table and the list of installed distributions do not already say.
"""

import json
import os
import subprocess

__all__ = ["UnusedError", "environment_distributions", "render_json", "render_table", "unused"]

# The target interpreter prints where it looks for distributions.  It runs
# with the opt-out set, so asking it does not count as a report.
_PROBE = (
    "import json, site, sys; "
    "print(json.dumps({'path': sys.path, 'prefix': sys.prefix, 'version': sys.version.split()[0], "
    "'user_site': site.USER_SITE if site.ENABLE_USER_SITE else None}))"
)


class UnusedError(Exception):
    """The target interpreter cannot be asked for its environment."""


def _interpreter_paths(python):
    env = dict(os.environ, PYTHON_POPCONTEST_DISABLE="1")
    try:
        done = subprocess.run(
            [python, "-c", _PROBE],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise UnusedError("cannot run %s: %s" % (python, getattr(exc, "strerror", None) or exc)) from None
    if done.returncode != 0:
        last = done.stderr.strip().splitlines()[-1:]
        raise UnusedError("%s -c ... failed: %s" % (python, last[0] if last else "exit code %d" % done.returncode))
    try:
        return json.loads(done.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise UnusedError("%s did not print its sys.path" % (python,)) from None


def environment_distributions(python):
    """The distributions installed for an interpreter, first on its sys.path
    winning, without the user site-packages (whose installs are not counted
    either).  Returns ``(description, [Distribution])``."""
    from popcon_site.index import distributions

    info = _interpreter_paths(python)
    user_site = info.get("user_site")
    seen = {}
    for entry in info.get("path", []):
        if not entry or not os.path.isdir(entry):
            continue
        if user_site and os.path.abspath(entry) == os.path.abspath(user_site):
            continue
        for dist in distributions(entry):
            seen.setdefault(dist.name, dist)
    # popcon-site never reports itself, so it would always look unused.
    seen.pop("popcon-site", None)
    description = "%s (Python %s, environment %s)" % (python, info.get("version", "?"), info.get("prefix", "?"))
    return description, sorted(seen.values(), key=lambda d: d.name)


def unused(counts, python, min_count=0):
    """``(description, unused, without_modules)``: installed distributions never
    counted, split by whether they provide an importable module.  With a
    ``min_count`` above 0, those counted fewer than ``min_count`` times too:
    the report hides their counts, and must not tell them apart from the
    never counted."""
    description, dists = environment_distributions(python)
    counted = set(_visible(counts, min_count)[0]) if min_count else set(counts.libraries)
    importable = [d for d in dists if d.roots and d.name not in counted]
    no_module = [d for d in dists if not d.roots and d.name not in counted]
    return description, importable, no_module


def _number(value):
    return "%d" % value if float(value).is_integer() else "%.2f" % value


def _share(count, processes):
    return "%.1f%%" % (100.0 * count / processes) if processes else "-"


def _visible(counts, min_count):
    shown = {lib: n for lib, n in counts.libraries.items() if n >= min_count}
    return shown, len(counts.libraries) - len(shown)


def _visible_versions(counts, shown, min_count):
    """The version split of each shown library, without versions counted fewer
    than ``min_count`` times (a version only one person runs identifies them
    as surely as a rare library does), and how many were left out."""
    split = {lib: {v: n for v, n in counts.versions[lib].items() if n >= min_count} for lib in shown}
    hidden = sum(len(counts.versions[lib]) - len(split[lib]) for lib in shown)
    return split, hidden


def _order(libraries):
    return sorted(libraries.items(), key=lambda item: (-item[1], item[0]))


def render_json(counts, min_count=0, versions=False, unused_result=None):
    shown, hidden = _visible(counts, min_count)
    doc = {"processes": _json_number(counts.processes), "libraries": {lib: _json_number(n) for lib, n in _order(shown)}}
    if min_count:
        doc["hidden"] = hidden
    if versions:
        split, hidden_versions = _visible_versions(counts, shown, min_count)
        doc["versions"] = {
            lib: {version: _json_number(n) for version, n in sorted(split[lib].items())} for lib, _ in _order(shown)
        }
        if min_count:
            doc["hidden_versions"] = hidden_versions
    if unused_result is not None:
        _, importable, no_module = unused_result
        if min_count:
            # "unused" then also holds the installed libraries counted fewer
            # than K times, indistinguishably from the never counted.
            doc["unused_below"] = min_count
        doc["unused"] = [d.name for d in importable]
        doc["unused_without_modules"] = [d.name for d in no_module]
    return json.dumps(doc, indent=2) + "\n"


def _json_number(value):
    return int(value) if float(value).is_integer() else value


def render_table(counts, min_count=0, versions=False, unused_result=None):
    shown, hidden = _visible(counts, min_count)
    out = ["%s reporting processes, from %s" % (_number(counts.processes), counts.source)]
    rows = []
    split, hidden_versions = _visible_versions(counts, shown, min_count) if versions else ({}, 0)
    for library, count in _order(shown):
        if versions:
            for version, n in sorted(split[library].items(), key=lambda item: (-item[1], item[0])):
                rows.append((library, version or "(no version)", _number(n), _share(n, counts.processes)))
        else:
            rows.append((library, _number(count), _share(count, counts.processes)))
    header = ("library", "version", "processes", "share") if versions else ("library", "processes", "share")
    if rows:
        widths = [max(len(str(row[i])) for row in rows + [header]) for i in range(len(header))]
        numeric = {len(header) - 2, len(header) - 1}

        def line(row):
            cells = [str(cell).rjust(w) if i in numeric else str(cell).ljust(w) for i, (cell, w) in enumerate(zip(row, widths))]
            return "  ".join(cells).rstrip()

        out.append("")
        out.append(line(header))
        out.extend(line(row) for row in rows)
    else:
        out.append("no library counted yet")
    if min_count:
        out.append("")
        out.append("%d %s counted fewer than %d times not shown (--min-count %d)" % (
            hidden, "library" if hidden == 1 else "libraries", min_count, min_count))
        if versions:
            out.append("%d %s counted fewer than %d times not shown" % (
                hidden_versions, "version" if hidden_versions == 1 else "versions", min_count))
    if unused_result is not None:
        description, importable, no_module = unused_result
        out.append("")
        if min_count:
            # Hidden libraries are listed with the never counted, so that the
            # installed ones neither shown nor listed name none of them.
            out.append("Installed for %s and counted fewer than %d times or never: %d"
                       % (description, min_count, len(importable)))
        else:
            out.append("Installed for %s and never counted: %d" % (description, len(importable)))
        out.extend("  %s %s" % (d.name, d.version or "") for d in importable)
        out.append("")
        out.append("Installed without an importable module (tools, stubs; never imported by design): %d" % len(no_module))
        out.extend("  %s %s" % (d.name, d.version or "") for d in no_module)
    return "\n".join(out) + "\n"
