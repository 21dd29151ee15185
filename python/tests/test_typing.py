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


def serve(loader: PackageLoader, package: AgentPackage) -> int | None:
    with loader.spawn(package, ["python", "server.py"], listen={"http": "127.0.0.1:0"}) as agent:
        ready: float = agent.wait_ready()
        host, port = agent.ports["http"]
        print(ready, host, port + 1)
    return agent.returncode


def reclaim(loader: PackageLoader) -> int:
    freed = 0
    for app in loader.list().apps:
        for deployment in app.deployments:
            if not deployment.current and not deployment.agents:
                freed += deployment.tree_bytes + deployment.venv_bytes
    return freed + loader.gc(keep=1, older_than=7 * 86400.0).bytes_freed
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
