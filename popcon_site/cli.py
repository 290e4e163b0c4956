"""The ``popcon-site`` command: collect, report, status, index, mapping.

Each subcommand imports what it needs when it runs, so ``status`` and
``index`` work in an environment without the ``collector`` extra.
"""

import argparse
import os
import signal
import sys

from popcon_site import __version__, config

__all__ = ["main"]

PROG = "popcon-site"
EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2


class CommandError(Exception):
    """A problem the user can fix, reported as one line without a traceback."""


class OutputError(CommandError):
    """Standard output is closed or cannot be written (a full disk, /dev/full)."""


def _write_out(text):
    """Write to standard output and flush, so that a failed write is one
    clear error here rather than a traceback (or an "Exception ignored"
    message when the interpreter flushes at exit)."""
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        raise
    except OSError as exc:
        raise OutputError("cannot write to standard output: %s" % (exc.strerror or exc)) from None


def _discard_stdout():
    """Point fd 1 at /dev/null, so that whatever is still buffered for it
    does not fail again when the interpreter flushes at exit."""
    try:
        fd = os.open(os.devnull, os.O_WRONLY)
    except OSError:
        return
    try:
        os.dup2(fd, 1)
    except OSError:
        pass
    finally:
        os.close(fd)


def _say(line):
    """One line on stderr, if there is a stderr to write to."""
    try:
        sys.stderr.write(line + "\n")
        sys.stderr.flush()
    except (AttributeError, OSError, ValueError):
        pass


def _closed_standard_fds():
    """Open /dev/null on standard descriptors the caller closed (`>&-`), so
    that no file or socket this process opens lands on fd 1 or 2 and gets
    written to as if it were a terminal.  Returns the closed ones."""
    closed = []
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            closed.append(fd)
    for fd in closed:
        try:
            null = os.open(os.devnull, os.O_RDWR)
        except OSError:
            break
        if null != fd:
            os.dup2(null, fd)
            os.close(null)
    if 2 in closed or sys.stderr is None:
        try:
            sys.stderr = open(2, "w", closefd=False)
        except OSError:
            pass
    return closed


def default_db():
    """The store file used when --db is not given: under the user's data directory."""
    try:
        from platformdirs import user_data_dir

        base = user_data_dir("popcon-site", appauthor=False)
    except ImportError:
        data_home = os.environ.get("XDG_DATA_HOME", "")
        if not os.path.isabs(data_home):
            data_home = os.path.join(os.path.expanduser("~"), ".local", "share")
        base = os.path.join(data_home, "popcon-site")
    return os.path.join(base, "counts.sqlite3")


def _need_collector_extra(exc):
    return CommandError(
        "%s is not installed; install popcon-site[collector] for this command" % (exc.name or "a dependency")
    )


# --- collect -----------------------------------------------------------------


class _StopRequest:
    """Set by SIGTERM, SIGINT or SIGHUP: the collector drains, writes its
    counts and exits 0.  Installed before anything else of collect runs, so
    that a signal at any moment of the start-up is a clean stop too."""

    SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGINT", "SIGHUP") if hasattr(signal, name))

    def __init__(self):
        self.requested = False

    def __call__(self, signum, frame):
        self.requested = True

    def install(self):
        self._previous = {signum: signal.signal(signum, self) for signum in self.SIGNALS}

    def uninstall(self):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


def cmd_collect(args, stop):
    try:
        from popcon_site.collector import server
        from popcon_site.collector.store import StoreError
    except ImportError as exc:
        raise _need_collector_extra(exc) from None
    try:
        udp = server.parse_address(args.udp, "--udp")
        http = server.parse_address(args.http, "--http")
    except server.CollectorError as exc:
        raise CommandError(str(exc)) from None
    try:
        server.run(udp, http, args.db, args.prefix, args.max_series, args.flush_interval, out=sys.stdout,
                   stop=stop)
    except ImportError as exc:
        raise _need_collector_extra(exc) from None
    except (server.CollectorError, StoreError) as exc:
        raise CommandError(str(exc)) from None
    return EXIT_OK


# --- report ------------------------------------------------------------------


def cmd_report(args):
    from popcon_site.collector import report, sources

    try:
        if args.prometheus:
            window = sources.check_range(args.range) if args.range else None
            matchers = sources.check_matchers(args.match) if args.match else ""
            counts = sources.counts_from_prometheus(args.prometheus, window, matchers)
        else:
            counts = sources.counts_from_db(args.db or default_db(), args.prefix)
        unused_result = report.unused(counts, args.python, args.min_count) if args.unused else None
    except (sources.SourceError, report.UnusedError, ValueError) as exc:
        raise CommandError(str(exc)) from None
    render = report.render_json if args.json else report.render_table
    _write_out(render(counts, args.min_count, args.versions, unused_result))
    return EXIT_OK


# --- status ------------------------------------------------------------------


def _site_dirs():
    import site

    dirs = []
    try:
        dirs.extend(site.getsitepackages())
    except AttributeError:
        pass
    if site.ENABLE_USER_SITE and site.USER_SITE:
        dirs.append(site.USER_SITE)
    return [d for d in dirs if d]


def _installed_pth():
    for directory in _site_dirs():
        path = os.path.join(directory, "popcon_site.pth")
        if os.path.isfile(path):
            return path
    return None


def activity(environ, flags=sys.flags):
    """``(active, reason)`` for an interpreter started like this one."""
    if flags.no_site:
        return False, "site is disabled (-S), so no .pth file runs"
    pth = _installed_pth()
    if pth is None:
        return False, "not installed in this environment: no popcon_site.pth in %s" % (
            ", ".join(_site_dirs()) or "any site-packages directory")
    if config.opted_out(environ):
        return False, "opted out: PYTHON_POPCONTEST_DISABLE=%r" % environ.get("PYTHON_POPCONTEST_DISABLE")
    rank = config.nonzero_rank(environ)
    if rank is not None:
        return False, "%s=%r is not rank 0; only rank 0 reports (PYTHON_POPCONTEST_ALL_RANKS=1 changes that)" % (
            rank, environ.get(rank))
    settings = config.settings_from_environ(environ)
    if settings.problems:
        return False, "installed, but sends nothing: " + "; ".join(settings.problems)
    return True, "reports at exit (%s)" % pth


def _search_path():
    # What a reporting process indexes: its sys.path without the script's
    # directory (here, the directory of the popcon-site command or the cwd).
    return sys.path[1:]


def cmd_status(args, environ):
    from popcon_site import index

    active, reason = activity(environ)
    settings = config.settings_from_environ(environ)
    out = []
    out.append("popcon-site %s for %s (Python %s)\n" % (__version__, sys.executable, sys.version.split()[0]))
    out.append("status:      %s\n" % ("ACTIVE: " + reason if active else "INACTIVE: " + reason))
    out.append("host:        %s\n" % settings.host)
    out.append("port:        %s\n" % settings.port)
    out.append("prefix:      %s (denominator %s)\n" % (settings.prefix, config.denominator_name(settings.prefix)))
    out.append("versions:    %s\n" % ("sent as a version tag" if settings.versions else "not sent"))
    out.append("user installs: %s\n" % ("counted" if settings.include_user else "not counted"))
    if settings.dry_run:
        out.append("reports go:  nowhere; dry run writes the lines to stderr\n")
    else:
        out.append("reports go:  statsd over UDP to %s:%s\n" % (settings.host, settings.port))
    if settings.debug:
        out.append("debug:       on (diagnostics on stderr)\n")
    # Only directories that exist, as `popcon-site index` counts them: sys.path
    # names a pythonXY.zip that is usually not there.
    dirs = [d for d in index.search_dirs(_search_path(), settings.include_user) if os.path.isdir(d)]
    out.append("index:       %d directories\n" % len(dirs))
    for state in index.cache_state(dirs):
        if not state["exists"]:
            desc = "absent"
        elif state["stale"]:
            desc = "%d of %d directories fresh, rebuilt at the next report" % (len(state["fresh"]), len(dirs))
        else:
            desc = "fresh"
        out.append("  %-11s %s: %s\n" % (state["kind"], state["path"], desc))
    _write_out("".join(out))
    return EXIT_OK


# --- index -------------------------------------------------------------------


def cmd_index(args):
    from popcon_site import index

    dirs = index.search_dirs(_search_path(), include_user=False)
    kind, path = next(iter(index.cache_locations()))
    table = {}
    for directory in dirs:
        try:
            mtime = os.stat(directory).st_mtime_ns
        except OSError:
            continue
        if os.path.isdir(directory):
            table[directory] = index.entry_for(directory, mtime)
    try:
        index.write_cache(kind, path, table)
    except OSError as exc:
        raise CommandError(
            "cannot write the %s index cache %s: %s; run this as the owner of the environment"
            % (kind, path, exc.strerror or exc)
        ) from None
    roots = sum(index.count_roots(entry) for entry in table.values())
    _write_out("indexed %d directories (%d modules) into %s\n" % (len(table), roots, path))
    return EXIT_OK


# --- mapping -----------------------------------------------------------------


def cmd_mapping(args):
    from popcon_site.collector.mapping import mapping_yaml

    try:
        text = mapping_yaml(args.prefix)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    _write_out(text)
    return EXIT_OK


# --- arguments -----------------------------------------------------------------


def _prefix(text):
    problem = config.prefix_problem(text)
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return text


def _path(text):
    if not text:
        raise argparse.ArgumentTypeError("the path is empty")
    return text


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError("%r is not a positive integer" % (text,))
    return value


def _count(text):
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError("%r is not a count (0 or more)" % (text,))
    return value


# Below this the loop would spend its time writing unchanged totals (1e-9
# made it spin); above it a SIGKILL could lose more than a second of counts.
MIN_FLUSH_INTERVAL = 0.05
MAX_FLUSH_INTERVAL = 1.0


def _interval(text):
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not MIN_FLUSH_INTERVAL <= value <= MAX_FLUSH_INTERVAL:
        raise argparse.ArgumentTypeError("%r is not a number of seconds from %g to %g"
                                         % (text, MIN_FLUSH_INTERVAL, MAX_FLUSH_INTERVAL))
    return value


class _HelpOutputError(Exception):
    """--help or --version could not write standard output."""

    def __init__(self, prog, error):
        super().__init__(str(error))
        self.prog = prog


# Set by main(): standard output was closed when the command started (fd 1
# is /dev/null since, so a write to it would succeed and be seen by no one).
_stdout_closed = False


class _Parser(argparse.ArgumentParser):
    """An argument parser whose --help and --version need a standard output
    they can write, as every command does: argparse writes them with errors
    ignored (and to stderr when stdout is closed), and exits 0."""

    def print_help(self, file=None):
        if file is not None and file is not sys.stdout:
            return super().print_help(file)
        self.write_stdout(self.format_help())

    def write_stdout(self, text):
        if _stdout_closed or sys.stdout is None:
            raise _HelpOutputError(self.prog, "standard output is closed; redirect it to a file or /dev/null "
                                   "instead")
        try:
            _write_out(text)
        except OutputError as exc:
            raise _HelpOutputError(self.prog, exc) from None


class _Version(argparse.Action):
    def __init__(self, option_strings, version, dest=argparse.SUPPRESS, default=argparse.SUPPRESS,
                 help="show program's version number and exit"):
        super().__init__(option_strings=option_strings, dest=dest, default=default, nargs=0, help=help)
        self.version = version

    def __call__(self, parser, namespace, values, option_string=None):
        parser.write_stdout(self.version + "\n")
        parser.exit()


def build_parser():
    parser = _Parser(
        prog=PROG,
        description="Count which installed libraries the Python processes of an environment import.",
    )
    parser.add_argument("--version", action=_Version, version="%s %s" % (PROG, __version__))
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    from popcon_site.collector.store import DEFAULT_MAX_SERIES

    collect = sub.add_parser(
        "collect",
        help="receive reports over statsd/UDP, store them, serve /metrics",
        description="Receive popcon-site reports over statsd/UDP, keep the counts in SQLite and serve them "
        "to Prometheus.  Binds to loopback by default: statsd is unauthenticated UDP, so anyone who "
        "can reach the port can add counts.",
    )
    collect.add_argument("--udp", default="127.0.0.1:8125", metavar="HOST:PORT",
                         help="where to receive statsd lines (default: %(default)s)")
    collect.add_argument("--http", default="127.0.0.1:9102", metavar="HOST:PORT",
                         help="where to serve /metrics (default: %(default)s)")
    collect.add_argument("--db", type=_path, default=None, metavar="PATH",
                         help="SQLite store file (default: %s)" % default_db())
    collect.add_argument("--prefix", type=_prefix, default=config.DEFAULT_PREFIX,
                         help="statsd prefix the reporters use (default: %(default)s)")
    collect.add_argument("--max-series", type=_positive_int, default=DEFAULT_MAX_SERIES, metavar="N",
                         help="most library series stored; new names past it are dropped and counted "
                         "(default: %(default)s)")
    collect.add_argument("--flush-interval", type=_interval, default=1.0, metavar="SECONDS",
                         help="how often counts are written to the store, from %g to %g (default: %%(default)s)"
                         % (MIN_FLUSH_INTERVAL, MAX_FLUSH_INTERVAL))

    report = sub.add_parser(
        "report",
        help="show how many processes used each library",
        description="Show how many reporting processes used each library, from a store file or Prometheus.",
    )
    source = report.add_mutually_exclusive_group()
    source.add_argument("--db", type=_path, metavar="PATH",
                        help="store file of `popcon-site collect` (default: %s); safe to read while it runs"
                        % default_db())
    source.add_argument("--prometheus", metavar="URL",
                        help="base URL of a Prometheus that scrapes the collector or statsd_exporter")
    report.add_argument("--range", metavar="DURATION",
                        help="with --prometheus: count what was added within this window, e.g. 30d")
    report.add_argument("--match", metavar="MATCHERS",
                        help='with --prometheus: label matchers, e.g. namespace="hub_a"')
    report.add_argument("--prefix", type=_prefix, default=None,
                        help="with --db: refuse a store of another prefix")
    report.add_argument("--json", action="store_true", help="print JSON instead of a table")
    report.add_argument("--unused", action="store_true",
                        help="also list installed distributions that were never counted; with --min-count K, "
                        "those counted fewer than K times too, so that the list gives no hidden library away")
    report.add_argument("--python", default=sys.executable, metavar="PATH",
                        help="with --unused: the interpreter whose environment to list (default: this one)")
    report.add_argument("--min-count", type=_count, default=0, metavar="K",
                        help="leave out libraries counted fewer than K times, and say how many; --unused then "
                        "lists them with the never counted, indistinguishably")
    report.add_argument("--versions", action="store_true", help="split counts by version, where reporters sent one")

    sub.add_parser("status", help="say whether popcon-site is active here, and with which settings",
                   description="Say whether popcon-site is active for this interpreter and why, the effective "
                   "settings, where reports go, and the state of the index cache.")
    sub.add_parser("index", help="build this environment's module index cache (run as its owner)",
                   description="Build the module index of this environment into its shared cache, so that "
                   "processes of users who cannot write the environment find it warm.")

    mapping = sub.add_parser("mapping", help="print the statsd_exporter mapping for the contract's names",
                             description="Print a statsd_exporter mapping that produces "
                             "python_popcon_library_used_total{library=...} and python_popcon_reports_total.")
    mapping.add_argument("--prefix", type=_prefix, default=None,
                         help="one prefix to map (default: the default prefix and every "
                         "python_popcon.<namespace>.library_used)")
    # For the checks made after parsing, so that their errors come with the
    # usage of the subcommand they are about.
    parser.commands = sub.choices
    return parser


def main(argv=None):
    try:
        return _main(argv)
    except KeyboardInterrupt:
        # Ctrl-C before collect set its own handlers, or during another
        # command: an interruption, not a crash.
        _say("%s: interrupted" % PROG)
        return 128 + signal.SIGINT


def _main(argv):
    # collect treats these signals as a request to stop cleanly; set that up
    # before anything else, so that a signal during start-up (the imports,
    # the argument parsing) is a clean stop too and never a traceback.
    global _stdout_closed

    stop = _StopRequest()
    stop.install()
    closed = _closed_standard_fds()
    _stdout_closed = 1 in closed
    # The settings the user's processes see, before this process opts out.
    environ = dict(os.environ)
    # This is admin tooling: its own imports (prometheus_client, ...) are not
    # what the environment's users use, so it never reports itself.  Child
    # processes inherit the opt-out too (report --unused runs the target
    # interpreter that way on purpose).
    os.environ["PYTHON_POPCONTEST_DISABLE"] = "1"
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except _HelpOutputError as exc:
        _discard_stdout()
        _say("%s: error: %s" % (exc.prog, exc))
        return EXIT_ERROR
    except BrokenPipeError:
        # `popcon-site --help | head -1`: the reader left.
        _discard_stdout()
        return EXIT_OK
    if args.command != "collect":
        # The other commands are interrupted by Ctrl-C as usual.
        stop.uninstall()
        if stop.requested:
            raise KeyboardInterrupt
    if args.command == "collect" and args.db is None:
        args.db = default_db()
    if args.command == "report":
        if args.prometheus is None and (args.range or args.match):
            parser.commands["report"].error("--range and --match need --prometheus")
    try:
        if 1 in closed or sys.stdout is None:
            # Every command writes its result, or collect its start line,
            # there; and fd 1 is /dev/null now, so nothing would be seen.
            raise OutputError("standard output is closed; redirect it to a file or /dev/null instead")
        if args.command == "collect":
            return cmd_collect(args, stop)
        if args.command == "report":
            return cmd_report(args)
        if args.command == "status":
            return cmd_status(args, environ)
        if args.command == "index":
            return cmd_index(args)
        return cmd_mapping(args)
    except CommandError as exc:
        if isinstance(exc, OutputError) or _stdout_fails():
            _discard_stdout()
        _say("%s %s: error: %s" % (PROG, args.command, exc))
        return EXIT_ERROR
    except BrokenPipeError:
        # `popcon-site report | head`: the reader left; that is not an error.
        _discard_stdout()
        return EXIT_OK


def _stdout_fails():
    try:
        sys.stdout.flush()
    except (AttributeError, OSError, ValueError):
        return True
    return False
