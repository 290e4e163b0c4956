"""Settings from the environment, validated.

The rules live in :mod:`popcon_site.wire`, which the exit path imports
anyway; this module gathers them, with every switch, into one
:class:`Settings` for the CLI, the collector and the tests.  Nothing here
raises on bad input: a problem is described in ``Settings.problems`` and,
where a problem exists, nothing is sent.

>>> s = settings_from_environ({})
>>> (s.host, s.port, s.prefix, s.problems)
('localhost', 8125, 'python_popcon.library_used', [])
>>> settings_from_environ({"PYTHON_POPCONTEST_STATSD_PORT": "x"}).problems
["PYTHON_POPCONTEST_STATSD_PORT='x' is not a port number (1-65535)"]
"""

from popcon_site.wire import (
    DEFAULT_HOST,
    DEFAULT_PORT,
    DEFAULT_PREFIX,
    RANK_VARIABLES,
    denominator_name,
    is_true,
    nonzero_rank,
    opted_out,
    prefix_problem,
    read_settings,
)

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
    s.debug = is_true(environ.get("PYTHON_POPCONTEST_DEBUG"))
    s.dry_run = is_true(environ.get("PYTHON_POPCONTEST_DRY_RUN"))
    s.all_ranks = is_true(environ.get("PYTHON_POPCONTEST_ALL_RANKS"))
    s.include_user = is_true(environ.get("PYTHON_POPCONTEST_INCLUDE_USER"))
    s.versions = is_true(environ.get("PYTHON_POPCONTEST_VERSIONS"))
    s.disabled = opted_out(environ)
    s.host, s.port, s.prefix, s.problems = read_settings(environ)
    return s
