"""Fault matrix, odd installs: egg-info, broken or missing RECORD and METADATA,
one distribution twice, editable installs, namespace packages, .pth-added
directories, zip imports, and modules that rewrite sys.modules.

Whatever the install looks like, the host process behaves exactly as it does
without popcon-site (support/faults.py), and every library that can be named
is still reported; one odd distribution never hides the others.
"""

import os
import zipfile

import pytest

from support import distributions as d
from support import faults
from support.environments import pip_target

ACME = d.ACME.canonical


def script(*modules, extra=""):
    """Imports ``modules``, writes to both streams and exits 3."""
    imports = "".join(f"import {m}\n" for m in modules)
    return f"import sys\n{imports}{extra}print('out')\nprint('err', file=sys.stderr)\nsys.exit(3)\n"


@pytest.fixture
def case(venv, listener, prefix, tmp_path):
    def case(code, *, path=(), env=None, expect=1, python=None):
        full_env = dict(env or {})
        if path:
            full_env["PYTHONPATH"] = os.pathsep.join(map(str, path))
        result = faults.twin([python or venv.python, "-c", code], listener=listener, prefix=prefix, env=full_env,
                             expect=expect, cwd=tmp_path)
        assert (result.quiet.rc, result.quiet.stdout, result.quiet.stderr) == (3, b"out\n", b"err\n"), result
        return result
    return case


def module(name, text="X = 1\n"):
    return {f"{name}/__init__.py": text}


# --- egg-info --------------------------------------------------------------------

def test_egg_info_directory(case, prefix):
    case(script("oldegg.core")).assert_reports(prefix.report(d.EGG_CANONICAL))


def test_egg_info_file_as_distutils_wrote_it(case, prefix, tmp_path):
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "filedist.py").write_text("X = 1\n")
    (tree / "filedist-1.0-py3.egg-info").write_text("Metadata-Version: 1.0\nName: filedist\nVersion: 1.0\n")
    case(script("filedist", "acme_widgets"), path=[tree]).assert_reports(prefix.report("filedist", ACME))


def test_egg_info_with_files_outside_and_no_top_level(case, prefix, tmp_path):
    tree = tmp_path / "tree"
    info = d.write_egg_info(tree, "Egg.Outside", "1.0", module("eggout"), [], "3")
    (info / "top_level.txt").unlink()
    (info / "installed-files.txt").write_text("../eggout/__init__.py\n../../../../bin/eggout-tool\n/etc/eggout.conf\n")
    case(script("eggout", "acme_widgets"), path=[tree]).assert_reports(prefix.report("egg-outside", ACME))


# --- RECORD and METADATA -----------------------------------------------------------

def test_record_missing(case, prefix, tmp_path):
    tree = tmp_path / "tree"
    faults.write_dist_info(tree, "norecord", "1.0", module("norecord"), record=False)
    case(script("norecord", "acme_widgets"), path=[tree]).assert_reports(prefix.report("norecord", ACME))


def test_record_missing_and_module_named_otherwise_hides_no_other_library(case, prefix, tmp_path):
    tree = tmp_path / "tree"
    faults.write_dist_info(tree, "Bare-Dist", "1.0", module("unrelated_name"), record=False)
    pip_target_survivor(tree)
    case(script("unrelated_name", "survivor"), path=[tree]).assert_reports(prefix.report("survivor"))


def pip_target_survivor(tree):
    faults.write_dist_info(tree, "Survivor", "1.0", {"survivor.py": "NAME = 'survivor'\n"})


def test_record_listing_files_outside_the_directory(case, prefix, tmp_path):
    tree = tmp_path / "tree"
    record = ("outrec/__init__.py,,\n../../../bin/outrec,,\n../../share/outrec/data.py,,\n"
              "../outside_pkg/__init__.py,,\noutrec-1.0.dist-info/RECORD,,\n")
    faults.write_dist_info(tree, "outrec", "1.0", module("outrec"), record=record)
    (tmp_path / "outside_pkg").mkdir()
    (tmp_path / "outside_pkg" / "__init__.py").write_text("")
    case(script("outrec"), path=[tree]).assert_reports(prefix.report("outrec"))


def test_record_with_absolute_paths(case, prefix, tmp_path):
    tree = tmp_path / "tree"
    files = module("abspkg")
    record = "".join(f"{tree / path},,\n" for path in files) + "/usr/bin/abs-tool,,\n/etc/abs.conf,,\n"
    faults.write_dist_info(tree, "Absolute-Record", "1.0", files, record=record)
    case(script("abspkg"), path=[tree]).assert_reports(prefix.report("absolute-record"))


def test_record_that_is_garbage(case, prefix, tmp_path):
    tree = tmp_path / "tree"
    faults.write_dist_info(tree, "garbagerec", "1.0", module("garbagerec"),
                           record="\x00\x01,,,\n\"unterminated\n" + "x" * 100000 + "\n")
    pip_target_survivor(tree)
    case(script("garbagerec", "survivor"), path=[tree]).assert_reports(prefix.report("garbagerec", "survivor"))


@pytest.mark.parametrize("metadata", [b"\xff\xfe\x00\x80garbage\n", b"", b"Metadata-Version: 2.1\nVersion: 1.0\n",
                                      b"Name:\nVersion:\n"], ids=["binary", "empty", "nameless", "blank-fields"])
def test_broken_or_nameless_metadata(case, prefix, tmp_path, metadata):
    tree = tmp_path / "tree"
    faults.write_dist_info(tree, "Broken.Meta", "1.0", module("brokenmeta"), metadata=metadata)
    pip_target_survivor(tree)
    case(script("brokenmeta", "survivor"), path=[tree]).assert_reports(prefix.report("broken-meta", "survivor"))


def test_metadata_missing_altogether(case, prefix, tmp_path):
    tree = tmp_path / "tree"
    info = faults.write_dist_info(tree, "nometa", "1.0", module("nometa"))
    (info / "METADATA").unlink()
    case(script("nometa", "acme_widgets"), path=[tree]).assert_reports(prefix.report("nometa", ACME))


def test_unreadable_and_odd_metadata_entries_next_to_a_good_one(case, prefix, tmp_path):
    tree = tmp_path / "tree"
    pip_target_survivor(tree)
    (tree / "dir-as-file-1.0.dist-info").write_text("not a directory")
    os.mkfifo(tree / "fifo-1.0.dist-info")
    fifo_info = faults.write_dist_info(tree, "fiforec", "1.0", module("fiforec"), record=False)
    os.mkfifo(fifo_info / "RECORD")
    os.mkfifo(fifo_info / "top_level.txt")
    (tree / "loop-1.0.dist-info").symlink_to(tree / "loop-1.0.dist-info")
    case(script("survivor", "fiforec"), path=[tree]).assert_reports(prefix.report("survivor", "fiforec"))


# --- the same distribution twice --------------------------------------------------

def test_same_distribution_twice_on_the_path_counts_once(case, prefix, tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    faults.write_dist_info(first, "Survivor", "1.0", {"survivor.py": ""})
    faults.write_dist_info(second, "Survivor", "2.0", {"survivor.py": ""})
    case(script("survivor"), path=[first, second]).assert_reports(prefix.report("survivor"))
    result = case(script("survivor"), path=[first, second], env={"PYTHON_POPCONTEST_VERSIONS": "1"})
    # The copy that Python imports, the first on the path, gives the version.
    result.assert_reports(f"{prefix.library('survivor')}|#version:1.0\n{prefix.denominator}".encode())


def test_same_distribution_twice_in_one_directory(case, prefix, tmp_path):
    tree = tmp_path / "tree"
    faults.write_dist_info(tree, "Survivor", "1.0", {"survivor.py": ""})
    faults.write_dist_info(tree, "survivor", "0.9", {"survivor.py": ""}, dist_info_name="survivor-0.9.dist-info")
    case(script("survivor"), path=[tree]).assert_reports(prefix.report("survivor"))


def test_venv_library_shadowed_by_a_copy_on_pythonpath(case, prefix, venv, synthetic_wheels, tmp_path):
    tree = tmp_path / "tree"
    pip_target(venv, tree, [synthetic_wheels[ACME]])
    case(script("acme_widgets"), path=[tree]).assert_reports(prefix.report(ACME))


# --- namespace packages -------------------------------------------------------------

def test_namespace_package_split_across_directories(case, prefix, tmp_path):
    tree = tmp_path / "tree"
    faults.write_dist_info(tree, "acmens-delta", "1.0", {"acmens/delta/__init__.py": ""})
    case(script("acmens.delta", "acmens.alpha"), path=[tree]).assert_reports(
        prefix.report("acmens-delta", "acmens-alpha"))
    case(script("acmens.delta"), path=[tree]).assert_reports(prefix.report("acmens-delta"))


PKGUTIL_INIT = "__path__ = __import__('pkgutil').extend_path(__path__, __name__)\n"


def test_pkgutil_style_namespace_shared_by_two_distributions(case, prefix, tmp_path):
    tree = tmp_path / "tree"
    faults.write_dist_info(tree, "pkgns-one", "1.0", {"pkgns/__init__.py": PKGUTIL_INIT, "pkgns/one/__init__.py": ""})
    faults.write_dist_info(tree, "pkgns-two", "1.0", {"pkgns/__init__.py": PKGUTIL_INIT, "pkgns/two/__init__.py": ""})
    case(script("pkgns.two"), path=[tree]).assert_reports(prefix.report("pkgns-two"))
    case(script("pkgns.one", "pkgns.two"), path=[tree]).assert_reports(prefix.report("pkgns-one", "pkgns-two"))


def test_pkgutil_style_namespace_split_across_directories(case, prefix, tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    faults.write_dist_info(first, "pkgns-one", "1.0", {"pkgns/__init__.py": PKGUTIL_INIT, "pkgns/one/__init__.py": ""})
    faults.write_dist_info(second, "pkgns-two", "1.0", {"pkgns/__init__.py": PKGUTIL_INIT,
                                                       "pkgns/two/__init__.py": ""})
    case(script("pkgns.two"), path=[first, second]).assert_reports(prefix.report("pkgns-two"))


def test_pkg_resources_style_namespace_with_nspkg_pth(case, prefix, tmp_path):
    # setuptools' old namespace_packages: no pkgres/__init__.py is installed,
    # a -nspkg.pth file creates the package at start-up instead.
    tree = tmp_path / "tree"
    for part in ("one", "two"):
        files = {f"pkgres/{part}/__init__.py": ""}
        record = f"pkgres/{part}/__init__.py,,\npkgres.{part}-1.0-py3.X-nspkg.pth,,\n"
        faults.write_dist_info(tree, f"pkgres.{part}", "1.0", files, record=record)
        (tree / f"pkgres.{part}-1.0-py3.X-nspkg.pth").write_text("import sys\n")
    case(script("pkgres.one"), path=[tree]).assert_reports(prefix.report("pkgres-one"))


# --- zip imports ------------------------------------------------------------------

def test_library_imported_from_a_zip_on_the_path(case, prefix, synthetic_wheels):
    # A wheel is a zip with its .dist-info inside; Python imports from it as is.
    wheel = synthetic_wheels[d.SURVIVOR.canonical]
    case(script("survivor", "acme_widgets"), path=[wheel]).assert_reports(prefix.report("survivor", ACME))


def test_zipped_egg_on_the_path(case, prefix, tmp_path):
    egg = tmp_path / "Zipped.Egg-1.0-py3.egg"
    with zipfile.ZipFile(egg, "w") as archive:
        archive.writestr("EGG-INFO/PKG-INFO", "Metadata-Version: 1.1\nName: Zipped.Egg\nVersion: 1.0\n")
        archive.writestr("EGG-INFO/top_level.txt", "zippedegg\n")
        archive.writestr("zippedegg/__init__.py", "X = 1\n")
    case(script("zippedegg"), path=[egg]).assert_reports(prefix.report("zipped-egg"))


def test_zipapp_bundling_several_distributions(case, prefix, tmp_path, synthetic_wheels):
    bundle = tmp_path / "bundle.pyz"
    with zipfile.ZipFile(bundle, "w") as archive:
        for name in (d.SURVIVOR.canonical, d.HPCTOOL.canonical):
            with zipfile.ZipFile(synthetic_wheels[name]) as wheel:
                for member in wheel.namelist():
                    archive.writestr(member, wheel.read(member))
        archive.writestr("bundled_local.py", "X = 1\n")
    case(script("survivor", "hpctool", "bundled_local"), path=[bundle]).assert_reports(
        prefix.report("survivor", "hpc-tool"))


def test_zip_without_metadata_and_a_broken_zip_on_the_path(case, prefix, tmp_path):
    plain = tmp_path / "plain.zip"
    with zipfile.ZipFile(plain, "w") as archive:
        archive.writestr("zipped_local.py", "X = 1\n")
    broken = tmp_path / "broken.zip"
    broken.write_bytes(b"PK\x03\x04 not really a zip")
    case(script("zipped_local", "acme_widgets"), path=[broken, plain]).assert_reports(prefix.report(ACME))


# --- sys.modules rewritten ----------------------------------------------------------

REWRITERS = {
    "module-replaces-itself": (
        "import acme_widgets, types\n"
        "class Hostile(types.ModuleType):\n"
        "    def __getattribute__(self, name):\n"
        "        raise RuntimeError('no attribute for you: ' + name)\n"
        "sys.modules['acme_widgets'] = Hostile('acme_widgets')\n"
    ),
    "non-string-keys": "import acme_widgets\nsys.modules[42] = sys\nsys.modules[b'bytes'] = sys\nsys.modules[None] = sys\n",
    "str-subclass-key": (
        "import acme_widgets\n"
        "class Name(str):\n"
        "    def partition(self, sep):\n"
        "        raise RuntimeError('partition')\n"
        "sys.modules[Name('odd_name')] = sys\n"
    ),
    "modules-without-file": (
        "import acme_widgets, types\n"
        "for i in range(200):\n"
        "    sys.modules['generated_%d' % i] = types.ModuleType('generated_%d' % i)\n"
    ),
    "dunder-names": "import acme_widgets\nsys.modules['__phantom__'] = sys\nsys.modules['.'] = sys\nsys.modules[''] = sys\n",
    # Names no codec can encode: lone surrogates, and one that is not a
    # filesystem name; each of them once dropped the whole report.
    "unencodable-names": (
        "import acme_widgets, types\n"
        "for name in ('\\ud800', 'a\\udfff.b', '\\udc80x', 'x\\x00y', '\\U0010ffff'):\n"
        "    sys.modules[name] = types.ModuleType('odd')\n"
    ),
    "hostile-spec-and-loader": (
        "import acme_widgets\n"
        "class Boom:\n"
        "    def __getattr__(self, name):\n"
        "        raise SystemExit(99)\n"
        "acme_widgets.__spec__ = Boom(); acme_widgets.__loader__ = Boom(); acme_widgets.__file__ = Boom()\n"
    ),
    "many-fake-entries": (
        "import acme_widgets\n"
        "for i in range(50000):\n"
        "    sys.modules['fake%d.sub' % i] = sys\n"
    ),
}


@pytest.mark.parametrize("rewrite", sorted(REWRITERS))
def test_modules_that_rewrite_sys_modules(case, prefix, rewrite):
    case(script(extra=REWRITERS[rewrite])).assert_reports(prefix.report(ACME))


def test_import_blocked_with_none_is_not_an_import(case, prefix):
    code = script(extra="import acme_widgets\nsys.modules['acmens.beta'] = None\nsys.modules['oldegg'] = None\n")
    case(code).assert_reports(prefix.report(ACME))


def test_library_that_removes_itself_from_sys_modules_hides_no_other(case, prefix):
    code = script(extra="import acmens.beta, acme_widgets\ndel sys.modules['acmens.beta'], sys.modules['acmens']\n")
    case(code).assert_reports(prefix.report(ACME))


def test_sys_path_replaced_with_odd_entries(case, prefix):
    code = script(extra="import acme_widgets\nsys.path[:] = [None, 3, b'bytes', '', '/nonexistent', '\\udcff']\n")
    case(code).assert_reports(prefix.report(ACME))
