"""The collector's line parser: exactly the contract's names, every other line classified."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from popcon_site import wire
from popcon_site.collector.lines import (
    ACCEPTED,
    FOREIGN_NAME,
    MALFORMED,
    NON_UTF8,
    OTHER_TYPE,
    OUTCOMES,
    LineParser,
)
from popcon_site.collector.store import CountStore

PREFIX = "python_popcon.library_used"
LIB = PREFIX + ".numpy"


@pytest.fixture
def parser():
    return LineParser(PREFIX)


def test_every_line_the_reporter_sends_is_accepted(parser):
    lines = wire.report_lines(PREFIX, {"numpy": "1.26.4", "zope-interface": None, "a-": "0"}, with_versions=True)
    results = [parser.parse(line.encode()) for line in lines]
    assert [r[0] for r in results] == [ACCEPTED] * len(lines)
    assert [r[1] for r in results] == [("a-", "0"), ("numpy", "1.26.4"), ("zope-interface", "unknown"), None]


@pytest.mark.parametrize(
    "prefix, denominator",
    [("popcon", "popcon_reports"), ("python_popcon.hub_a.library_used", "python_popcon.hub_a.reports")],
)
def test_denominator_follows_the_prefix(prefix, denominator):
    parser = LineParser(prefix)
    assert parser.parse(("%s:1|c" % denominator).encode()) == (ACCEPTED, None, 1.0)
    assert parser.parse(("%s.attrs:1|c" % prefix).encode()) == (ACCEPTED, ("attrs", ""), 1.0)
    # The default prefix's denominator is foreign to another prefix.
    assert parser.parse(b"python_popcon.reports:1|c")[0] == FOREIGN_NAME


@pytest.mark.parametrize(
    "line, count",
    [
        (LIB + ":1|c", 1.0),
        (LIB + ":1|c|@0.5", 2.0),
        (LIB + ":1|c|@1", 1.0),
        (LIB + ":3|c|@0.25", 12.0),
        (LIB + ":2.0|c", 2.0),
        (LIB + ":1e2|c", 100.0),
        # Rounded to whole processes, halves up.
        (LIB + ":1|c|@0.3", 3.0),
        (LIB + ":1|c|@0.4", 3.0),
        (LIB + ":1|c|@0.7", 1.0),
        (LIB + ":2|c|@0.8", 3.0),
        (LIB + ":1|c|#version:1.0,host:x", 1.0),
        (LIB + ":1|c|@0.5|#version:1.0", 2.0),
        (LIB + ":1|c|#version:1.0|@0.5", 2.0),
    ],
)
def test_sample_rates_and_values(parser, line, count):
    outcome, key, got = parser.parse(line.encode())
    assert (outcome, key[0], got) == (ACCEPTED, "numpy", count)


@pytest.mark.parametrize(
    "line, version",
    [
        (LIB + ":1|c|#version:1.26.4", "1.26.4"),
        (LIB + ":1|c|#env:prod,version:2.0rc1+local.7", "2.0rc1+local.7"),
        (LIB + ":1|c|#version", ""),
        (LIB + ":1|c|#version:", ""),
        # A tag value that cannot be a version: the version goes, the count stays.
        (LIB + ":1|c|#version:1 0", ""),
        (LIB + ":1|c|#version:" + "9" * 65, ""),
        (LIB + ":1|c|#other:1.0", ""),
    ],
)
def test_version_tag(parser, line, version):
    assert parser.parse(line.encode()) == (ACCEPTED, ("numpy", version), 1.0)


@pytest.mark.parametrize(
    "raw, outcome",
    [
        (b"\xff\xfe:1|c", NON_UTF8),
        (LIB.encode() + b"\xc3:1|c", NON_UTF8),
        (LIB.encode() + b":1|c|#version:\xe9", NON_UTF8),
        (b"", MALFORMED),
        (b"no colon at all", MALFORMED),
        (LIB.encode() + b":1", MALFORMED),
        (b":1|c", MALFORMED),
        (LIB.encode() + b":|c", MALFORMED),
        (LIB.encode() + b":abc|c", MALFORMED),
        (LIB.encode() + b":-1|c", MALFORMED),
        (LIB.encode() + b":+1|c", MALFORMED),
        (LIB.encode() + b":nan|c", MALFORMED),
        (LIB.encode() + b":inf|c", MALFORMED),
        (LIB.encode() + b":1_0|c", MALFORMED),
        (LIB.encode() + b": 1|c", MALFORMED),
        (LIB.encode() + b":1e300|c", MALFORMED),
        (LIB.encode() + b":2000000000|c", MALFORMED),
        (LIB.encode() + b":1|c|@0.0000000001", MALFORMED),
        (LIB.encode() + b":\xd9\xa1|c", MALFORMED),
        (LIB.encode() + b":1|c|@0", MALFORMED),
        (LIB.encode() + b":1|c|@2", MALFORMED),
        (LIB.encode() + b":1|c|@-0.5", MALFORMED),
        (LIB.encode() + b":1|c|@abc", MALFORMED),
        (LIB.encode() + b":1|c|@", MALFORMED),
        (LIB.encode() + b":1|c|@0.5|@0.5", MALFORMED),
        (LIB.encode() + b":1|c|#a|#b", MALFORMED),
        (LIB.encode() + b":1|c|x", MALFORMED),
        (LIB.encode() + b":1|c|", MALFORMED),
        (LIB.encode() + b":1|c\r", MALFORMED),
        (LIB.encode() + b":1|zz", MALFORMED),
        (LIB.encode() + b":1|C", MALFORMED),
        (LIB.encode() + b":1|c|#version:1,version:2", MALFORMED),
        (LIB.encode() + b":1|c|#" + b",".join(b"t%d" % i for i in range(33)), MALFORMED),
        (LIB.encode() + b":1|c|#" + b"x" * 1100, MALFORMED),
        (LIB.encode() + b":1|g", OTHER_TYPE),
        (LIB.encode() + b":1|ms", OTHER_TYPE),
        (LIB.encode() + b":1|h|@0.5", OTHER_TYPE),
        (LIB.encode() + b":1|s", OTHER_TYPE),
        (LIB.encode() + b":1|d", OTHER_TYPE),
        (b"other.app.requests:1|c", FOREIGN_NAME),
        (PREFIX.encode() + b":1|c", FOREIGN_NAME),
        (PREFIX.encode() + b".:1|c", FOREIGN_NAME),
        (PREFIX.encode() + b".NumPy:1|c", FOREIGN_NAME),
        (PREFIX.encode() + b".zope.interface:1|c", FOREIGN_NAME),
        (PREFIX.encode() + b".under_score:1|c", FOREIGN_NAME),
        (PREFIX.encode() + b".caf\xc3\xa9:1|c", FOREIGN_NAME),
        (PREFIX.encode() + b"." + b"a" * 201 + b":1|c", FOREIGN_NAME),
        (b"python_popcon.library_usedx.numpy:1|c", FOREIGN_NAME),
        (b"python_popcon.reports.extra:1|c", FOREIGN_NAME),
    ],
)
def test_every_other_line_is_classified_and_dropped(parser, raw, outcome):
    assert parser.parse(raw) == (outcome, None, 0.0)


def test_a_bad_prefix_is_refused():
    with pytest.raises(ValueError, match="empty component"):
        LineParser("a..b")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes_get_an_outcome_and_never_raise(raw):
    outcome, key, count = LineParser(PREFIX).parse(raw)
    assert outcome in OUTCOMES
    assert count >= 0
    if outcome != ACCEPTED:
        assert key is None and count == 0


def test_the_cap_bounds_series_and_counts_dropped_names(tmp_path):
    parser = LineParser(PREFIX)
    store = CountStore(str(tmp_path / "db.sqlite3"), PREFIX, max_series=3)
    try:
        lines = [("%s.lib%d:1|c" % (PREFIX, i % 6)).encode() for i in range(12)]
        store.add(parser.parse(line) for line in lines)
        snap = store.snapshot()
        assert sorted(snap.libraries) == [("lib0", ""), ("lib1", ""), ("lib2", "")]
        assert snap.libraries[("lib0", "")] == 2
        assert snap.lines["over_cap"] == 6
        assert snap.lines["accepted"] == 6
        # lib3..lib5, each dropped twice, counted once each.
        assert snap.names_dropped == 3
    finally:
        store.close()
