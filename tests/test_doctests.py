"""The examples in the docstrings of the pure modules are true."""

import doctest
import importlib

import pytest

MODULES = ["popcon_site.wire", "popcon_site.config", "popcon_site.reporter", "popcon_site.index",
           "popcon_site.mounts", "popcon_site.collector.lines", "popcon_site.collector.mapping",
           "popcon_site.collector.server"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    failed, attempted = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert attempted and not failed, f"{failed} of {attempted} examples failed in {name}"
