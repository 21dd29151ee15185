"""Fixtures for the par_loader tests: real APKGs built here, real venvs and
real pip and uv, installing offline from the wheelhouse the Rust tests use,
with caches of the tests' own. Run through python/tests/run, which builds
the extension and fetches the pinned tools."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import zipfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from par_loader import PackageLoader

AGENT_YAML = """\
name: test-agent
version: 1.0.0
description: Agent used by par_loader's tests.
entrypoint: app.main:agent
runtime: python3.11
"""

SETUP_PY = (
    "from setuptools import setup, find_packages\n"
    "setup(name='test-agent', version='1.0.0', packages=find_packages())\n"
)

#: The spec's agent: `agent.yaml`, `setup.py`, `requirements.txt`, and root-level `core/` and `app/`.
VALID_AGENT: dict[str, str] = {
    "agent.yaml": AGENT_YAML,
    "setup.py": SETUP_PY,
    "requirements.txt": "# no external dependencies\n",
    "core/__init__.py": "",
    "core/langchain_util.py": "def model_default():\n    return 'test-model'\n",
    "app/__init__.py": "",
    "app/main.py": "from core.langchain_util import model_default\nagent = model_default()\n",
}


def write_apkg(path: Path, files: Mapping[str, str | bytes]) -> Path:
    """An APKG (a zip) at ``path`` holding ``files``, names as given."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return path


def agent(changes: Mapping[str, str | None] | None = None) -> dict[str, str]:
    """The spec's agent with files replaced (a value) or removed (``None``)."""
    files = dict(VALID_AGENT)
    for name, data in (changes or {}).items():
        if data is None:
            files.pop(name, None)
        else:
            files[name] = data
    return files


@pytest.fixture(scope="session")
def tools() -> dict[str, str]:
    """Where the pinned uv and the wheelhouse are (fetched by python/tests/run)."""
    raw = os.environ.get("PAR_TEST_TOOLS")
    if not raw:
        pytest.exit("run these tests with python/tests/run: it builds par_loader and fetches their tools", 2)
    found: dict[str, str] = json.loads(raw)
    return found


@pytest.fixture(scope="session")
def work() -> Path:
    """The tests' own directory under target/: caches, PAK's venv, downloads."""
    return Path(os.environ.get("PAR_TEST_WORK", "target/python-tests")).absolute()


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "root"


@pytest.fixture
def make_loader(root: Path, tools: dict[str, str], work: Path) -> Callable[..., PackageLoader]:
    """A loader rooted in the test's directory, installing offline from the wheelhouse."""

    def make(installer: str = "uv", find_links: tuple[str, ...] = (), **options: Any) -> PackageLoader:
        return PackageLoader(
            root,
            installer=installer,
            uv=tools["uv"],
            no_index=True,
            find_links=[tools["wheelhouse"], *find_links],
            installer_cache=work / "caches" / "installers",
            component_cache=work / "caches" / "par",
            **options,
        )

    return make


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[str]:
    """The reference OCI registry (``docker-registry``, which tests/run
    installs) on 127.0.0.1, its storage in the test's directory; yields
    ``HOST:PORT``. Ready when it logs that it listens; a port another
    process took first is tried again with another."""
    directory = tmp_path / "registry"
    directory.mkdir()
    log_path = directory / "registry.log"
    for _ in range(5):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        config = directory / "config.yml"
        config.write_text(
            "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n"
            f"    rootdirectory: {directory / 'storage'}\nhttp:\n  addr: 127.0.0.1:{port}\n  secret: par-tests\n"
        )
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                ["docker-registry", "serve", str(config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env={"PATH": os.environ["PATH"], "HOME": str(directory), "TMPDIR": str(directory)},
            )
        deadline = time.monotonic() + 20
        while f"listening on 127.0.0.1:{port}" not in log_path.read_text(errors="replace"):
            if process.poll() is not None or time.monotonic() > deadline:
                break
            time.sleep(0.02)
        else:
            try:
                yield f"127.0.0.1:{port}"
            finally:
                process.kill()
                process.wait()
            return
        process.kill()
        process.wait()
        if "address already in use" not in log_path.read_text(errors="replace"):
            break
    raise RuntimeError(f"the registry did not start:\n{log_path.read_text(errors='replace')}")


def run(argv: list[str | os.PathLike[str]], cwd: Path, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Runs ``argv`` and returns what it did, failing the test with its output if it failed."""
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, **kwargs)
    assert done.returncode == 0, f"{argv} failed:\n{done.stdout}\n{done.stderr}"
    return done


def names_in(path: Path) -> list[str]:
    """The names in a directory, sorted (none when it does not exist)."""
    return sorted(p.name for p in path.iterdir()) if path.is_dir() else []
