"""Parse statsd counter lines in the contract's names, and classify the rest.

The collector accepts exactly two shapes of line for its prefix ``P``:

* ``P.<library>:<value>|c[|@<rate>][|#<tags>]``, where ``<library>`` is a
  canonical (PEP 503) distribution name, and an optional DogStatsD tag
  ``version:<v>`` splits the count by version;
* ``<denominator>:<value>|c[|@<rate>]``, the per-process denominator
  (:func:`popcon_site.config.denominator_name`).

A value counts processes, so it must be a whole number of at least 1; a
sample rate scales it, rounded to the nearest whole number (halves up).

Every other line is classified by what is wrong with it and dropped, so one
bad sender never stops the others from being counted.

>>> parser = LineParser("python_popcon.library_used")
>>> parser.parse(b"python_popcon.library_used.numpy:1|c")
('accepted', ('numpy', ''), 1.0)
>>> parser.parse(b"python_popcon.library_used.numpy:1|c|@0.5|#version:1.26.4")
('accepted', ('numpy', '1.26.4'), 2.0)
>>> parser.parse(b"python_popcon.reports:1|c")
('accepted', None, 1.0)
>>> parser.parse(b"python_popcon.library_used.numpy:1|c|@0.4")
('accepted', ('numpy', ''), 3.0)
>>> parser.parse(b"python_popcon.library_used.numpy:0.5|c")
('malformed', None, 0.0)
>>> parser.parse(b"python_popcon.library_used.numpy:1|g")
('other_type', None, 0.0)
>>> parser.parse(b"other.thing:1|c")
('foreign_name', None, 0.0)
"""

import math
import re

__all__ = [
    "ACCEPTED",
    "FOREIGN_NAME",
    "MALFORMED",
    "NON_UTF8",
    "OTHER_TYPE",
    "OUTCOMES",
    "OVER_CAP",
    "LineParser",
    "is_library",
    "is_version",
]

ACCEPTED = "accepted"
MALFORMED = "malformed"
NON_UTF8 = "non_utf8"
OTHER_TYPE = "other_type"
FOREIGN_NAME = "foreign_name"
# Decided by the store, not the parser: a well-formed line for a new series
# once the cardinality cap is reached.
OVER_CAP = "over_cap"
OUTCOMES = (ACCEPTED, MALFORMED, NON_UTF8, OTHER_TYPE, FOREIGN_NAME, OVER_CAP)

# Metric types other statsd clients send; a line of one of these is well
# formed but not ours, which is worth telling apart from garbage.
_OTHER_TYPES = frozenset(("g", "ms", "h", "s", "d", "t", "st", "kv", "e", "sc"))

# What popcon_site.wire sends: a canonical (PEP 503) name, which has only
# lowercase ASCII letters, digits and hyphens.
_LIBRARY = re.compile(r"[a-z0-9-]{1,200}\Z")
# Unsigned decimal, as statsd clients write values and rates; float() alone
# would also take "nan", "inf", "1_0" and surrounding spaces.
_NUMBER = re.compile(r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?\Z")
# What popcon_site.wire sends as a version: the characters of PEP 440 and
# of real-world metadata versions.
_VERSION = re.compile(r"[A-Za-z0-9._+!-]{1,64}\Z")

# One process sends 1 per line; a relaying statsd may send a sum.  Anything
# larger than this is not a count of processes.
MAX_VALUE = 1e9
MAX_LINE = 1024
MAX_TAGS = 32
# Parsed lines repeat endlessly (`<prefix>.numpy:1|c`), so their results are
# remembered, up to this many distinct lines.
_CACHE_SIZE = 8192

_NOT_OURS = (MALFORMED, None, 0.0)


def is_library(name):
    """Whether ``name`` is a library name the collector accepts: a canonical
    (PEP 503) name, as text."""
    return isinstance(name, str) and _LIBRARY.match(name) is not None


def is_version(text):
    """Whether ``text`` is a version the collector stores: ``""`` for none,
    or one it accepts from a ``version:`` tag."""
    return isinstance(text, str) and (text == "" or _VERSION.match(text) is not None)


def _number(text):
    if not _NUMBER.match(text):
        return None
    value = float(text)
    return value if math.isfinite(value) else None


class LineParser:
    """Classify statsd lines for one prefix.

    :meth:`parse` returns ``(outcome, key, count)``: for an accepted library
    line the key is ``(library, version)`` with ``version`` ``""`` when
    untagged; for the denominator the key is None.  Any other outcome has key
    None and count 0.
    """

    def __init__(self, prefix):
        from popcon_site.config import denominator_name, prefix_problem

        problem = prefix_problem(prefix)
        if problem:
            raise ValueError(problem)
        self.prefix = prefix
        self.denominator = denominator_name(prefix)
        self._library_start = prefix + "."
        self._cache = {}

    def parse(self, raw):
        """Classify one line given as bytes, without its newline."""
        result = self._cache.get(raw)
        if result is not None:
            return result
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            return (NON_UTF8, None, 0.0)
        result = self._parse_text(line)
        if result[0] == ACCEPTED:
            if len(self._cache) >= _CACHE_SIZE:
                self._cache.clear()
            self._cache[raw] = result
        return result

    def _parse_text(self, line):
        if len(line) > MAX_LINE:
            return _NOT_OURS
        name, colon, rest = line.partition(":")
        if not colon or not name:
            return _NOT_OURS
        fields = rest.split("|")
        if len(fields) < 2:
            return _NOT_OURS
        value = _number(fields[0])
        kind = fields[1]
        if kind != "c":
            if kind in _OTHER_TYPES and value is not None:
                return (OTHER_TYPE, None, 0.0)
            return _NOT_OURS
        # A count of processes is a whole number, at least 1: "0.5", "1e-05"
        # and "0" would make fractional or empty series.
        if value is None or value > MAX_VALUE or value < 1.0 or not value.is_integer():
            return _NOT_OURS
        rate = None
        tags = None
        for field in fields[2:]:
            if field[:1] == "@" and rate is None:
                rate = _number(field[1:])
                if rate is None or not 0.0 < rate <= 1.0:
                    return _NOT_OURS
            elif field[:1] == "#" and tags is None:
                tags = field[1:].split(",")
                if len(tags) > MAX_TAGS:
                    return _NOT_OURS
            else:
                return _NOT_OURS
        count = value
        if rate is not None:
            scaled = value / rate
            if scaled > MAX_VALUE:
                return _NOT_OURS
            # A sampled line stands for value/rate lines, rounded to the
            # nearest whole number, halves up (1|c|@0.4 counts 3, @0.3 counts
            # 3); it is never less than the value itself, so at least 1.
            count = float(math.floor(scaled + 0.5))

        if name == self.denominator:
            return (ACCEPTED, None, count)
        if not name.startswith(self._library_start):
            return (FOREIGN_NAME, None, 0.0)
        library = name[len(self._library_start):]
        if not _LIBRARY.match(library):
            return (FOREIGN_NAME, None, 0.0)
        version = ""
        if tags:
            seen_version = False
            for tag in tags:
                key, _, tag_value = tag.partition(":")
                if key == "version":
                    if seen_version:
                        return _NOT_OURS
                    seen_version = True
                    # A version that cannot be a version is dropped, the
                    # count is kept.
                    version = tag_value if _VERSION.match(tag_value) else ""
        return (ACCEPTED, (library, version), count)
