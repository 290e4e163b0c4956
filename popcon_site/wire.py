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

import os

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


def _address(host, port):
    """Resolve host to (family, sockaddr), preferring IPv4 like statsd clients do.

    The host is passed as bytes: a str host makes getaddrinfo import the idna
    codec (encodings.idna, stringprep, unicodedata), about 1 ms.  IP literals
    are recognised first and never touch the resolver.
    """
    import _socket

    if ":" in host:
        text = host[1:-1] if host.startswith("[") and host.endswith("]") else host
        _socket.inet_pton(_socket.AF_INET6, text)
        return _socket.AF_INET6, (text, port)
    try:
        _socket.inet_pton(_socket.AF_INET, host)
        return _socket.AF_INET, (host, port)
    except OSError:
        pass
    # A non-ASCII name raises UnicodeEncodeError here, which the caller handles.
    infos = _resolve(_socket, host.encode("ascii"), port)
    for family, _, _, _, sockaddr in infos:
        if family == _socket.AF_INET:
            return family, sockaddr
    family, _, _, _, sockaddr = infos[0]
    return family, sockaddr


# When a DNS server does not answer, glibc's resolver waits 5 s per try and
# tries twice, for every name it tries; getaddrinfo takes no timeout, and this
# runs in the exit of someone else's process, which would hang for 10 s or
# more.  glibc reads RES_OPTIONS when a thread's resolver state initialises,
# which for most processes is this very lookup: with these options it gives up
# after about a second.  Options the user set come after ours, so theirs win.
_RESOLVER_OPTIONS = "timeout:1 attempts:1"


def _resolve(_socket, name, port):
    environ = os.environ
    saved = environ.get("RES_OPTIONS")
    environ["RES_OPTIONS"] = _RESOLVER_OPTIONS if saved is None else _RESOLVER_OPTIONS + " " + saved
    try:
        return _socket.getaddrinfo(name, port, 0, _socket.SOCK_DGRAM)
    finally:
        if saved is None:
            del environ["RES_OPTIONS"]
        else:
            environ["RES_OPTIONS"] = saved


def send_datagrams(host, port, datagrams):
    """Send datagrams over UDP to host:port.  Never blocks on the send itself;
    raises OSError (including resolution errors) for the caller to handle."""
    import _socket

    family, sockaddr = _address(host, port)
    sock = _socket.socket(family, _socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        for datagram in datagrams:
            sock.sendto(datagram, sockaddr)
    finally:
        sock.close()
