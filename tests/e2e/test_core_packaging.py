"""The built wheel: its two root files, install, uninstall, editable install."""

import csv
import io
import re
import zipfile
from pathlib import Path

from support import distributions as d
from support.environments import check_call
from support.processes import run_python

ROOT_FILES = ("popcon_site.pth", "popcon_site.start")
REPO = Path(__file__).resolve().parents[2]


def _wheel_record(wheel):
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        record_name = next(n for n in names if n.endswith(".dist-info/RECORD"))
        record = [row[0] for row in csv.reader(io.StringIO(archive.read(record_name).decode()))]
        return archive, names, record, {n: archive.read(n) for n in ROOT_FILES if n in names}


def test_wheel_puts_both_activation_files_at_the_root_and_in_record(core_wheel):
    _, names, record, contents = _wheel_record(core_wheel)
    for name in ROOT_FILES:
        assert name in names, names
        assert name in record, record


def test_pth_is_one_ascii_import_line(core_wheel):
    pth = _wheel_record(core_wheel)[3]["popcon_site.pth"]
    text = pth.decode("ascii")
    lines = text.splitlines()
    assert len(lines) == 1 and lines[0].startswith("import "), text
    assert not pth.startswith(b"\xef\xbb\xbf")


def test_start_is_one_entry_point_line(core_wheel):
    text = _wheel_record(core_wheel)[3]["popcon_site.start"].decode("ascii")
    lines = text.splitlines()
    assert len(lines) == 1 and re.fullmatch(r"popcon_site(\.\w+)+:\w+", lines[0]), text
    assert lines[0] == "popcon_site._bootstrap:activate"


def test_wheel_has_no_runtime_dependencies_and_the_collector_extra(core_wheel):
    archive, names, _, _ = _wheel_record(core_wheel)
    metadata_name = next(n for n in names if n.endswith(".dist-info/METADATA"))
    with zipfile.ZipFile(core_wheel) as wheel:
        metadata = wheel.read(metadata_name).decode()
    requires = [line.split(":", 1)[1].strip() for line in metadata.splitlines() if line.startswith("Requires-Dist:")]
    # Whatever lands in every counted environment: nothing but popcon-site.
    assert requires and all(re.search(r"extra\s*==\s*['\"]collector['\"]", req) for req in requires), requires
    assert "Provides-Extra: collector" in metadata


def test_installed_root_files_are_in_site_packages(venv):
    for name in ROOT_FILES:
        assert (venv.site_packages / name).is_file()


def test_pip_uninstall_removes_both_root_files_and_stops_reporting(scratch_venv, listener, prefix):
    for name in ROOT_FILES:
        assert (scratch_venv.site_packages / name).is_file()
    result = run_python(scratch_venv.python, ["-c", "import acme_widgets"], listener=listener, prefix=prefix,
                        expect=1)
    assert result.datagrams == [prefix.report(d.ACME.canonical)], result

    scratch_venv.pip("uninstall", "--yes", "popcon-site")

    for name in ROOT_FILES:
        assert not (scratch_venv.site_packages / name).exists(), name
    assert not (scratch_venv.site_packages / "popcon_site").exists()
    result = run_python(scratch_venv.python, ["-c", "import acme_widgets"], listener=listener, prefix=prefix)
    assert (result.rc, result.stderr, result.datagrams) == (0, "", []), result


def test_editable_install_activates_too(scratch_venv, listener, prefix):
    scratch_venv.pip("uninstall", "--yes", "popcon-site")
    scratch_venv.pip("install", "--quiet", "--editable", str(REPO))
    assert (scratch_venv.site_packages / "popcon_site.pth").is_file()
    where = check_call([scratch_venv.python, "-c", "import popcon_site; print(popcon_site.__file__)"])
    assert where.strip().startswith(str(REPO)), where
    result = run_python(scratch_venv.python, ["-c", "import acme_widgets"], listener=listener, prefix=prefix,
                        expect=1)
    assert result.datagrams == [prefix.report(d.ACME.canonical)], result
