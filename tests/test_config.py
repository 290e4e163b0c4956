"""popcon_site.config: settings from the environment, validated, never raising."""

import pytest
from hypothesis import given, strategies as st

from popcon_site.config import denominator_name, is_true, prefix_problem, settings_from_environ

COMPONENT = st.from_regex(r"[A-Za-z0-9_-]{1,12}", fullmatch=True)


def test_defaults_match_the_contract():
    s = settings_from_environ({})
    assert (s.host, s.port, s.prefix) == ("localhost", 8125, "python_popcon.library_used")
    assert not (s.debug or s.dry_run or s.all_ranks or s.include_user or s.versions)
    assert s.problems == []


def test_every_setting_is_read():
    s = settings_from_environ({
        "PYTHON_POPCONTEST_STATSD_HOST": "statsd.example",
        "PYTHON_POPCONTEST_STATSD_PORT": "9125",
        "PYTHON_POPCONTEST_STATSD_PREFIX": "python_popcon.hub-a.library_used",
        "PYTHON_POPCONTEST_DEBUG": "1",
        "PYTHON_POPCONTEST_DRY_RUN": "yes",
        "PYTHON_POPCONTEST_ALL_RANKS": "On",
        "PYTHON_POPCONTEST_INCLUDE_USER": "TRUE",
        "PYTHON_POPCONTEST_VERSIONS": "true",
    })
    assert (s.host, s.port, s.prefix) == ("statsd.example", 9125, "python_popcon.hub-a.library_used")
    assert s.debug and s.dry_run and s.all_ranks and s.include_user and s.versions
    assert s.problems == []


@pytest.mark.parametrize("value", ["1", "true", "TRUE", "True", "yes", "YES", "on", "On", " on "])
def test_true_values(value):
    assert is_true(value) is True


@pytest.mark.parametrize("value", [None, "", "0", "false", "FALSE", "no", "off", "2", "enabled"])
def test_everything_else_is_not_true(value):
    assert is_true(value) is False


@pytest.mark.parametrize("port", ["x", "0", "65536", "-1", "81 25", "８１２５", "8125.0"])
def test_a_bad_port_is_a_problem_not_an_exception(port):
    s = settings_from_environ({"PYTHON_POPCONTEST_STATSD_PORT": port})
    assert s.problems and "PYTHON_POPCONTEST_STATSD_PORT" in s.problems[0]


@pytest.mark.parametrize("prefix", [
    "python_popcon.library_used", "popcon", "a.b.c.d", "hub-1.lib_used", "A-Z_0-9",
])
def test_valid_prefixes(prefix):
    assert prefix_problem(prefix) is None
    assert settings_from_environ({"PYTHON_POPCONTEST_STATSD_PREFIX": prefix}).problems == []


@pytest.mark.parametrize("prefix", [
    "a..b", ".a", "a.", "a b", "a:1|c", "a\nb", "a|b", "a/b", "a@b", "ünï.code", "a.b\n.c", "x" * 300,
])
def test_invalid_prefixes_are_problems(prefix):
    assert isinstance(prefix_problem(prefix), str)
    assert settings_from_environ({"PYTHON_POPCONTEST_STATSD_PREFIX": prefix}).problems


@given(st.lists(COMPONENT, min_size=1, max_size=6).map(".".join))
def test_any_dotted_run_of_allowed_components_is_valid(prefix):
    if len(prefix) <= 200:
        assert prefix_problem(prefix) is None


@given(st.text(min_size=1, max_size=60))
def test_a_valid_prefix_never_holds_a_statsd_separator(prefix):
    if prefix_problem(prefix) is None:
        assert not set(prefix) & set(":|\n\r\t #@/ ")
        assert ".." not in prefix and not prefix.startswith(".") and not prefix.endswith(".")


def test_denominator_is_the_parent_plus_reports():
    assert denominator_name("python_popcon.library_used") == "python_popcon.reports"
    assert denominator_name("python_popcon.hub_a.library_used") == "python_popcon.hub_a.reports"
    assert denominator_name("popcon") == "popcon_reports"


@given(st.dictionaries(st.sampled_from([
    "PYTHON_POPCONTEST_STATSD_HOST", "PYTHON_POPCONTEST_STATSD_PORT", "PYTHON_POPCONTEST_STATSD_PREFIX",
    "PYTHON_POPCONTEST_DEBUG", "PYTHON_POPCONTEST_DRY_RUN", "PYTHON_POPCONTEST_DISABLE",
]), st.text(max_size=30)))
def test_settings_never_raise(environ):
    s = settings_from_environ(environ)
    assert isinstance(s.problems, list)
    if not s.problems:
        assert prefix_problem(s.prefix) is None and 0 < s.port < 65536
