"""The spec's tests of the loader, against the real extension: real APKGs,
real venvs, real pip and uv, offline."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import sys
import time
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pytest's own TOML reader
    import tomli as tomllib

import pytest
from conftest import AGENT_YAML, agent, names_in, run, write_apkg

import par_loader
from par_loader import (
    AgentPackage,
    HostError,
    InstallFailed,
    InvalidInput,
    NotFound,
    PackageLoader,
    PackageRefused,
    ParError,
    RegistrySource,
)

INSTALLERS = ["pip", "uv"]


@pytest.mark.parametrize("installer", INSTALLERS)
def test_setup_py_is_installed_editable_and_core_imports_from_anywhere(tmp_path, make_loader, installer):
    apkg = write_apkg(tmp_path / "in" / "agent.apkg", agent())
    package = make_loader(installer).load_package(apkg, agent_app_id="test-app")

    assert package.installed_as_package is True
    assert package.verified is True
    assert package.installer == installer
    assert package.app_id == "test-app"
    assert package.package_id == "test-agent@1.0.0"
    assert package.manifest["entrypoint"] == "app.main:agent"
    # Run from a directory that is neither the package nor its parent: only
    # the editable install can make `core` importable there.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = run(
        [package.python_path, "-c", "import core, app.main; print(core.__file__); print(app.main.agent)"],
        cwd=elsewhere,
    )
    core_file, model = done.stdout.split()
    assert Path(core_file).is_relative_to(package.path)
    assert model == "test-model"
    # What the venv holds, as a PEP 751 lock: the agent itself, editable, from the package directory.
    lock = tomllib.loads(package.lock.read_text())
    assert package.lock == package.venv_path / "pylock.toml"
    [agent_entry] = [p for p in lock["packages"] if p["name"] == "test-agent"]
    assert agent_entry["directory"] == {"path": ".", "editable": True}


@pytest.mark.parametrize("installer", INSTALLERS)
def test_a_package_without_setup_py_still_loads(tmp_path, make_loader, installer):
    apkg = write_apkg(tmp_path / "in" / "old.apkg", agent({"setup.py": None}))
    package = make_loader(installer).load_package(apkg)

    assert package.installed_as_package is False
    assert package.venv_path.is_dir()
    # Old packages still import from their own directory, as before the spec.
    run([package.python_path, "-c", "import core.langchain_util"], cwd=package.path)


@pytest.mark.parametrize("installer", INSTALLERS)
def test_a_broken_setup_py_raises_install_failed_with_the_installers_stderr(tmp_path, make_loader, root, installer):
    broken = "import sys\nsys.stderr.write('setup-broken-7f3a\\n')\nraise SystemExit(1)\n"
    apkg = write_apkg(tmp_path / "in" / "broken.apkg", agent({"setup.py": broken}))

    with pytest.raises(InstallFailed) as raised:
        make_loader(installer).load_package(apkg)

    error = raised.value
    assert error.kind == "install-failed"
    assert error.package_fault is True
    assert [(f.kind, f.step) for f in error.failures] == [("failed", "self-install")]
    failure = error.failures[0]
    assert "setup-broken-7f3a" in failure.stderr
    assert failure.message.startswith("Agent package installation failed: ")
    assert error.errors == [failure.message]
    assert str(error).startswith("Package installation failed: ")
    assert names_in(root / "packages") == []


def test_a_redeploy_reuses_the_venv(tmp_path, make_loader):
    apkg = write_apkg(tmp_path / "in" / "agent.apkg", agent())
    loader = make_loader("uv")
    first = loader.load_package(apkg, agent_app_id="test-app")
    second = loader.load_package(apkg, agent_app_id="test-app")

    assert first.venv_reused is False
    assert second.venv_reused is True
    assert second.venv_path == first.venv_path
    assert second.path == first.path


def test_a_hostile_archive_is_refused_naming_the_entry_and_nothing_is_written(tmp_path, make_loader, root):
    files = {**agent(), "../escaped-9c1e.py": "print('out')\n"}
    apkg = write_apkg(tmp_path / "in" / "hostile.apkg", files)

    with pytest.raises(PackageRefused) as raised:
        make_loader("uv").load_package(apkg)

    error = raised.value
    assert (error.kind, error.subject, error.package_fault) == ("unsafe-entry", "../escaped-9c1e.py", True)
    assert "../escaped-9c1e.py" in str(error)
    for area in ["packages", "trees", "venvs", "staging"]:
        assert names_in(root / area) == [], f"{area}/ was written"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "root"]
    assert not (tmp_path / "escaped-9c1e.py").exists()
    assert not (tmp_path.parent / "escaped-9c1e.py").exists()


def test_the_async_api_loads_two_apps_at_once_and_the_loop_keeps_running(tmp_path, make_loader):
    first = write_apkg(tmp_path / "in" / "first.apkg", agent())
    second = write_apkg(tmp_path / "in" / "second.apkg", agent({"app/main.py": "agent = 'second'\n"}))
    loader = make_loader("uv")

    async def main() -> tuple[list[AgentPackage], list[float]]:
        ticks: list[float] = []
        loads = asyncio.gather(
            loader.load_package_async(first, agent_app_id="first-app"),
            loader.load_package_async(second, agent_app_id="second-app"),
        )
        # A coroutine beside the loads: it can only tick if they leave the loop free.
        while not loads.done():
            ticks.append(time.monotonic())
            await asyncio.sleep(0.01)
        return list(await loads), ticks

    packages, ticks = asyncio.run(main())

    assert [p.app_id for p in packages] == ["first-app", "second-app"]
    assert all(p.verified for p in packages)
    assert packages[0].venv_path != packages[1].venv_path
    # Loads take seconds (two venvs, two installs); the loop went on all along.
    longest_gap = max(later - earlier for earlier, later in zip(ticks, ticks[1:]))
    assert len(ticks) > 20, f"the loop ticked only {len(ticks)} times"
    assert longest_gap < 0.5, f"the loop was blocked for {longest_gap:.2f}s"


def test_logs_reach_python_logging_with_the_specs_messages_and_fields(tmp_path, make_loader, caplog):
    apkg = write_apkg(tmp_path / "in" / "agent.apkg", agent({"setup.py": None}))
    with caplog.at_level(logging.INFO, logger="par_loader"):
        package = make_loader("uv").load_package(apkg)

    messages = [record.getMessage() for record in caplog.records]
    assert "Loading agent package" in messages
    assert "No setup.py found - skipping agent package installation" in messages
    loaded = [r for r in caplog.records if r.getMessage() == "Package loaded successfully"]
    assert len(loaded) == 1
    assert loaded[0].name == "par_loader"
    assert loaded[0].levelno == logging.INFO
    assert loaded[0].package_id == package.package_id
    assert loaded[0].venv == package.venv_path.name


def test_bad_input_is_a_typed_error_not_a_host_fault(tmp_path, make_loader, root):
    apkg = write_apkg(tmp_path / "in" / "agent.apkg", agent())
    loader = make_loader("uv")

    with pytest.raises(InvalidInput) as raised:
        loader.load_package(apkg, agent_app_id="../escape")
    assert isinstance(raised.value, ValueError)
    assert (raised.value.kind, raised.value.package_fault) == ("invalid-input", False)

    with pytest.raises(PackageRefused) as refused:
        loader.inspect(write_apkg(tmp_path / "in" / "no-manifest.apkg", {"readme.txt": "hi"}))
    assert refused.value.kind == "manifest-missing"

    with pytest.raises(TypeError, match="`no_such_option`"):
        PackageLoader(root, no_such_option=1)
    with pytest.raises(ValueError, match="`installer`.*auto, pip, uv"):
        PackageLoader(root, installer="conda")


def test_fetching_uv_is_an_option_taking_a_bool(root, work):
    # The behaviour is the CLI's (tests/cli.rs): one setting behind both.
    PackageLoader(root, fetch_uv=False, component_cache=work / "caches" / "par")
    with pytest.raises(TypeError, match="`fetch_uv`"):
        PackageLoader(root, fetch_uv="no", component_cache=work / "caches" / "par")


def test_inspect_and_extract_publish_only_what_they_say(tmp_path, make_loader, root):
    apkg = write_apkg(tmp_path / "in" / "agent.apkg", agent())
    loader = make_loader("uv")

    manifest = loader.inspect(apkg)
    assert (manifest["name"], manifest["version"]) == ("test-agent", "1.0.0")
    assert names_in(root / "packages") == []

    extracted = loader.extract(apkg, agent_app_id="test-app")
    assert extracted.link == root / "packages" / "test-app@1.0.0"
    assert (extracted.path / "core" / "langchain_util.py").is_file()
    assert names_in(root / "venvs") == []


def test_results_are_frozen_with_paths_and_a_short_repr(tmp_path, make_loader):
    apkg = write_apkg(tmp_path / "in" / "agent.apkg", agent({"setup.py": None}))
    package = make_loader("uv").load_package(apkg)

    with pytest.raises(dataclasses.FrozenInstanceError):
        package.verified = False  # type: ignore[misc]
    for path in [package.path, package.link, package.venv_path, package.python_path, package.lock, package.sbom]:
        assert isinstance(path, Path)
    text = repr(package)
    assert text.startswith("AgentPackage(package_id='test-agent@1.0.0'")
    assert "venv_path=" in text and "manifest" not in text


def test_agent_package_has_every_field_the_native_result_has(tmp_path, make_loader):
    apkg = write_apkg(tmp_path / "in" / "agent.apkg", agent({"setup.py": None}))
    loader = make_loader("uv")
    raw = json.loads(loader._native.load(str(apkg), None))

    fields = {f.name for f in dataclasses.fields(AgentPackage)}
    # What the loader typed from the manifest is raised to the top.
    typed = {"http_server", "a2a_http_server", "permissions", "data_access", "deploy"}
    assert typed <= set(raw["manifest"])
    assert set(raw) | typed == fields
    assert set(raw["timings"]) == {f.name for f in dataclasses.fields(par_loader.Timings)}


def test_only_packages_signed_by_a_trusted_key_load(tmp_path, make_loader, root):
    keys = tmp_path / "keys"
    keys.mkdir()
    run(["minisign", "-G", "-W", "-p", keys / "k.pub", "-s", keys / "k.key"], cwd=tmp_path)
    signed = write_apkg(tmp_path / "in" / "signed.apkg", agent({"setup.py": None}))
    run(["minisign", "-S", "-s", keys / "k.key", "-m", signed, "-t", "name=test-agent version=1.0.0"], cwd=tmp_path)
    unsigned = write_apkg(tmp_path / "in" / "unsigned.apkg", agent({"setup.py": None}))
    loader = make_loader("uv", trusted_keys=[keys / "k.pub"])

    package = loader.load_package(signed)
    assert package.signed is not None
    assert (package.signed.name, package.signed.version) == ("test-agent", "1.0.0")
    assert package.signed.signature == Path(f"{signed}.minisig")
    assert loader.list().apps[0].deployments[0].signed == package.signed
    with pytest.raises(PackageRefused) as refused:
        loader.extract(unsigned, agent_app_id="other")
    assert (refused.value.kind, refused.value.package_fault) == ("signature-missing", True)
    assert names_in(root / "packages") == ["test-agent@1.0.0"]
    with pytest.raises(ValueError, match="not a minisign public key"):
        make_loader("uv", trusted_keys=[keys / "k.key"])


def test_a_lock_installs_exactly_its_set_what_lock_resolves_and_one_that_falls_short_is_refused(tmp_path, make_loader, root):
    loader = make_loader("uv")
    locked = agent({"requirements.txt": "packaging>=20\n"})
    first = loader.load_package(write_apkg(tmp_path / "in" / "a.apkg", locked), agent_app_id="first")
    second = loader.load_package(write_apkg(tmp_path / "in" / "b.apkg", locked), agent_app_id="second", lock=first.lock)
    assert second.lock.read_text() == first.lock.read_text(), "the same set, the same lock"
    assert second.requirements_count == 1
    bill = loader.sbom("first")
    assert json.loads(first.sbom.read_text()) == bill
    assert (bill["specVersion"], bill["metadata"]["component"]["name"]) == ("1.5", "test-agent")
    assert [c["purl"] for c in bill["components"]] == ["pkg:pypi/packaging@26.4"]

    resolved = loader.lock(write_apkg(tmp_path / "in" / "d.apkg", locked))
    [entry] = tomllib.loads(resolved.lock)["packages"]
    assert (entry["name"], entry["version"]) == ("packaging", "26.4")
    assert resolved.build_lock is not None and 'name = "setuptools"' in resolved.build_lock

    short = write_apkg(tmp_path / "in" / "c.apkg", agent({"requirements.txt": "packaging>=99\n"}))
    with pytest.raises(PackageRefused) as refused:
        loader.load_package(short, agent_app_id="third", lock=first.lock)
    assert (refused.value.kind, refused.value.subject) == ("lock-unsatisfied", "packaging>=99")
    assert "third@1.0.0" not in names_in(root / "packages")


def test_a_bundle_pushed_to_a_registry_pulls_back_and_loads_from_oci(tmp_path, make_loader, registry):
    auth = tmp_path / "in" / "auth.json"
    auth.parent.mkdir(parents=True, exist_ok=True)
    auth.write_text('{"auths": {}}')
    loader = make_loader("uv", insecure_registries=[registry], registry_auth=auth, registry_timeout=60)
    apkg = write_apkg(tmp_path / "in" / "agent.apkg", agent({"requirements.txt": "packaging>=20\n"}))
    written = loader.bundle(apkg, tmp_path / "in" / "agent.parb")

    pushed = loader.push(written.path, f"{registry}/agents/test:1.0")
    assert pushed.reference == f"{registry}/agents/test:1.0@{pushed.digest}"
    assert pushed.uploaded == pushed.blobs
    pulled = loader.pull(f"{registry}/agents/test@{pushed.digest}", tmp_path / "in" / "pulled.parb")
    assert (pulled.digest, pulled.signature) == (pushed.digest, None)
    assert pulled.path.read_bytes() == written.path.read_bytes()

    package = loader.load_package(f"oci://{registry}/agents/test:1.0", agent_app_id="from-registry")
    assert package.source == RegistrySource(reference=f"{registry}/agents/test:1.0", digest=pushed.digest)
    assert (package.requirements_count, package.verified) == (1, True)

    with pytest.raises(HostError) as unreachable:
        make_loader("uv", registry_auth=auth).pull(f"{registry}/agents/test:1.0", tmp_path / "in" / "plain.parb")
    assert unreachable.value.kind == "registry-unreachable"
    with pytest.raises(InvalidInput):
        loader.pull(f"{registry}/agents/test:1.0", tmp_path / "in" / "not-a-bundle.apkg")


def test_a_bundle_written_in_python_loads_offline_from_its_own_files(tmp_path, make_loader, tools, work):
    loader = make_loader("uv")
    apkg = write_apkg(tmp_path / "in" / "agent.apkg", agent({"requirements.txt": "packaging>=20\n"}))
    written = loader.bundle(apkg, tmp_path / "in" / "agent.parb")
    assert (written.name, written.version, written.signed) == ("test-agent", "1.0.0", None)
    assert "packaging-26.4-py3-none-any.whl" in written.files
    assert written.bytes == written.path.stat().st_size

    # Another node: no index it could reach, no find-links, offline.
    node = PackageLoader(
        tmp_path / "node",
        installer="uv",
        uv=tools["uv"],
        offline=True,
        installer_cache=tmp_path / "node-cache",
        component_cache=work / "caches" / "par",
    )
    package = node.load_package(written.path)
    assert (package.requirements_count, package.verified) == (1, True)
    assert 'name = "packaging"' in package.lock.read_text()

    broken = tmp_path / "in" / "broken.parb"
    broken.write_bytes(b"not a zip")
    with pytest.raises(PackageRefused) as refused:
        node.load_package(broken)
    assert refused.value.kind == "archive-unreadable"


def test_keys_made_and_packages_signed_in_python_verify_with_minisign(tmp_path, make_loader):
    key_id = par_loader.generate_keys(tmp_path / "release")
    apkg = write_apkg(tmp_path / "in" / "agent.apkg", agent())
    signed = make_loader("uv").sign(apkg, tmp_path / "release.key")
    assert (signed.name, signed.version, signed.key_id) == ("test-agent", "1.0.0", key_id)
    run(["minisign", "-V", "-p", tmp_path / "release.pub", "-m", apkg], cwd=tmp_path)

    verifier = make_loader("uv", trusted_keys=[tmp_path / "release.pub"])
    assert verifier.verify(apkg) == signed
    # Another package beside the first one's signature: other bytes.
    other = write_apkg(tmp_path / "in" / "other.apkg", agent({"extra.py": "x = 1\n"}))
    Path(f"{other}.minisig").write_bytes(Path(f"{apkg}.minisig").read_bytes())
    with pytest.raises(PackageRefused) as refused:
        verifier.verify(other)
    assert refused.value.kind == "signature-invalid"


def test_every_error_class_is_a_par_error():
    for name in ["PackageRefused", "InstallFailed", "SandboxError", "HostError", "InvalidInput"]:
        assert issubclass(getattr(par_loader, name), ParError)


def test_list_gc_and_remove_reclaim_what_loads_left(tmp_path, make_loader):
    loader = make_loader("uv")
    old = loader.load_package(write_apkg(tmp_path / "in" / "v1.apkg", agent({"setup.py": None})))
    newer = {"setup.py": None, "agent.yaml": AGENT_YAML.replace("1.0.0", "1.0.1")}
    new = loader.load_package(write_apkg(tmp_path / "in" / "v2.apkg", agent(newer)))

    [app] = loader.list().apps
    assert app.app_id == "test-agent"
    assert [d.path for d in app.deployments] == [new.path, old.path], "most recently loaded first"
    assert [d.current for d in app.deployments] == [True, False]
    assert app.deployments[1].venv == old.venv_path
    assert app.deployments[1].lock == old.lock and old.lock.is_file()
    assert app.deployments[1].venv_bytes > 0 and app.deployments[1].tree_bytes > 0

    dry = loader.gc(keep=1, dry_run=True)
    assert dry.dry_run and old.path.is_dir()
    collected = loader.gc(keep=1)
    assert {item.path for item in collected.removed if item.kind == "tree"} == {old.path}
    assert dry.removed == collected.removed
    assert not old.path.exists() and not old.venv_path.exists()
    assert new.python_path.exists()
    assert 0 < collected.bytes_freed <= collected.bytes_removed

    with pytest.raises(NotFound) as missing:
        loader.remove("no-such-app")
    assert (missing.value.kind, missing.value.subject) == ("not-found", "no-such-app")
    loader.remove("test-agent")
    assert not new.path.exists()
    assert loader.list().apps == ()
