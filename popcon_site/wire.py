"""The statsd side of a report: settings, lines, datagrams, and a lean UDP send.

Imported at the exit of every reporting process, so it imports only ``os``
(and ``_socket`` to send), and holds only what a report needs: reading and
validating the settings, formatting, packing and sending.  Formatting is
kept apart from sending so that both can be tested without a socket.
Sending uses ``_socket`` directly: ``socket`` costs about 13 ms to import,
``_socket`` about 0.6 ms.  :mod:`popcon_site.config` builds on the settings
reader here for the CLI and the collector.

>>> report_lines("python_popcon.library_used", {"numpy": "1.26.4", "attrs": None})
['python_popcon.library_used.attrs:1|c', 'python_popcon.library_used.numpy:1|c', 'python_popcon.reports:1|c']
>>> pack_datagrams(["a:1|c", "b:1|c"])
[b'a:1|c\\nb:1|c']
"""

__all__ = [
    "DATAGRAM_LIMIT",
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "DEFAULT_PREFIX",
    "RANK_VARIABLES",
    "denominator_name",
    "is_true",
    "nonzero_rank",
    "opted_out",
    "pack_datagrams",
    "prefix_problem",
    "read_settings",
    "report_lines",
    "send_datagrams",
]

# --- settings -------------------------------------------------------------------

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
    for name in RANK_VARIABLES:
        value = environ.get(name)
        if value is not None and value.strip() not in ("", "0"):
            # Looked at only now: a process that is no MPI rank (most) reads
            # one variable fewer at every exit.
            return None if is_true(environ.get("PYTHON_POPCONTEST_ALL_RANKS")) else name
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


def read_settings(environ):
    """The statsd destination of a report, validated; never raises.

    Returns ``(host, port, prefix, problems)``: where a problem exists,
    nothing may be sent.  :func:`popcon_site.config.settings_from_environ`
    adds the switches to it.

    >>> read_settings({})
    ('localhost', 8125, 'python_popcon.library_used', [])
    """
    problems = []
    host = environ.get("PYTHON_POPCONTEST_STATSD_HOST", "").strip() or DEFAULT_HOST
    if len(host) > 253 or not host.isprintable() or " " in host:
        problems.append("PYTHON_POPCONTEST_STATSD_HOST=%r is not a host name or address" % (host,))
    raw_port = environ.get("PYTHON_POPCONTEST_STATSD_PORT", "").strip()
    port = DEFAULT_PORT
    if raw_port:
        port = int(raw_port) if raw_port.isdigit() and raw_port.isascii() else 0
        if not 0 < port < 65536:
            problems.append("PYTHON_POPCONTEST_STATSD_PORT=%r is not a port number (1-65535)" % (raw_port,))
    prefix = environ.get("PYTHON_POPCONTEST_STATSD_PREFIX", "").strip() or DEFAULT_PREFIX
    problem = prefix_problem(prefix)
    if problem:
        problems.append("PYTHON_POPCONTEST_STATSD_PREFIX: " + problem)
    return host, port, prefix, problems


# --- lines and datagrams ----------------------------------------------------------

# Fits any path MTU and is what statsd clients conventionally use.
DATAGRAM_LIMIT = 512

_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-")
_VERSION_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.+-_!")


def report_lines(prefix, libraries, with_versions=False):
    """Return the statsd lines one process sends: one counter per library, sorted,
    then the denominator.  Returns [] when no library is valid.

    ``libraries`` maps canonical names to versions (or None).  A name that is
    not canonical is dropped, never escaped.  With ``with_versions`` every
    library line carries a DogStatsD version tag, ``unknown`` when there is no
    valid version: statsd_exporter drops series of one name whose label names
    differ, so a line without the tag would be lost.

    >>> report_lines("p.lib", {"x": "2.0", "y": None}, with_versions=True)
    ['p.lib.x:1|c|#version:2.0', 'p.lib.y:1|c|#version:unknown', 'p.reports:1|c']
    >>> report_lines("p.lib", {"Bad Name\\nx:1|c": None})
    []
    """
    lines = []
    names = _NAME_CHARS
    for name in sorted(libraries):
        # Canonical (PEP 503) names only: one statsd path component, nothing
        # that could end a field or a line.
        if not name or len(name) > 200 or not names.issuperset(name):
            continue
        line = "%s.%s:1|c" % (prefix, name)
        if with_versions:
            version = libraries[name]
            valid = version and len(version) <= 64 and _VERSION_CHARS.issuperset(version)
            line += "|#version:" + (version if valid else "unknown")
        lines.append(line)
    if lines:
        lines.append(denominator_name(prefix) + ":1|c")
    return lines


def pack_datagrams(lines, limit=DATAGRAM_LIMIT):
    """Join lines with newlines into as few datagrams of at most ``limit`` bytes as
    fit, keeping the order.  A single line longer than ``limit`` travels alone.

    >>> [len(d) for d in pack_datagrams(["x" * 300, "y" * 300, "z" * 100])]
    [300, 401]
    """
    datagrams = []
    current = b""
    for line in lines:
        data = line.encode("ascii")
        if current and len(current) + 1 + len(data) <= limit:
            current += b"\n" + data
        else:
            if current:
                datagrams.append(current)
            current = data
    if current:
        datagrams.append(current)
    return datagrams


# --- sending ------------------------------------------------------------------------

def _address(_socket, host, port, debug):
    """Resolve host to (family, sockaddr), preferring IPv4 like statsd clients do.

    IP literals are recognised first and, like ``localhost`` (which RFC 6761
    reserves for loopback), never touch the resolver.  Other names go to
    :mod:`popcon_site.resolve`, which bounds the wait and remembers answers.
    """
    if ":" in host:
        text = host[1:-1] if host.startswith("[") and host.endswith("]") else host
        _socket.inet_pton(_socket.AF_INET6, text)
        return _socket.AF_INET6, (text, port)
    try:
        _socket.inet_pton(_socket.AF_INET, host)
        return _socket.AF_INET, (host, port)
    except OSError:
        pass
    name = host.lower().rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):
        return _socket.AF_INET, ("127.0.0.1", port)
    if not host.isascii():
        raise OSError("%r is not an ASCII host name" % (host,))
    from popcon_site import resolve

    return resolve.address(host, port, debug)


def _silent(message):
    pass


def send_datagrams(host, port, datagrams, debug=_silent):
    """Send datagrams over UDP to host:port.  Never blocks on the send itself;
    raises OSError (including resolution errors) for the caller to handle.
    ``debug`` takes a line about how the host was resolved."""
    import _socket

    family, sockaddr = _address(_socket, host, port, debug)
    sock = _socket.socket(family, _socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        for datagram in datagrams:
            sock.sendto(datagram, sockaddr)
    finally:
        sock.close()
