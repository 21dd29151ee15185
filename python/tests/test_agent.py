"""Starting a loaded agent from Python (``PackageLoader.spawn``): a real
standard-library HTTP agent on the socket par binds, in the real sandbox."""

from __future__ import annotations

import asyncio
import json
import stat
import urllib.request
from pathlib import Path

import pytest
from conftest import write_apkg

from par_loader import AgentProcess, SpawnFailed

#: The Rust tests' HTTP agent: serves on fd 3, the socket par bound for it;
#: ``/env`` answers its environment, anything else ``ok {path}``.
SERVER = (Path(__file__).parents[2] / "tests" / "src" / "agent_server.py").read_text()

MANIFEST = "name: served\nversion: 1.0.0\nentrypoint: server:main\nenvironment:\n  GREETING: hello\n"

def get(agent: AgentProcess, path: str) -> str:
    host, port = agent.ports["http"]
    with urllib.request.urlopen(f"http://{host}:{port}{path}", timeout=10) as answer:
        body: str = answer.read().decode()
    return body


def test_spawn_serves_in_the_sandbox_until_stopped_and_shows_as_in_use(tmp_path, make_loader):
    loader = make_loader("uv", sandbox="bwrap")
    package = loader.load_package(write_apkg(tmp_path / "in" / "served.apkg", {"agent.yaml": MANIFEST, "server.py": SERVER}))

    with loader.spawn(
        package,
        ["python", "server.py"],
        listen={"http": "127.0.0.1:0"},
        health="http:/health",
        env={"API_TOKEN": "py-secret-51c2"},
        sandbox="bwrap",
        stop_grace=2,
    ) as agent:
        assert agent.sandbox == "bwrap"
        assert 0 < agent.wait_ready() < 60
        assert agent.returncode is None
        assert get(agent, "/hello") == "ok /hello"
        env = json.loads(get(agent, "/env"))
        assert (env["GREETING"], env["API_TOKEN"]) == ("hello", "py-secret-51c2")
        [app] = loader.list().apps
        assert app.deployments[0].agents == (agent.pid,)
    # Python dies of the SIGTERM; bubblewrap reports 128 + 15.
    assert agent.returncode == 143
    assert loader.list().apps[0].deployments[0].agents == ()


def test_spawn_refuses_a_variable_a_caller_may_not_set_and_waits_off_the_loop(tmp_path, make_loader):
    loader = make_loader("uv", sandbox="bwrap")
    package = loader.load_package(write_apkg(tmp_path / "in" / "served.apkg", {"agent.yaml": MANIFEST, "server.py": SERVER}))

    with pytest.raises(SpawnFailed) as refused:
        loader.spawn(package, ["python", "server.py"], env={"PAR_PORT_HTTP": "1"}, sandbox="bwrap")
    assert (refused.value.kind, refused.value.subject) == ("env-refused", "PAR_PORT_HTTP")

    async def serve() -> int | None:
        agent = loader.spawn(package, ["python", "server.py"], listen={"http": "127.0.0.1:0"}, sandbox="bwrap")
        await agent.wait_ready_async()
        assert get(agent, "/x") == "ok /x"
        return await agent.stop_async(grace=2)

    assert asyncio.run(serve()) == 143


def test_spawn_serves_on_a_unix_socket_par_makes_and_removes(tmp_path, make_loader):
    loader = make_loader("uv", sandbox="bwrap")
    package = loader.load_package(write_apkg(tmp_path / "in" / "unix.apkg", {"agent.yaml": MANIFEST, "server.py": SERVER}))
    socket_path = tmp_path / "run" / "rest.sock"
    socket_path.parent.mkdir()
    with loader.spawn(
        package, ["python", "server.py"], listen={"rest": f"unix:{socket_path}"}, health="rest:/health", sandbox="bwrap"
    ) as agent:
        agent.wait_ready()
        assert agent.unix_sockets == {"rest": socket_path}
        assert agent.ports == {}
        assert stat.S_ISSOCK(socket_path.lstat().st_mode)
        assert stat.S_IMODE(socket_path.lstat().st_mode) == 0o660
    assert not socket_path.exists()
