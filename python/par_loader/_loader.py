"""``PackageLoader``: the spec's loader API over par's native loader."""

from __future__ import annotations

import asyncio
import functools
import json
import os
from pathlib import Path
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from . import _native
from ._agent import AgentProcess
from ._types import (
    AgentPackage,
    Collection,
    ExtractedPackage,
    Listing,
    Pulled,
    Pushed,
    ResolvedLock,
    Signed,
    WrittenBundle,
)

_T = TypeVar("_T")

StrPath = str | os.PathLike[str]


class PackageLoader:
    """Loads APKGs under one root, as the spec's ``PackageLoader`` does.

    ``packages_dir`` is the root everything lives under (the spec's
    ``/tmp/pixell-runtime``): trees in ``trees/``, the apps' links in
    ``packages/``, venvs in ``venvs/``. The keyword options mirror par's
    ``LoaderConfig`` and ``InstallConfig``: ``installer`` (``"auto"``,
    ``"pip"``, ``"uv"``), ``sandbox`` (``"auto"``, ``"bwrap"``, ``"none"``),
    ``network`` (``"none"``, ``"index"``), ``python``, ``uv``, ``fetch_uv``
    (when no uv is found, fetch par's pinned one, its hash checked, into
    ``component_cache``; default ``True``), ``bwrap``,
    ``strict``, the timeouts in seconds (``venv_timeout``,
    ``requirements_timeout``, ``self_install_timeout``, ``import_timeout``,
    ``build_env_max_age``), the index settings (``no_index``, ``index_url``,
    ``extra_index_urls``, ``find_links``), ``installer_cache``,
    ``component_cache``, ``allow_index_options``, ``allow_direct_urls``,
    ``pass_env``, ``guest_memory_bytes``, ``guest_cpu_time``,
    ``offline`` (no index and no network for installer steps; a bundle is
    always loaded so), ``max_root_bytes`` (a budget collected to after each load),
    ``min_free_bytes`` (loads refuse to start with less free), ``trusted_keys``
    (minisign public key files: with any, only packages signed by one of them
    load, the signature ``{apkg}.minisig`` beside the package, refused as
    ``signature-missing`` or ``signature-invalid`` otherwise), the registry
    settings for ``push``, ``pull`` and ``oci://`` loads (``insecure_registries``:
    ``HOST:PORT`` spoken to over plain HTTP; ``registry_auth``: a
    Docker/Podman ``config.json`` to take logins from; ``registry_timeout``:
    seconds for a whole push or pull) and ``limits`` (a
    dict of archive limits: ``max_entries``, ``max_total_bytes``,
    ``max_file_bytes``, ``max_ratio``, ``ratio_min_bytes``,
    ``max_manifest_bytes``). An unknown option is a ``TypeError``.

    Building one compiles the sandbox (or loads it from ``component_cache``).
    A loader is safe to share between threads and tasks. Every call releases
    the GIL while it runs; the ``*_async`` forms run it on the event loop's
    default executor, so the loop goes on meanwhile.
    """

    def __init__(self, packages_dir: StrPath, **options: Any) -> None:
        self._native = _native.Loader(os.fspath(packages_dir), options)

    @property
    def root(self) -> Path:
        """The root every package, venv and record lives under (absolute)."""
        return self._native.root

    def load_package(
        self, apkg_path: StrPath, agent_app_id: str | None = None, lock: StrPath | None = None
    ) -> AgentPackage:
        """The spec's whole flow: extract and validate in the sandbox, create
        or reuse the venv, install ``requirements.txt`` and the agent itself
        (editable), and check that the entrypoint imports.

        ``oci://REGISTRY/REPO:TAG`` (or ``@sha256:…``) pulls the bundle pushed
        there (only the blobs ``component_cache`` lacks, each checked) and
        loads it as a bundle; the package's ``source`` names the digest.

        A bundle (``.parb``, from ``bundle``) is loaded from its own lock and
        files alone, with no index and no network; a bundle that holds
        anything else, or a file whose SHA-256 is not its lock's, raises
        ``PackageRefused`` (``bundle-invalid``).

        With ``lock`` (a PEP 751 ``pylock.toml``, such as an earlier load's
        ``lock``), installs exactly its distributions, hashes checked, nothing
        resolved; a lock that cannot be used or does not hold what a
        requirement line asks for raises ``PackageRefused`` (``lock-invalid``,
        ``lock-unsatisfied``) before anything is installed.

        Raises ``PackageRefused``, ``InstallFailed``, ``SandboxError``,
        ``InvalidInput`` or ``HostError`` (all ``ParError``).
        """
        raw = self._native.load(
            os.fspath(apkg_path), agent_app_id, None if lock is None else os.fspath(lock)
        )
        return AgentPackage._from_native(json.loads(raw))

    def lock(self, apkg_path: StrPath) -> ResolvedLock:
        """Resolves the package's requirements and its build backend's for this
        loader's interpreter and index settings, installing nothing, and
        returns the PEP 751 locks: write ``lock`` to a ``pylock.toml`` and give
        it to ``load_package(..., lock=)`` on any node."""
        return ResolvedLock(**json.loads(self._native.lock(os.fspath(apkg_path))))

    def bundle(
        self,
        apkg_path: StrPath,
        output: StrPath,
        key_path: StrPath | None = None,
        password: str | None = None,
    ) -> WrittenBundle:
        """Writes an offline bundle (``output``, ending in ``.parb``): the
        package, its locks (as ``lock`` resolves them), every wheel and sdist
        they name (fetched once, hashes checked), its SBOM and, with a key,
        signatures (the package's inside, ``{output}.minisig`` beside).
        ``load_package(output)`` then installs from it alone, offline."""
        raw = self._native.bundle(
            os.fspath(apkg_path), os.fspath(output), None if key_path is None else os.fspath(key_path), password
        )
        return WrittenBundle._from_native(json.loads(raw))

    def push(self, bundle_path: StrPath, reference: str) -> Pushed:
        """Pushes a bundle to an OCI registry (``REGISTRY/REPO:TAG``) as an
        artifact, one blob per member, uploading only the blobs the registry
        lacks; its signature (``{bundle}.minisig``) goes with it. Raises
        ``HostError`` when the registry cannot be reached or refuses."""
        return Pushed(**json.loads(self._native.push(os.fspath(bundle_path), reference)))

    def pull(self, reference: str, output: StrPath) -> Pulled:
        """Pulls a bundle pushed by ``push`` into ``output`` (ending in
        ``.parb``), and its signature beside it: every blob checked against
        the manifest, nothing written unless all of it is. Raises
        ``PackageRefused`` (``registry-manifest``, ``registry-blob``) for what
        the registry holds, ``HostError`` for the way to it."""
        return Pulled._from_native(json.loads(self._native.pull(reference, os.fspath(output))))

    def inspect(self, apkg_path: StrPath) -> dict[str, Any]:
        """Validates the archive in the sandbox and returns its ``agent.yaml``; publishes nothing."""
        raw = self._native.inspect(os.fspath(apkg_path))
        document: dict[str, Any] = json.loads(raw)["document"]
        return document

    def extract(self, apkg_path: StrPath, agent_app_id: str | None = None) -> ExtractedPackage:
        """Extracts and publishes the package tree, without a venv."""
        raw = self._native.extract(os.fspath(apkg_path), agent_app_id)
        return ExtractedPackage._from_native(json.loads(raw))

    def verify(self, apkg_path: StrPath) -> Signed:
        """Checks ``{apkg}.minisig`` against the ``trusted_keys`` and that the
        manifest names the package it was signed for; raises
        ``PackageRefused`` (``signature-missing``, ``signature-invalid``) otherwise."""
        return Signed._from_dict(json.loads(self._native.verify(os.fspath(apkg_path))))

    def sign(self, apkg_path: StrPath, key_path: StrPath, password: str | None = None) -> Signed:
        """Signs the package with a minisign secret key file for the name and
        version its manifest says, writing ``{apkg}.minisig`` beside it."""
        return Signed._from_dict(json.loads(self._native.sign(os.fspath(apkg_path), os.fspath(key_path), password)))

    def spawn(
        self,
        package: AgentPackage,
        argv: Sequence[StrPath] = (),
        *,
        listen: Mapping[str, str] | None = None,
        health: str | None = None,
        network: str = "none",
        sandbox: str = "auto",
        env: Mapping[str, str] | None = None,
        package_env: bool = False,
        ready_timeout: float = 60.0,
        stop_grace: float = 10.0,
        memory_bytes: int | None = None,
        tmp_bytes: int | None = None,
        base_path: str | None = None,
        socket_group: int | None = None,
    ) -> AgentProcess:
        """Starts ``package``'s agent (loaded by this loader) in the sandbox,
        as ``par run`` does, and returns once it runs; ``wait_ready`` then
        waits until it is ready.

        ``argv[0] == "python"`` means the venv's interpreter; an empty
        ``argv`` serves the manifest's ``http_server`` with the venv's uvicorn
        on the first socket. ``listen`` maps
        socket names to ``"host:port"`` (port 0: any free one); par binds
        them and hands them over as fds 3, 4, … (``LISTEN_FDS``,
        ``PAR_PORT_<NAME>``); without it, the surfaces ``deploy.json``
        exposes, on 127.0.0.1 at its ports. ``health`` is ``"name:/path"``: ready on a 2xx
        answer (default: when the agent accepts a connection). ``network`` is
        ``"none"`` or ``"outbound"``; ``env`` adds the caller's variables (never
        logged); ``package_env`` applies the package's own ``.env``, below
        ``agent.yaml``'s and ``deploy.json``'s ``environment`` as PAR layers
        them (``${VAR}`` and ``${VAR:-default}`` in the package's values are
        resolved against the layers alone). ``base_path`` sets ``BASE_PATH``
        (``/agents/ID``, as PAR's proxy routes it). A ``listen`` value of
        ``"unix:/path"`` is a unix socket (mode 0660, in ``socket_group``
        when given, removed when the agent is gone; see ``unix_sockets``).
        ``memory_bytes`` caps all its processes together (2 GiB by default)
        and ``tmp_bytes`` sizes its ``/tmp`` and ``/dev/shm`` (1 GiB).

        Raises ``SpawnFailed`` (``kind`` ``env-refused``, ``bind`` …).
        """
        native_json = getattr(package, "_native_json", None)
        if native_json is None:
            raise TypeError("spawn takes an AgentPackage that load_package returned")
        socket, _, path = (health or "").partition(":")
        native = self._native.spawn(
            native_json,
            [os.fspath(arg) for arg in argv],
            list((listen or {}).items()),
            (socket, path) if health else None,
            network,
            sandbox,
            list((env or {}).items()),
            package_env,
            ready_timeout,
            stop_grace,
            memory_bytes,
            tmp_bytes,
            base_path,
            socket_group,
        )
        return AgentProcess(native)

    def list(self) -> Listing:
        """Every app under the root: its deployments (current or not, in use
        by an agent or not) with their sizes, and the build environments."""
        return Listing._from_native(json.loads(self._native.list()))

    def sbom(self, app_id: str, version: str | None = None) -> dict[str, Any]:
        """The SBOM (CycloneDX 1.5) of the app's most recently loaded deployment
        (of ``version``, when given): every distribution its venv holds, the
        agent as the root component. Raises ``NotFound`` without one."""
        bill: dict[str, Any] = json.loads(self._native.sbom(app_id, version))
        return bill

    def remove(self, app_id: str, version: str | None = None, *, force: bool = False) -> Collection:
        """Removes an app (or one version): trees, links, venvs and records.

        Raises ``NotFound`` when there is nothing of it, and ``InUse`` while an
        agent uses it, unless ``force``, which stops that agent first.
        """
        return Collection._from_native(json.loads(self._native.remove(app_id, version, force)))

    def gc(
        self,
        *,
        keep: int = 2,
        max_bytes: int | None = None,
        older_than: float | None = None,
        dry_run: bool = False,
    ) -> Collection:
        """Removes what no app needs: deployments beyond each app's ``keep``
        most recent (the current one always stays), then the least recently
        used until the root takes at most ``max_bytes``, never one loaded less
        than ``older_than`` seconds ago; and whatever belongs to nothing kept.
        Never what a running load or agent holds."""
        raw = self._native.gc(keep, max_bytes, older_than, dry_run)
        return Collection._from_native(json.loads(raw))

    async def load_package_async(
        self, apkg_path: StrPath, agent_app_id: str | None = None, lock: StrPath | None = None
    ) -> AgentPackage:
        """``load_package`` without blocking the event loop."""
        return await _off_the_loop(functools.partial(self.load_package, apkg_path, agent_app_id, lock))

    async def inspect_async(self, apkg_path: StrPath) -> dict[str, Any]:
        """``inspect`` without blocking the event loop."""
        return await _off_the_loop(functools.partial(self.inspect, apkg_path))

    async def extract_async(self, apkg_path: StrPath, agent_app_id: str | None = None) -> ExtractedPackage:
        """``extract`` without blocking the event loop."""
        return await _off_the_loop(functools.partial(self.extract, apkg_path, agent_app_id))

    def __repr__(self) -> str:
        return f"PackageLoader({str(self.root)!r})"


def generate_keys(prefix: StrPath) -> str:
    """Makes a minisign key pair for signing packages: ``{prefix}.key`` (the
    secret key, unencrypted, mode 0600) and ``{prefix}.pub`` (for
    ``trusted_keys``), never over a file; returns the key's id."""
    return _native.generate_keys(os.fspath(prefix))


async def _off_the_loop(call: functools.partial[_T]) -> _T:
    """Runs ``call`` on the running loop's default executor."""
    return await asyncio.get_running_loop().run_in_executor(None, call)
