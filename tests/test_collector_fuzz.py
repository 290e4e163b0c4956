"""Property-based tests of the collector's parser and store: no input breaks them.

Lines are drawn from a grammar of near-valid statsd lines (the shapes an
attacker or a misconfigured client would send) as well as from raw bytes,
and every property is checked against what the contract allows through.
"""

from __future__ import annotations

import math
import os
import re
import tempfile

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from popcon_site.collector.exposition import StoreCollector
from popcon_site.collector.lines import ACCEPTED, MAX_VALUE, OUTCOMES, LineParser
from popcon_site.collector.store import CountStore, read_counts
from popcon_site.config import denominator_name
from support.statsd_fuzz import PREFIX, any_line, statsd_lines

DENOMINATOR = denominator_name(PREFIX)
LIBRARY = re.compile(r"[a-z0-9-]{1,200}\Z")
VERSION = re.compile(r"(?:[A-Za-z0-9._+!-]{1,64})?\Z")

FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

def check_result(raw: bytes, result) -> None:
    outcome, key, count = result
    assert outcome in OUTCOMES
    assert isinstance(count, float) and math.isfinite(count) and 0 <= count <= MAX_VALUE, (raw, result)
    if outcome != ACCEPTED:
        assert key is None and count == 0, (raw, result)
        return
    # Only whole counts of processes, at least one.
    assert count >= 1 and count.is_integer(), (raw, result)
    text = raw.decode("utf-8")  # accepted lines are valid UTF-8
    assert "\n" not in text and len(text) <= 1024
    if key is None:
        assert text.startswith(DENOMINATOR + ":"), (raw, result)
    else:
        library, version = key
        # Only a canonical name and a version-like string ever reach a label.
        assert LIBRARY.match(library) and VERSION.match(version), (raw, result)
        assert text.startswith(f"{PREFIX}.{library}:"), (raw, result)


@FUZZ
@given(any_line)
def test_any_line_gets_one_outcome_and_a_finite_count(raw):
    parser = LineParser(PREFIX)
    result = parser.parse(raw)
    check_result(raw, result)
    # The parse cache never changes an answer.
    assert parser.parse(raw) == result


@FUZZ
@given(st.from_regex(r"[a-z0-9-]{1,200}", fullmatch=True), st.integers(min_value=1, max_value=10**9),
       st.one_of(st.none(), st.floats(min_value=1e-9, max_value=1.0)),
       st.one_of(st.none(), st.from_regex(r"[A-Za-z0-9._+!-]{1,64}", fullmatch=True)))
def test_every_well_formed_counter_is_counted_exactly(library, value, rate, version):
    line = f"{PREFIX}.{library}:{value}|c"
    if rate is not None:
        line += f"|@{rate!r}"
    if version is not None:
        line += f"|#version:{version}"
    count = value / rate if rate is not None else float(value)
    assume(len(line) <= 1024)
    outcome, key, parsed = LineParser(PREFIX).parse(line.encode())
    if rate is not None and count <= MAX_VALUE:
        count = float(math.floor(count + 0.5))
    if count > MAX_VALUE:
        # More than a billion processes in one line is not a count: refused whole.
        assert (outcome, key, parsed) == ("malformed", None, 0.0)
    else:
        assert (outcome, key) == (ACCEPTED, (library, version or ""))
        assert parsed == count


@FUZZ
@given(st.lists(st.sampled_from(["@0", "@0.0", "@-0.5", "@-1", "@2", "@nan", "@inf", "@", "@x", "@1e-400",
                                  "@0x1", "@1/2"]), min_size=1, max_size=2))
def test_zero_negative_or_garbage_sample_rates_are_refused(bad_rates):
    line = f"{PREFIX}.numpy:1|c|" + "|".join(bad_rates)
    assert LineParser(PREFIX).parse(line.encode()) == ("malformed", None, 0.0)


@FUZZ
@given(st.integers(min_value=33, max_value=2000))
def test_tag_floods_are_refused(count):
    line = f"{PREFIX}.numpy:1|c|#" + ",".join(f"t{i}:v" for i in range(count))
    assert LineParser(PREFIX).parse(line.encode())[0] == "malformed"


@FUZZ
@given(st.lists(st.one_of(statsd_lines(), st.binary(max_size=60)), max_size=60), st.integers(min_value=1, max_value=8))
def test_store_conserves_lines_caps_series_and_survives_a_reopen(lines, cap):
    parser = LineParser(PREFIX)
    results = [parser.parse(raw) for raw in lines]
    accepted_libraries = {key for outcome, key, _ in results if outcome == ACCEPTED and key is not None}
    reports = sum(count for outcome, key, count in results if outcome == ACCEPTED and key is None)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "counts.sqlite3")
        store = CountStore(path, PREFIX, max_series=cap)
        try:
            store.add(results)
            snap = store.snapshot()
            # Every line ends up under exactly one outcome.
            assert sum(snap.lines.values()) == len(lines)
            assert len(snap.libraries) == min(cap, len(accepted_libraries))
            assert snap.names_dropped == max(0, len(accepted_libraries) - cap)
            assert snap.reports == reports
            assert all(math.isfinite(c) and c >= 0 for c in snap.libraries.values())
            store.flush()
        finally:
            store.close()
        prefix, stored = read_counts(path)
        assert prefix == PREFIX
        assert (stored.libraries, stored.reports, stored.lines, stored.names_dropped) == (
            snap.libraries, snap.reports, snap.lines, snap.names_dropped)
        again = CountStore(path, PREFIX, max_series=cap)
        try:
            assert again.snapshot().libraries == snap.libraries
        finally:
            again.close()


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(statsd_lines(), max_size=40))
def test_whatever_is_accepted_round_trips_through_the_exposition(lines):
    parser = LineParser(PREFIX)
    with tempfile.TemporaryDirectory() as tmp:
        store = CountStore(os.path.join(tmp, "counts.sqlite3"), PREFIX)
        try:
            store.add(parser.parse(raw) for raw in lines)
            registry = CollectorRegistry(auto_describe=False)
            registry.register(StoreCollector(store))
            text = generate_latest(registry).decode("utf-8")
            exposed = {}
            for family in text_string_to_metric_families(text):
                for sample in family.samples:
                    if sample.name == "python_popcon_library_used_total":
                        assert set(sample.labels) <= {"library", "version"}
                        exposed[(sample.labels["library"], sample.labels.get("version", ""))] = sample.value
            assert exposed == store.snapshot().libraries
        finally:
            store.close()
