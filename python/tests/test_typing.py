"""The package is typed (py.typed, stubs for the extension): mypy --strict
accepts code that uses the API as documented, and catches code that misuses it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

USES_THE_API = """\
from pathlib import Path

from par_loader import AgentPackage, InstallFailed, PackageLoader, ParError


def load(loader: PackageLoader) -> Path:
    try:
        package: AgentPackage = loader.load_package("agent.apkg", agent_app_id="my-app")
    except InstallFailed as failed:
        errors: list[str] = failed.errors
        raise RuntimeError(errors) from failed
    except ParError as error:
        subject: str | None = error.subject
        raise RuntimeError(error.kind, subject) from error
    return package.venv_path


async def verified(loader: PackageLoader) -> bool | None:
    package = await loader.load_package_async(Path("agent.apkg"))
    return package.verified
"""

MISUSES_IT = """\
from par_loader import PackageLoader


def count(loader: PackageLoader) -> int:
    return loader.load_package("agent.apkg").venv_path
"""


def mypy(tmp_path: Path, *what: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "mypy", "--strict", "--cache-dir", str(tmp_path / "cache"), *what]
    return subprocess.run(argv, capture_output=True, text=True, cwd=tmp_path)


def test_mypy_strict_accepts_the_package(tmp_path):
    done = mypy(tmp_path, "-p", "par_loader")
    assert done.returncode == 0, done.stdout + done.stderr


def test_mypy_strict_accepts_code_using_the_api(tmp_path):
    (tmp_path / "use.py").write_text(USES_THE_API)
    done = mypy(tmp_path, "use.py")
    assert done.returncode == 0, done.stdout + done.stderr


def test_mypy_strict_catches_a_misuse(tmp_path):
    (tmp_path / "use.py").write_text(MISUSES_IT)
    done = mypy(tmp_path, "use.py")
    assert done.returncode == 1, done.stdout + done.stderr
    assert 'Incompatible return value type (got "Path", expected "int")' in done.stdout
