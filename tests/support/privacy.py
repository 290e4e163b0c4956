"""A user's world for the privacy tests: a home directory full of telling names.

Everything here is named so that a leak is easy to spot: the user, the
project, the local modules, the secrets in the environment and in argv.
None of these strings may ever appear in a datagram.
"""

from __future__ import annotations

import json
import re
import secrets
import socket
from dataclasses import dataclass
from pathlib import Path

from . import distributions as d
from .environments import Venv, check_call
from .processes import setup_environ

# Installed with `pip install --user` into a private PYTHONUSERBASE: its name
# is the user's business, so it is counted only with INCLUDE_USER.
USERLIB = d.Dist(
    name="Jdoe.Private-Userlib",
    version="0.0.7",
    canonical="jdoe-private-userlib",
    files={"jdoe_userlib/__init__.py": "NAME = 'userlib'\n"},
)

USER_NAME = "jdoe-secret-user"
PROJECT = "secret_project_acme"
LOCAL_MODULE = "acme_internal_payroll"
LOCAL_PACKAGE = "acme_private_pkg"
# A metadata directory left in the project directory (an old `setup.py
# develop`): sys.path[0] is the user's own code, never an installed library.
LOCAL_DIST = "acme-local-checkout"

MAIN_SCRIPT = f"""
import os, sys
import {LOCAL_MODULE}
from {LOCAL_PACKAGE} import ledger
import acme_widgets, hpctool, homelib, jdoe_userlib
print("main", {LOCAL_MODULE}.SALARY, ledger.ROWS, acme_widgets.VALUE, hpctool.NAME, homelib.NAME, jdoe_userlib.NAME)
print("args", len(sys.argv), file=sys.stderr)
sys.exit(int(os.environ.get("ACME_EXIT_CODE", "0")))
"""

# The common head of a script that ships its own plugin directory: sys.path
# changes before the first import, so the script's directory is not
# sys.path[0] any more when the first import happens.
LAUNCHER = "secret_project_acme_launcher"
LAUNCHER_SCRIPT = f"""
import os, sys
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "plugins"))
import {LOCAL_MODULE}, acme_widgets, hpctool
print("launched", {LOCAL_MODULE}.SALARY)
"""


@dataclass(frozen=True)
class UserWorld:
    home: Path
    project: Path          # the cwd of the processes, holds the __main__ script and local code
    shared_project: Path   # the same project outside the home directory
    home_tree: Path        # PYTHONPATH directory under the home directory
    system_tree: Path      # PYTHONPATH directory outside it, as an HPC module tree
    user_base: Path        # PYTHONUSERBASE
    secret_env: dict[str, str]
    secret_argv: list[str]

    @property
    def script(self) -> Path:
        return self.project / f"{PROJECT}.py"

    def environ(self, **extra: str | None) -> dict[str, str | None]:
        env: dict[str, str | None] = {
            "HOME": str(self.home),
            "USER": USER_NAME,
            "LOGNAME": USER_NAME,
            "PYTHONUSERBASE": str(self.user_base),
            "PYTHONPATH": f"{self.home_tree}:{self.system_tree}",
            **self.secret_env,
        }
        env.update(extra)
        return env

    def to_json(self) -> str:
        data = {k: str(v) for k, v in vars(self).items() if isinstance(v, Path)}
        return json.dumps({**data, "secret_env": self.secret_env, "secret_argv": self.secret_argv})

    @classmethod
    def from_json(cls, text: str) -> "UserWorld":
        data = json.loads(text)
        return cls(**{k: v if k.startswith("secret_") else Path(v) for k, v in data.items()})

    def forbidden(self) -> list[str]:
        """Strings that must never leave a process: paths, names, secrets."""
        words = [
            str(self.home), str(self.project), str(self.shared_project), str(self.home_tree), str(self.system_tree), str(self.user_base),
            USER_NAME, PROJECT, LAUNCHER, LOCAL_MODULE, LOCAL_PACKAGE, "ledger", LOCAL_DIST, "acme_widgets",
            socket.gethostname(), "/", "\\", "=", " ", "@", "#",
        ]
        words += list(self.secret_env.values()) + self.secret_argv
        return [w for w in words if w]


def _write_project(project: Path) -> None:
    project.mkdir(parents=True)
    (project / f"{PROJECT}.py").write_text(MAIN_SCRIPT)
    (project / f"{LAUNCHER}.py").write_text(LAUNCHER_SCRIPT)
    (project / "plugins").mkdir()
    (project / f"{LOCAL_MODULE}.py").write_text("SALARY = 12345\n")
    (project / LOCAL_PACKAGE).mkdir()
    (project / LOCAL_PACKAGE / "__init__.py").write_text("")
    (project / LOCAL_PACKAGE / "ledger.py").write_text("ROWS = 3\n")
    local_info = project / f"{LOCAL_DIST.replace('-', '_')}-1.0.dist-info"
    local_info.mkdir()
    (local_info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {LOCAL_DIST}\nVersion: 1.0\n")
    (local_info / "RECORD").write_text(f"{LOCAL_MODULE}.py,,\n{LOCAL_PACKAGE}/__init__.py,,\n")


def make_user_world(base: Path, venv: Venv, wheels: dict[str, Path], userlib_wheel: Path) -> UserWorld:
    token = secrets.token_hex(8)
    home = base / "home" / USER_NAME
    project = home / "src" / PROJECT
    # The same project checked out in a shared directory outside any home.
    shared_project = base / "srv" / "teams" / PROJECT
    for directory in (project, shared_project):
        _write_project(directory)

    home_tree = home / "pylib"
    system_tree = base / "opt" / "modules" / "python"
    for target, dist in ((home_tree, d.HOMELIB), (system_tree, d.HPCTOOL)):
        venv.pip("install", "--quiet", "--no-index", "--no-deps", "--target", str(target), str(wheels[dist.canonical]))

    user_base = base / "userbase"
    env = setup_environ()
    env["PYTHONUSERBASE"] = str(user_base)
    check_call([venv.python, "-m", "pip", "--no-input", "install", "--quiet", "--no-index", "--no-deps", "--user",
                str(userlib_wheel)], env=env)

    secret_env = {
        "ACME_API_TOKEN": f"sk-live-{token}",
        "AWS_SECRET_ACCESS_KEY": f"wJalrXUtnFEMI{token}",
        "DATABASE_URL": f"postgres://admin:pw{token}@db.acme.internal/payroll",
    }
    secret_argv = [f"--password=hunter2{token}", f"--customer=Globex{token}", f"/srv/acme/{token}/input.csv"]
    return UserWorld(home, project, shared_project, home_tree, system_tree, user_base, secret_env, secret_argv)


def contract_line(prefix: str) -> re.Pattern[str]:
    """The only line shapes a report may hold: a library counter (group 1 is
    the name) or the denominator (group 1 is None)."""
    parent = prefix.rsplit(".", 1)[0]
    return re.compile(rf"\A(?:{re.escape(prefix)}\.([a-z0-9-]+)|{re.escape(parent)}\.reports):1\|c\Z")


VISIBLE_DISTRIBUTIONS = """
import importlib.metadata as m, re, sys
for dist in m.distributions():
    name = dist.metadata["Name"]
    if name:
        print(re.sub(r"[-_.]+", "-", name).lower())
"""
