"""The exit path: new modules -> libraries -> statsd lines -> send.

Imported lazily by the bootstrap's exit handler, and only in processes that
imported something outside the standard library.  With a warm index it
imports nothing beyond ``marshal`` and ``_socket``; in particular not
``importlib.metadata``, ``statsd``, ``packaging``, ``json``, ``socket`` or
``email``, each of which costs tens of milliseconds.
"""

import os

from popcon_site import config, index, wire
from popcon_site._bootstrap import debug

__all__ = ["libraries_used", "report"]

# Never counted: the counter itself.
_SELF = "popcon-site"


def libraries_used(module_names, search_path, include_user=False):
    """Map each installed distribution owning one of ``module_names`` to its version.

    ``search_path`` is the process's ``sys.path`` without the script's
    directory.  popcon-site itself is left out.
    """
    dirs = index.search_dirs(search_path, include_user, debug)
    libraries = index.load(dirs, debug).libraries(module_names)
    libraries.pop(_SELF, None)
    return libraries


def report(module_names, search_path, environ=None):
    """Send one process's report, or explain on stderr (debug) why not.

    Raises nothing that the caller has to care about except on programming
    errors; the bootstrap still guards the call.
    """
    environ = os.environ if environ is None else environ
    settings = config.settings_from_environ(environ)
    if settings.problems:
        for problem in settings.problems:
            debug("nothing sent: " + problem)
        return
    libraries = libraries_used(module_names, search_path, settings.include_user)
    if not libraries:
        debug("no imported module belongs to an installed distribution; nothing sent")
        return
    lines = wire.report_lines(settings.prefix, libraries, settings.versions)
    datagrams = wire.pack_datagrams(lines)
    target = "%s:%d" % (settings.host, settings.port)
    if settings.dry_run:
        text = "popcon-site: dry run, would send to %s:\n%s\n" % (target, "\n".join(lines))
        os.write(2, text.encode("ascii"))
        return
    try:
        wire.send_datagrams(settings.host, settings.port, datagrams)
    except (OSError, UnicodeError) as exc:
        debug("could not send to %s: %s" % (target, exc))
        return
    debug("sent %d lines in %d datagrams to %s" % (len(lines), len(datagrams), target))
