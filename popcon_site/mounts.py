"""Where a directory lies inside its filesystem, from /proc/self/mountinfo.

A bind mount shows one directory under a second name, and nothing in the
second name's ancestors points back at the first: a container started with
``--bind ~/libs:/opt/libs`` puts a user's own installs at /opt/libs.  The
mount table says which filesystem a path is on and where inside it, which
is the same for both names.  Imported by the exit path only for a directory
outside the environment that lies on the filesystem of a home directory.
"""

import os

from popcon_site.reporter import READ_LIMIT, _under

__all__ = ["inside_which", "location"]


def inside_which(path, places):
    """The first kind of ``places`` (``[(kind, paths)]``) that holds ``path``
    inside the same filesystem, or None; None too where there is no mount table."""
    table = _mounts()
    where = location(path, table)
    if where is None:
        return None
    for kind, paths in places:
        for place in paths:
            inside = location(place, table)
            if inside is not None and inside[0] == where[0] and _under(where[1], inside[1]):
                return kind
    return None


def _mounts():
    """{mount point: (device, root of the mount inside its filesystem)}, from
    /proc/self/mountinfo; empty where there is none."""
    try:
        fd = os.open("/proc/self/mountinfo", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return {}
    chunks = []
    try:
        size = 0
        while size < READ_LIMIT:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError:
        return {}
    finally:
        os.close(fd)
    mounts = {}
    for line in b"".join(chunks).decode("utf-8", "surrogateescape").splitlines():
        fields = line.split(" ", 5)
        if len(fields) == 6:
            # A later line mounted over an earlier one at the same point.
            mounts[_unescape(fields[4])] = (fields[2], _unescape(fields[3]))
    return mounts


def _unescape(text):
    r"""mountinfo writes space, tab, newline and backslash as octal escapes.

    >>> _unescape(r"/mnt/my\040disk"), _unescape(r"/odd\09"), _unescape("/plain")
    ('/mnt/my disk', '/odd\\09', '/plain')
    """
    if "\\" not in text:
        return text
    head, *parts = text.split("\\")
    out = [head]
    for part in parts:
        code = part[:3]
        if len(code) == 3 and all(c in "01234567" for c in code):
            out.append(chr(int(code, 8)) + part[3:])
        else:
            out.append("\\" + part)
    return "".join(out)


def location(path, mounts):
    """(device, path inside its filesystem) of a path, or None."""
    try:
        real = os.path.realpath(path)
    except (OSError, ValueError):
        return None
    point = real
    while point not in mounts:
        parent = os.path.dirname(point)
        if parent == point:
            return None
        point = parent
    device, root = mounts[point]
    rest = real[len(point):] if point != os.sep else real
    return device, (root.rstrip(os.sep) + rest) or os.sep
