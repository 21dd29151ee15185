"""The spec's integration test: an APKG built "using PAK" (pixell-sdk, at
the pins in pins/pak.txt) loads, and its code imports from the venv."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from conftest import run

PINS = Path(__file__).parent / "pins"
ATTEMPTS = 3


def fetch(argv: list[str | os.PathLike[str]], work: Path) -> None:
    """A fetch from the package registry, tried a few times, with the tests' own pip cache."""
    env = {**os.environ, "PIP_CACHE_DIR": str(work / "pip-cache"), "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    last = ""
    for _ in range(ATTEMPTS):
        done = subprocess.run(argv, capture_output=True, text=True, env=env)
        if done.returncode == 0:
            return
        last = done.stdout + done.stderr
    pytest.fail(f"{argv} failed {ATTEMPTS} times; last:\n{last}")


def prepared(directory: Path, pins: Path, prepare) -> Path:
    """``directory`` as ``prepare`` makes it from ``pins``, made again only when the pins change."""
    marker = directory / f".ready-{hashlib.sha256(pins.read_bytes()).hexdigest()[:16]}"
    if not marker.exists():
        shutil.rmtree(directory, ignore_errors=True)
        prepare(directory)
        marker.touch()
    return directory


@pytest.fixture(scope="session")
def pixell(work: Path) -> Path:
    """The `pixell` command of PAK, installed into a venv of its own."""

    def install(venv: Path) -> None:
        run([sys.executable, "-m", "venv", venv], cwd=work)
        fetch([venv / "bin" / "python", "-m", "pip", "install", "-q", "-r", PINS / "pak.txt"], work)

    return prepared(work / "pak-venv", PINS / "pak.txt", install) / "bin" / "pixell"


@pytest.fixture(scope="session")
def pak_agent_wheels(work: Path) -> Path:
    """Wheels of what the agent `pixell init` makes requires, so loading it installs offline."""

    def download(directory: Path) -> None:
        fetch(
            [sys.executable, "-m", "pip", "download", "-q", "--only-binary=:all:", "--no-deps",
             "-d", directory, "-r", PINS / "pak-agent.txt"],
            work,
        )

    return prepared(work / "pak-agent-wheels", PINS / "pak-agent.txt", download)


def test_an_apkg_built_with_pak_loads_and_its_code_imports(tmp_path, make_loader, pixell, pak_agent_wheels):
    # PAK's own state goes to a home of the test's, never the user's.
    env = {**os.environ, "HOME": str(tmp_path / "home")}
    run([pixell, "init", "pak-agent"], cwd=tmp_path, env=env)
    project = tmp_path / "pak-agent"
    # `pixell build` insists on a .env; the template's placeholders do.
    shutil.copy(project / ".env.example", project / ".env")
    run([pixell, "build"], cwd=project, env=env)
    [apkg] = project.glob("*.apkg")

    loader = make_loader("uv", find_links=(str(pak_agent_wheels),))
    package = loader.load_package(apkg, agent_app_id="pak-app")

    # PAK's template (pinned) writes `version: '1.0'` into agent.yaml.
    assert package.package_id == "pak-agent@1.0"
    assert package.installed_as_package is True
    assert package.verified is True
    assert package.requirements_count >= 3
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = run(
        [package.python_path, "-c", "import fastapi, uvicorn, watchdog\nfrom src.main import handler\nprint(handler(7))"],
        cwd=elsewhere,
    )
    assert "Hello from handler" in done.stdout


def test_a_pak_project_with_pyproject_and_servers_loads_with_them_typed(tmp_path, make_loader, pixell, pak_agent_wheels):
    """A project as PAK's newer packages come: ``pyproject.toml`` (as ``uv
    init`` writes it) instead of ``requirements.txt``, an ``http_server``,
    ``a2a.http_server``, ``permissions`` and ``data_access``; ``pixell build``
    adds ``setup.py`` and ``deploy.json``."""
    env = {**os.environ, "HOME": str(tmp_path / "home")}
    project = tmp_path / "served-agent"
    (project / "src").mkdir(parents=True)
    (project / "src" / "__init__.py").write_text("")
    (project / "src" / "main.py").write_text("def handler(request):\n    return request\n")
    (project / "src" / "server.py").write_text(
        "import os\n\n"
        "async def app(scope, receive, send):\n"
        "    body = f\"{os.environ['GREETING']} {os.environ['BASE_PATH']} {os.environ['AGENT_APP_ID']}\"\n"
        "    await send({'type': 'http.response.start', 'status': 200, 'headers': []})\n"
        "    await send({'type': 'http.response.body', 'body': body.encode()})\n"
    )
    (project / ".env").write_text("API_TOKEN=placeholder\n")
    (project / "pyproject.toml").write_text(
        '[project]\nname = "served-agent"\nversion = "0.2.0"\ndescription = "An agent with a server"\n'
        'requires-python = ">=3.9"\ndependencies = ["uvicorn"]\n'
    )
    (project / "agent.yaml").write_text(
        "name: served-agent\ndisplay_name: Served Agent\ndescription: An agent with a server\n"
        "author: Test\nlicense: MIT\nmetadata:\n  version: 0.2.0\n"
        "entrypoint: src.main:handler\nhttp_server: src.server:app\n"
        "a2a:\n  http_server: src.server:app\n"
        "environment:\n  GREETING: ${GREETING:-hello}\n"
        "permissions:\n  required: [files.read]\n"
        "data_access:\n  oauth_providers: [google]\n  external_apis: [https://api.example.com]\n"
    )
    run([pixell, "build"], cwd=project, env=env)
    [apkg] = project.glob("*.apkg")

    loader = make_loader("uv", find_links=(str(pak_agent_wheels),))
    package = loader.load_package(apkg, agent_app_id="served")

    assert package.verified is True
    assert package.http_server == "src.server:app"
    assert package.a2a_http_server == "src.server:app"
    assert package.permissions is not None and package.permissions.required == ("files.read",)
    assert package.data_access is not None and package.data_access.oauth_providers == ("google",)
    assert package.data_access.user_data == ()
    assert package.deploy is not None
    assert package.deploy.expose == ("a2a",)
    assert package.deploy.ports == {"a2a": 50051}
    assert package.deploy.multiplex is True
    assert package.deploy.environment == {"GREETING": "${GREETING:-hello}"}
    assert (package.path / "pyproject.toml").is_file()
    assert not (package.path / "requirements.txt").exists()

    # No command: the manifest's http_server, under the venv's uvicorn.
    with loader.spawn(package, listen={"rest": "127.0.0.1:0"}, sandbox="bwrap", base_path="/agents/served") as agent:
        agent.wait_ready()
        host, port = agent.ports["rest"]
        with urllib.request.urlopen(f"http://{host}:{port}/", timeout=10) as answer:
            assert answer.read().decode() == "hello /agents/served served"
