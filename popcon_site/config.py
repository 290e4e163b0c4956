"""Settings from the environment, validated.

Used on the exit path, so it imports only what start-up already loaded.
Nothing here raises on bad input: a problem is described in
``Settings.problems`` and, where a problem exists, nothing is sent.

>>> s = settings_from_environ({})
>>> (s.host, s.port, s.prefix, s.problems)
('localhost', 8125, 'python_popcon.library_used', [])
>>> settings_from_environ({"PYTHON_POPCONTEST_STATSD_PORT": "x"}).problems
["PYTHON_POPCONTEST_STATSD_PORT='x' is not a port number (1-65535)"]
"""

__all__ = [
    "RANK_VARIABLES",
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "DEFAULT_PREFIX",
    "Settings",
    "denominator_name",
    "is_true",
    "nonzero_rank",
    "opted_out",
    "prefix_problem",
    "settings_from_environ",
]

DEFAULT_HOST = "localhost"
DEFAULT_PORT = 8125
DEFAULT_PREFIX = "python_popcon.library_used"

# Prefix components: what statsd and statsd_exporter treat as one path
# component, with no character that could start a new field or line.
_COMPONENT_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")
_MAX_PREFIX = 200
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("", "0", "false", "no", "off")

# Launchers of parallel jobs set one of these in every rank; only rank 0
# reports, so that a 512-rank job counts once.
RANK_VARIABLES = (
    "PMI_RANK",
    "PMIX_RANK",
    "OMPI_COMM_WORLD_RANK",
    "MV2_COMM_WORLD_RANK",
    "SLURM_PROCID",
)


def is_true(value):
    """Return True for 1, true, yes or on, in any case and ignoring spaces.

    >>> [is_true(v) for v in ("1", "TRUE", " on ", "0", "", None, "maybe")]
    [True, True, True, False, False, False, False]
    """
    return value is not None and value.strip().lower() in _TRUE


def opted_out(environ):
    """Return True when PYTHON_POPCONTEST_DISABLE asks to opt out.

    Besides 1/true/yes/on, any value that is not plainly false (0/false/no/off
    or empty) opts out: someone who set the variable meant to opt out, and
    privacy must not depend on spelling.  (``popcon_site.activate`` applies the
    same rule at start-up.)

    >>> [opted_out({"PYTHON_POPCONTEST_DISABLE": v}) for v in ("1", "Yes", "y", "0", "off", "")]
    [True, True, True, False, False, False]
    """
    return environ.get("PYTHON_POPCONTEST_DISABLE", "").strip().lower() not in _FALSE


def nonzero_rank(environ):
    """Return the first MPI/Slurm rank variable naming a rank other than 0, or None.

    Always None with PYTHON_POPCONTEST_ALL_RANKS on.

    >>> nonzero_rank({"SLURM_PROCID": "0"}) is None, nonzero_rank({"PMI_RANK": "3"})
    (True, 'PMI_RANK')
    """
    if is_true(environ.get("PYTHON_POPCONTEST_ALL_RANKS")):
        return None
    for name in RANK_VARIABLES:
        value = environ.get(name)
        if value is not None and value.strip() not in ("", "0"):
            return name
    return None


def prefix_problem(prefix):
    """Describe what is wrong with a statsd prefix, or return None when it is valid.

    A valid prefix is one or more components of ``[A-Za-z0-9_-]+`` joined by
    single dots, at most 200 characters.

    >>> prefix_problem("python_popcon.hub-a.library_used") is None
    True
    >>> prefix_problem("a..b")
    "prefix 'a..b' has an empty component"
    >>> prefix_problem("a:1|c")
    "prefix 'a:1|c' has a character outside [A-Za-z0-9_-] in component 'a:1|c'"
    """
    if not prefix:
        return "prefix is empty"
    if len(prefix) > _MAX_PREFIX:
        return "prefix %r is longer than %d characters" % (prefix, _MAX_PREFIX)
    for component in prefix.split("."):
        if not component:
            return "prefix %r has an empty component" % (prefix,)
        if not _COMPONENT_CHARS.issuperset(component):
            return "prefix %r has a character outside [A-Za-z0-9_-] in component %r" % (prefix, component)
    return None


def denominator_name(prefix):
    """The statsd name of the per-process denominator for a library prefix.

    It is the prefix without its last component, plus ``.reports``.  A
    one-component prefix has no parent, so its denominator is ``<prefix>_reports``
    (which maps to the same Prometheus name the default would give).

    >>> denominator_name("python_popcon.library_used")
    'python_popcon.reports'
    >>> denominator_name("python_popcon.hub_a.library_used")
    'python_popcon.hub_a.reports'
    >>> denominator_name("popcon")
    'popcon_reports'
    """
    parent, dot, _ = prefix.rpartition(".")
    return parent + ".reports" if dot else prefix + "_reports"


class Settings:
    """The effective settings of one process."""

    __slots__ = (
        "host",
        "port",
        "prefix",
        "debug",
        "dry_run",
        "all_ranks",
        "include_user",
        "versions",
        "disabled",
        "problems",
    )

    def __repr__(self):
        fields = ", ".join("%s=%r" % (name, getattr(self, name)) for name in self.__slots__)
        return "Settings(%s)" % fields


def settings_from_environ(environ):
    """Read every PYTHON_POPCONTEST_* setting from a mapping; never raises."""
    s = Settings()
    s.problems = []
    s.debug = is_true(environ.get("PYTHON_POPCONTEST_DEBUG"))
    s.dry_run = is_true(environ.get("PYTHON_POPCONTEST_DRY_RUN"))
    s.all_ranks = is_true(environ.get("PYTHON_POPCONTEST_ALL_RANKS"))
    s.include_user = is_true(environ.get("PYTHON_POPCONTEST_INCLUDE_USER"))
    s.versions = is_true(environ.get("PYTHON_POPCONTEST_VERSIONS"))
    s.disabled = opted_out(environ)

    host = environ.get("PYTHON_POPCONTEST_STATSD_HOST", "").strip() or DEFAULT_HOST
    if len(host) > 253 or not host.isprintable() or " " in host:
        s.problems.append("PYTHON_POPCONTEST_STATSD_HOST=%r is not a host name or address" % (host,))
    s.host = host

    raw_port = environ.get("PYTHON_POPCONTEST_STATSD_PORT", "").strip()
    port = DEFAULT_PORT
    if raw_port:
        port = int(raw_port) if raw_port.isdigit() and raw_port.isascii() else 0
        if not 0 < port < 65536:
            s.problems.append("PYTHON_POPCONTEST_STATSD_PORT=%r is not a port number (1-65535)" % (raw_port,))
    s.port = port

    prefix = environ.get("PYTHON_POPCONTEST_STATSD_PREFIX", "").strip() or DEFAULT_PREFIX
    problem = prefix_problem(prefix)
    if problem:
        s.problems.append("PYTHON_POPCONTEST_STATSD_PREFIX: " + problem)
    s.prefix = prefix
    return s
