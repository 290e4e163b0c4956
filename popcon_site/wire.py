"""statsd lines, datagrams, and a lean UDP send.

Formatting is kept apart from sending so that both can be tested without a
socket.  Sending uses ``_socket`` directly: ``socket`` costs about 13 ms to
import, ``_socket`` about 0.6 ms, and this runs at the exit of every process
that reports.

>>> report_lines("python_popcon.library_used", {"numpy": "1.26.4", "attrs": None})
['python_popcon.library_used.attrs:1|c', 'python_popcon.library_used.numpy:1|c', 'python_popcon.reports:1|c']
>>> pack_datagrams(["a:1|c", "b:1|c"])
[b'a:1|c\\nb:1|c']
"""

from popcon_site.config import denominator_name

__all__ = ["DATAGRAM_LIMIT", "pack_datagrams", "report_lines", "send_datagrams"]

# Fits any path MTU and is what statsd clients conventionally use.
DATAGRAM_LIMIT = 512

_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-")
_VERSION_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.+-_!")


def _is_library_name(name):
    # Canonical (PEP 503) names only: one statsd path component, nothing that
    # could end a field or a line.
    return bool(name) and len(name) <= 200 and _NAME_CHARS.issuperset(name)


def _is_version(version):
    return bool(version) and len(version) <= 64 and _VERSION_CHARS.issuperset(version)


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
    for name in sorted(libraries):
        if not _is_library_name(name):
            continue
        line = "%s.%s:1|c" % (prefix, name)
        version = libraries[name]
        if with_versions:
            line += "|#version:" + (version if version and _is_version(version) else "unknown")
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
