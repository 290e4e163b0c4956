"""A grammar of hostile statsd lines, for property-based tests of the collector.

The shapes an attacker or a misconfigured client would send: any names,
huge, negative, non-numeric and non-finite values, zero and garbage sample
rates, tag floods, and bytes damaged after encoding.
"""

from __future__ import annotations

from hypothesis import strategies as st

from popcon_site.config import denominator_name

PREFIX = "popcon_fuzz.library_used"
DENOMINATOR = denominator_name(PREFIX)

names = st.one_of(
    st.from_regex(r"[a-z0-9-]{1,40}", fullmatch=True).map(lambda lib: PREFIX + "." + lib),
    st.just(DENOMINATOR),
    st.text(min_size=0, max_size=40).map(lambda text: PREFIX + "." + text),   # any text as a library
    st.sampled_from([PREFIX, PREFIX + ".", PREFIX + "..x", "other.thing", "", DENOMINATOR + "x",
                     PREFIX + ".numpy.extra", PREFIX.upper() + ".numpy", " " + PREFIX + ".numpy"]),
)
values = st.one_of(
    st.integers(min_value=0, max_value=10**12).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["-1", "+1", "1e9", "1e10", "1e308", "1e309", "nan", "inf", "-0", "0x10", "1_0", " 1",
                     "1 ", "", ".", "1.", ".5", "9" * 400, "١", "1e-400"]),
)
kinds = st.sampled_from(["c", "g", "ms", "h", "s", "C", "c ", "", "cc", "d"])
rates = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(lambda r: "@" + repr(r)),
    st.sampled_from(["@0", "@0.0", "@-1", "@1", "@1.5", "@", "@nan", "@inf", "@1e-9", "@1e-300", "@1e-400",
                     "@0.5@0.5", "@ 0.5"]),
)
tag = st.one_of(
    st.from_regex(r"version:[A-Za-z0-9._+!-]{0,70}", fullmatch=True),
    st.text(max_size=30),
    st.sampled_from(["version:", "version:1\n2", "version:1,version:2", "env:prod", ":", "version"]),
)
tags = st.lists(tag, max_size=40).map(lambda items: "#" + ",".join(items))


@st.composite
def statsd_lines(draw) -> bytes:
    fields = [draw(values), draw(kinds)] + draw(st.lists(st.one_of(rates, tags), max_size=3))
    text = draw(names) + draw(st.sampled_from([":", "", "::"])) + "|".join(fields)
    data = text.encode("utf-8", "surrogatepass")
    # Now and then, damage the bytes: a stray byte, a cut, an invalid sequence.
    damage = draw(st.integers(min_value=0, max_value=5))
    if damage == 1 and data:
        at = draw(st.integers(min_value=0, max_value=len(data) - 1))
        data = data[:at] + bytes([draw(st.integers(min_value=0, max_value=255))]) + data[at + 1:]
    elif damage == 2:
        data = data[:draw(st.integers(min_value=0, max_value=len(data)))]
    elif damage == 3:
        data += draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x00", b"\r"]))
    return data


any_line = st.one_of(statsd_lines(), st.binary(max_size=200), st.binary(min_size=1000, max_size=3000))
