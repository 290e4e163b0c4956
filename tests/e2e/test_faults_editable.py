"""Fault matrix, installs made by real installers: PEP 660 editable installs
through setuptools (flat and src layouts) and hatchling, a legacy
``.egg-link`` develop install, a directory added by a ``.pth`` file, and a
``.pth`` that puts a re-entrant finder ahead of ours.
"""

import pytest

import conftest
from support import distributions as d
from support import fault_installs as fi
from support import faults

ACME = d.ACME.canonical


def editable_wheels_once(shared_dir):
    """The editable wheels of support/fault_installs.EDITABLE, built once per run."""
    def build(target):
        wheels_dir = fi.backend_wheels(conftest.REPO / ".cache" / "build-backends")
        fi.build_editable_wheels(target, wheels_dir)
    target = conftest.build_once(shared_dir, "fault-editable-wheels", build)
    wheels = {}
    for key, (canonical, _, _) in fi.EDITABLE.items():
        found = [w for w in (target / "wheels").glob("*.whl") if w.name.lower().startswith(canonical.replace("-", "_"))]
        assert len(found) == 1, (key, sorted((target / "wheels").iterdir()))
        wheels[key] = found[0]
    return wheels


@pytest.fixture(scope="session")
def odd_venv(interp, shared_dir, core_wheel, synthetic_wheels):
    """A venv with every odd install of support/fault_installs.py, built once per interpreter."""
    editable_wheels = editable_wheels_once(shared_dir)
    steps = [
        lambda venv: fi.add_editable_installs(venv, editable_wheels),
        fi.add_legacy_develop_install,
        fi.add_reentrant_finder,
        lambda venv: fi.add_pth_directory(venv, synthetic_wheels[d.SURVIVOR.canonical]),
        fi.check_installed,
    ]
    wheels = [core_wheel] + [synthetic_wheels[dist.canonical] for dist in d.VENV_DISTS]
    return conftest._shared_venv(shared_dir, f"fault-odd-venv-{interp.id}", interp, wheels, customise=steps)


@pytest.fixture
def case(odd_venv, listener, prefix, tmp_path):
    def case(*modules, expect=1, env=None):
        imports = "".join(f"import {m}\n" for m in modules)
        code = f"import sys\n{imports}print('out')\nprint('err', file=sys.stderr)\nsys.exit(3)\n"
        result = faults.twin([odd_venv.python, "-c", code], listener=listener, prefix=prefix, env=env,
                             expect=expect, cwd=tmp_path)
        assert (result.quiet.rc, result.quiet.stdout, result.quiet.stderr) == (3, b"out\n", b"err\n"), result
        return result
    return case


@pytest.mark.parametrize("kind", sorted(fi.EDITABLE))
def test_pep660_editable_install(case, prefix, kind):
    canonical, module, _ = fi.EDITABLE[kind]
    case(module).assert_reports(prefix.report(canonical))


def test_all_editable_installs_together_with_a_regular_one(case, prefix):
    modules = [module for _, module, _ in fi.EDITABLE.values()]
    canonicals = [canonical for canonical, _, _ in fi.EDITABLE.values()]
    case(*modules, "acme_widgets").assert_reports(prefix.report(*canonicals, ACME))


def test_legacy_egg_link_develop_install(case, prefix):
    canonical, module = fi.LEGACY
    case(module).assert_reports(prefix.report(canonical))


def test_directory_added_by_a_pth_file(case, prefix):
    canonical, module = fi.PTH_ADDED
    case(module, "acme_widgets").assert_reports(prefix.report(canonical, ACME))


def test_editable_project_run_from_its_own_checkout(case, prefix, odd_venv, listener, tmp_path, shared_dir):
    # Developers run their editable project from its checkout: the project's
    # directory is then also sys.path[0].
    canonical, module, _ = fi.EDITABLE["setuptools-flat"]
    project = shared_dir / "fault-editable-wheels" / "projects" / "setuptools-flat"
    code = f"import sys\nimport {module}\nprint('out')\nsys.exit(3)\n"
    script = tmp_path / "run.py"
    script.write_text(code)
    result = faults.twin([odd_venv.python, "-c", code], listener=listener, prefix=prefix, expect=1, cwd=project)
    result.assert_reports(prefix.report(canonical))


def test_finder_ahead_of_ours_that_imports_inside_find_spec(case, prefix, odd_venv):
    # The first import after start-up (acme_widgets) re-enters our one-shot
    # finder through the nested import; the process must still report once.
    assert "zz_reentrant_finder.pth" in {p.name for p in odd_venv.site_packages.iterdir()}
    case("acme_widgets").assert_reports(prefix.report(ACME))
