"""popcon_site.index: module -> distribution index over real directories."""

import os
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st
from packaging.utils import canonicalize_name

from popcon_site import index
from support import distributions as d
from support.environments import check_call

EXPECTED_ROOTS = {
    "acme_widgets": ("acme-widgets-pro", "1.2.0"),
    "acmens.alpha": ("acmens-alpha", "0.1"),
    "acmens.beta": ("acmens-beta", "0.2"),
    "deepns.one.two.leaf": ("deepns-leaf", "3.0"),
    "deepns.one.other": ("deepns-other", "1.0"),
    "earlylib": ("earlylib", "1.0"),
    "latelib": ("latelib", "1.0"),
    "sitelib": ("sitelib", "1.0"),
    "hpctool": ("hpc-tool", "2.1"),
    "homelib": ("home-private-lib", "0.0.1"),
    "survivor": ("survivor", "1.0"),
}


@pytest.fixture(scope="session")
def pip_tree(synthetic_wheels, tmp_path_factory) -> Path:
    """Every synthetic wheel installed by pip into one directory, as in a site-packages."""
    tree = tmp_path_factory.mktemp("pip-tree")
    check_call([sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps", "--target", tree,
                *synthetic_wheels.values()])
    return tree


def copy_tree(source: Path, target: Path) -> Path:
    import shutil

    shutil.copytree(source, target, symlinks=True)
    return target


# --- canonical names ---------------------------------------------------------------

@pytest.mark.parametrize("name", ["Acme.Widgets-Pro", "zope.interface", "Foo__Bar", "A-_.-B", "already-canon",
                                  "UPPER", "x", "a..b", "ruamel.yaml.clib"])
def test_canonical_name_examples_match_packaging(name):
    assert index.canonical_name(name) == canonicalize_name(name)


@given(st.text(alphabet="aAzZ09._-", min_size=1, max_size=30))
def test_canonical_name_matches_packaging_for_any_name(name):
    assert index.canonical_name(name) == canonicalize_name(name)


# --- scanning one directory ----------------------------------------------------------

def test_scan_of_a_pip_installed_directory(pip_tree):
    assert index.scan_directory(str(pip_tree)) == EXPECTED_ROOTS


def test_wheels_carry_no_top_level_txt(pip_tree):
    # Guards the test above: it must exercise the RECORD path, not top_level.txt.
    assert not list(pip_tree.glob("*.dist-info/top_level.txt"))


def test_egg_info_with_top_level_txt(tmp_path):
    d.write_egg_info(tmp_path, "Legacy.Egg", "0.3", d.EGG_MODULES, ["oldegg"], "3.11")
    assert index.scan_directory(str(tmp_path)) == {"oldegg": ("legacy-egg", "0.3")}


def test_egg_info_without_top_level_txt_uses_installed_files(tmp_path):
    info = d.write_egg_info(tmp_path, "Legacy.Egg", "0.3", d.EGG_MODULES, [], "3.11")
    (info / "top_level.txt").unlink()
    assert index.scan_directory(str(tmp_path)) == {"oldegg": ("legacy-egg", "0.3")}


def test_top_level_txt_naming_a_namespace_resolves_to_the_deeper_package(tmp_path):
    modules = {"nsx/gamma/__init__.py": "", "nsx/gamma/core.py": ""}
    d.write_egg_info(tmp_path, "nsx-gamma", "1.0", modules, ["nsx"], "3.11")
    assert index.scan_directory(str(tmp_path)) == {"nsx.gamma": ("nsx-gamma", "1.0")}


def test_single_module_and_extension_module_roots(tmp_path):
    dist = d.Dist("speedy", "1.0", {"speedy.py": "", "_speedy.cpython-311-x86_64-linux-gnu.so": ""}, "speedy")
    wheel = d.build_wheel(dist, tmp_path / "wheels")
    target = tmp_path / "site"
    check_call([sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps", "--target", target,
                wheel])
    assert index.scan_directory(str(target)) == {"speedy": ("speedy", "1.0"), "_speedy": ("speedy", "1.0")}


def test_stdlib_names_are_never_roots(tmp_path):
    # Old backports (typing, enum34) installed modules named like the stdlib.
    dist = d.Dist("typing-backport", "3.7", {"typing.py": "", "typing_backport_extra.py": ""}, "typing-backport")
    target = tmp_path / "site"
    check_call([sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps", "--target", target,
                d.build_wheel(dist, tmp_path / "wheels")])
    assert index.scan_directory(str(target)) == {"typing_backport_extra": ("typing-backport", "3.7")}


def test_broken_metadata_is_skipped_without_stopping_the_others(pip_tree, tmp_path):
    tree = copy_tree(pip_tree, tmp_path / "tree")
    d.write_broken_distributions(tree)
    assert index.scan_directory(str(tree)) == EXPECTED_ROOTS


def test_broken_metadata_alone(tmp_path):
    d.write_broken_distributions(tmp_path)
    assert index.scan_directory(str(tmp_path)) == {}
    names = {dist.name for dist in index.distributions(str(tmp_path))}
    assert names <= set(d.BROKEN_NAMES) | {"bad\udcffname"}


def test_distributions_lists_names_versions_roots_and_metadata(pip_tree, tmp_path):
    tree = copy_tree(pip_tree, tmp_path / "tree")
    (tree / "metaonly-2.0.dist-info").mkdir()
    (tree / "metaonly-2.0.dist-info" / "METADATA").write_text("Name: metaonly\nVersion: 2.0\n")
    found = {dist.name: dist for dist in index.distributions(str(tree))}
    assert found["acme-widgets-pro"].version == "1.2.0"
    assert found["acme-widgets-pro"].roots == ("acme_widgets",)
    assert Path(found["acme-widgets-pro"].metadata_path).name == "Acme_Widgets_Pro-1.2.0.dist-info"
    assert found["deepns-leaf"].roots == ("deepns.one.two.leaf",)
    # Provides no importable module: listed, with no roots.
    assert found["metaonly"].roots == ()
    assert all(name == canonicalize_name(name) for name in found)


def test_missing_directory_and_file_are_empty(tmp_path):
    assert index.scan_directory(str(tmp_path / "missing")) == {}
    (tmp_path / "archive.zip").write_bytes(b"PK\x05\x06" + b"\0" * 18)
    assert index.scan_directory(str(tmp_path / "archive.zip")) == {}


_COMPONENTS = ["a", "ns", "__pycache__", "a-1.0.dist-info", "..", "_p", "1x", "", "__init__"]
_FILES = ["__init__.py", "__init__.so", "__init__.txt", "m.py", "n.so", "z.pth", "w", "q.cpython-311-x86_64-linux-gnu.so"]
_PATHS = st.lists(st.sampled_from(_COMPONENTS), max_size=10).flatmap(
    lambda dirs: st.sampled_from(_FILES + _COMPONENTS).map(lambda name: "/".join([*dirs, name])))
_LINES = st.tuples(st.sampled_from(["", "/"]), _PATHS, st.sampled_from([",,", ",sha256=x,1", "", ",a/b,2"])).map("".join)


@settings(max_examples=300, deadline=None)
@given(blocks=st.lists(st.tuples(st.sampled_from(["a/", "ns/", "ns/p/", ""]), st.lists(_LINES, max_size=6)), max_size=5),
       shuffle=st.randoms(), end=st.sampled_from(["", "\n", "\n\n"]),
       namespaces=st.sampled_from([frozenset(), frozenset({"ns"}), frozenset({"a", "ns"})]))
def test_file_lists_in_blocks_give_what_their_sorted_lines_give(blocks, shuffle, end, namespaces):
    # The roots of a file list whose directories come in blocks are read off
    # the text itself; whatever the text, they are those of its sorted lines.
    lines = [prefix + line for prefix, group in blocks for line in group]
    if shuffle.random() < 0.3:
        shuffle.shuffle(lines)
    text = "\n".join(lines) + end
    files = index._FileList(text)
    expected, top, _ = index._parse_file_list(text)
    assert files.roots(namespaces) == index._roots_from_files(expected, namespaces)
    assert sorted(index._FileList(text).top()) == sorted(top)


@settings(max_examples=60, deadline=None)
@given(record=st.text(max_size=400), top_level=st.one_of(st.none(), st.text(max_size=60)))
def test_scanning_never_raises_on_arbitrary_metadata(record, top_level):
    with tempfile.TemporaryDirectory() as tmp:
        info = Path(tmp) / "fuzz-1.0.dist-info"
        info.mkdir()
        (info / "RECORD").write_text(record, errors="surrogateescape")
        if top_level is not None:
            (info / "top_level.txt").write_text(top_level, errors="surrogateescape")
        (Path(tmp) / "real_module.py").write_text("")
        roots = index.scan_directory(tmp)
        # Only names that exist in the directory can be claimed.
        assert set(roots) <= {"real_module"}


# --- the index over several directories ------------------------------------------------

def test_owner_walks_to_the_deepest_owner(pip_tree):
    idx = index.load([str(pip_tree)])
    assert idx.owner("deepns.one.two.leaf.sub") == ("deepns-leaf", "3.0")
    assert idx.owner("deepns.one.two.leaf") == ("deepns-leaf", "3.0")
    assert idx.owner("deepns.one.other") == ("deepns-other", "1.0")
    assert idx.owner("acmens.alpha.util") == ("acmens-alpha", "0.1")
    assert idx.owner("acme_widgets.gears") == ("acme-widgets-pro", "1.2.0")
    for unowned in ("deepns", "deepns.one", "deepns.one.two", "acmens", "acmens.gamma", "json", "localmod"):
        assert idx.owner(unowned) is None, unowned


def test_libraries_counts_each_distribution_once(pip_tree):
    idx = index.load([str(pip_tree)])
    modules = ["acme_widgets", "acme_widgets.gears", "acmens.alpha", "acmens.alpha.util", "acmens.beta", "json",
               "deepns.one.two.leaf.sub", "localmod"]
    assert idx.libraries(modules) == {"acme-widgets-pro": "1.2.0", "acmens-alpha": "0.1", "acmens-beta": "0.2",
                                      "deepns-leaf": "3.0"}


def test_earlier_directory_wins_like_sys_path(tmp_path, synthetic_wheels):
    first, second = tmp_path / "first", tmp_path / "second"
    newer = d.Dist("Survivor", "9.9", d.SURVIVOR.files, "survivor")
    for tree, wheel in ((first, synthetic_wheels["survivor"]), (second, d.build_wheel(newer, tmp_path / "w"))):
        check_call([sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps", "--target", tree,
                    wheel])
    assert index.load([str(first), str(second)]).owner("survivor") == ("survivor", "1.0")
    assert index.load([str(second), str(first)]).owner("survivor") == ("survivor", "9.9")


def test_cache_follows_changes_to_a_directory(pip_tree, tmp_path, synthetic_wheels):
    tree = tmp_path / "tree"
    tree.mkdir()
    assert index.load([str(tree)]).owner("survivor") is None
    check_call([sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps", "--target", tree,
                synthetic_wheels["survivor"]])
    # Directory mtimes have a coarse granularity; make the change visible for sure.
    stat = os.stat(tree)
    os.utime(tree, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert index.load([str(tree)]).owner("survivor") == ("survivor", "1.0")
    state = index.cache_state([str(tree)])
    assert any(str(tree) in entry["fresh"] for entry in state), state


def test_a_corrupt_cache_file_is_rebuilt(pip_tree):
    index.load([str(pip_tree)])
    written = [Path(entry["path"]) for entry in index.cache_state([str(pip_tree)]) if entry["fresh"]]
    assert written, "load() should have written a cache"
    written[0].write_bytes(b"\x00not marshal")
    assert index.load([str(pip_tree)]).owner("acme_widgets") == ("acme-widgets-pro", "1.2.0")
