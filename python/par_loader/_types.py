"""What a load and an extraction return: frozen, with ``pathlib.Path`` paths."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any


def _native_fields(cls: type[Any], raw: dict[str, Any], paths: tuple[str, ...]) -> dict[str, Any]:
    """The fields of the dataclass ``cls`` from the native JSON: ``paths`` as
    ``Path``, ``manifest`` as the ``agent.yaml`` document, and the fields the
    loader typed from it."""
    values = {f.name: raw[f.name] for f in fields(cls) if f.name in raw}
    for name in paths:
        values[name] = Path(values[name])
    manifest = raw["manifest"]
    values["manifest"] = manifest["document"]
    values["http_server"] = _app(manifest.get("http_server"))
    values["a2a_http_server"] = _app(manifest.get("a2a_http_server"))
    values["permissions"] = Permissions._from_native(manifest.get("permissions"))
    values["data_access"] = DataAccess._from_native(manifest.get("data_access"))
    values["deploy"] = Deploy._from_native(manifest.get("deploy"))
    return values


def _app(raw: dict[str, Any] | None) -> str | None:
    """``module:app`` from the native entrypoint."""
    return None if raw is None else f"{raw['module']}:{raw['attr']}"


@dataclass(frozen=True)
class Permissions:
    """The manifest's ``permissions``: what the agent asks its users to grant."""

    required: tuple[str, ...]
    optional: tuple[str, ...]

    @classmethod
    def _from_native(cls, raw: dict[str, Any] | None) -> Permissions | None:
        return None if raw is None else cls(required=tuple(raw["required"]), optional=tuple(raw["optional"]))


@dataclass(frozen=True)
class DataAccess:
    """The manifest's ``data_access``: the user data and outside services the agent reaches."""

    oauth_providers: tuple[str, ...]
    user_data: tuple[str, ...]
    external_apis: tuple[str, ...]

    @classmethod
    def _from_native(cls, raw: dict[str, Any] | None) -> DataAccess | None:
        if raw is None:
            return None
        return cls(
            oauth_providers=tuple(raw["oauth_providers"]),
            user_data=tuple(raw["user_data"]),
            external_apis=tuple(raw["external_apis"]),
        )


@dataclass(frozen=True)
class Deploy:
    """``deploy.json`` beside ``agent.yaml``, as PAK writes it for the runtime."""

    #: The surfaces served (``rest``, ``a2a``, ``ui``), in order.
    expose: tuple[str, ...]
    #: The port PAK chose for each surface.
    ports: dict[str, int] = field(hash=False)
    #: Whether the surfaces share one server (``None``: not said).
    multiplex: bool | None
    #: Variables as written, ``${VAR}`` placeholders unresolved.
    environment: dict[str, str] = field(repr=False, hash=False)

    @classmethod
    def _from_native(cls, raw: dict[str, Any] | None) -> Deploy | None:
        if raw is None:
            return None
        return cls(
            expose=tuple(raw["expose"]),
            ports=dict(raw["ports"]),
            multiplex=raw["multiplex"],
            environment=dict(raw["environment"]),
        )


@dataclass(frozen=True)
class Timings:
    """Milliseconds per step of a load."""

    extract_ms: int
    venv_ms: int
    requirements_ms: int
    self_install_ms: int
    build_ms: int
    verify_ms: int
    total_ms: int


@dataclass(frozen=True)
class Signed:
    """What a package's signature by a trusted key vouches for."""

    #: The package's name, as signed (and as its manifest says).
    name: str
    #: The package's version, as signed.
    version: str
    #: The signing key's id, as minisign prints it.
    key_id: str
    #: The signature file (``{apkg}.minisig``).
    signature: Path

    @classmethod
    def _from_dict(cls, raw: dict[str, Any]) -> Signed:
        return cls(name=raw["name"], version=raw["version"], key_id=raw["key_id"], signature=Path(raw["signature"]))

    @classmethod
    def _from_native(cls, raw: dict[str, Any] | None) -> Signed | None:
        return None if raw is None else cls._from_dict(raw)


@dataclass(frozen=True)
class AgentPackage:
    """A loaded agent: what the runtime needs to start it."""

    #: ``{name}@{version}`` from the manifest.
    package_id: str
    #: The app id it was published under.
    app_id: str
    #: The package tree (start the agent here, as ``AGENT_PACKAGE_PATH``); it
    #: stays as it is while this deployment is kept.
    path: Path
    #: ``{root}/packages/{app_id}@{version}``: the app's link, switched to a
    #: new tree only when a load succeeds.
    link: Path
    #: The venv the agent was installed into.
    venv_path: Path
    #: The venv's interpreter: start the agent with it.
    python_path: Path
    #: ``{venv_path}/pylock.toml``: what the venv holds, as a PEP 751 lock
    #: (every distribution's version, origin and SHA-256; the agent itself as
    #: an editable directory).
    lock: Path
    #: ``{venv_path}/sbom.cdx.json``: the same as a CycloneDX 1.5 SBOM, the
    #: agent its root component.
    sbom: Path
    #: The agent's ``agent.yaml``, unknown fields included.
    manifest: dict[str, Any] = field(repr=False, hash=False, compare=True)
    #: The agent was installed editable, so its modules import from anywhere.
    installed_as_package: bool
    #: Whether the entrypoint imported in the venv (``None``: the manifest names none).
    verified: bool | None
    #: ``pip`` or ``uv``.
    installer: str
    #: ``bwrap`` when the install steps ran in the installer sandbox, else ``none``.
    installer_sandbox: str
    #: A finished venv was reused: nothing was installed.
    venv_reused: bool
    #: The same archive was loaded before with the same settings, and nothing ran.
    unchanged_redeploy: bool
    #: Packages installed from ``requirements.txt``.
    requirements_count: int
    #: Milliseconds per step.
    timings: Timings = field(repr=False)
    #: Who signed the archive, when the loader trusts keys (``trusted_keys``).
    signed: Signed | None = None
    #: The manifest's ``http_server``, ``module:app``: the ASGI app served on the REST socket.
    http_server: str | None = None
    #: The manifest's ``a2a.http_server``, ``module:app``.
    a2a_http_server: str | None = None
    #: The manifest's ``permissions``.
    permissions: Permissions | None = None
    #: The manifest's ``data_access``.
    data_access: DataAccess | None = None
    #: ``deploy.json``, if the package has one.
    deploy: Deploy | None = None
    #: The registry reference and digest, when loaded from ``oci://…``.
    source: RegistrySource | None = None

    @classmethod
    def _from_native(cls, raw: dict[str, Any]) -> AgentPackage:
        values = _native_fields(cls, raw, ("path", "link", "venv_path", "python_path", "lock", "sbom"))
        values["timings"] = Timings(**raw["timings"])
        values["signed"] = Signed._from_native(raw.get("signed"))
        source = raw.get("source")
        values["source"] = None if source is None else RegistrySource(**source)
        package = cls(**values)
        # What the loader returned, as it returned it: what `spawn` hands back.
        object.__setattr__(package, "_native_json", json.dumps(raw))
        return package


@dataclass(frozen=True)
class ResolvedLock:
    """What ``PackageLoader.lock`` resolved, installing nothing: PEP 751 locks."""

    #: The requirements' lock (``pylock.toml``): what ``load_package(..., lock=)`` installs.
    lock: str
    #: The build backend's requirements' lock, when the agent is built.
    build_lock: str | None = None


@dataclass(frozen=True)
class WrittenBundle:
    """An offline bundle ``PackageLoader.bundle`` wrote."""

    #: The bundle file (``.parb``).
    path: Path
    #: The package's name, from its manifest.
    name: str
    #: The package's version, from its manifest.
    version: str
    #: The wheel and sdist files it holds, by file name.
    files: tuple[str, ...]
    #: Its size in bytes.
    bytes: int
    #: Its signature (``{bundle}.minisig``), when it was made with a key.
    signed: Signed | None = None

    @classmethod
    def _from_native(cls, raw: dict[str, Any]) -> WrittenBundle:
        return cls(
            path=Path(raw["path"]),
            name=raw["name"],
            version=raw["version"],
            files=tuple(raw["files"]),
            bytes=raw["bytes"],
            signed=Signed._from_native(raw["signed"]),
        )


@dataclass(frozen=True)
class Pushed:
    """A bundle ``PackageLoader.push`` put in a registry."""

    #: Where, pinned: ``REGISTRY/REPO:TAG@sha256:…``.
    reference: str
    #: The manifest's digest, which names the bundle in any registry.
    digest: str
    #: How many blobs were uploaded (the registry had the others).
    uploaded: int
    #: How many blobs the manifest names.
    blobs: int
    #: The referrer carrying the signature, where the registry has the referrers API.
    signature_referrer: str | None = None


@dataclass(frozen=True)
class Pulled:
    """A bundle ``PackageLoader.pull`` wrote."""

    #: The bundle file (``.parb``).
    path: Path
    #: The manifest's digest the reference resolved to.
    digest: str
    #: The bundle's signature written beside it, when it has one.
    signature: Path | None = None

    @classmethod
    def _from_native(cls, raw: dict[str, Any]) -> Pulled:
        signature = raw.get("signature")
        return cls(path=Path(raw["path"]), digest=raw["digest"], signature=None if signature is None else Path(signature))


@dataclass(frozen=True)
class RegistrySource:
    """Where a package loaded from ``oci://…`` came from."""

    #: The reference as given (``REGISTRY/REPO:TAG`` or ``…@sha256:…``).
    reference: str
    #: The digest of the manifest it resolved to: pin other nodes to it.
    digest: str


@dataclass(frozen=True)
class ExtractedPackage:
    """A package tree published under the root, without a venv."""

    package_id: str
    app_id: str
    path: Path
    link: Path
    manifest: dict[str, Any] = field(repr=False, hash=False, compare=True)
    #: Regular files written.
    files: int
    #: Directory entries in the archive.
    dirs: int
    #: Uncompressed bytes written.
    bytes: int
    #: Who signed the archive, when the loader trusts keys (``trusted_keys``).
    signed: Signed | None = None
    #: The manifest's ``http_server``, ``module:app``: the ASGI app served on the REST socket.
    http_server: str | None = None
    #: The manifest's ``a2a.http_server``, ``module:app``.
    a2a_http_server: str | None = None
    #: The manifest's ``permissions``.
    permissions: Permissions | None = None
    #: The manifest's ``data_access``.
    data_access: DataAccess | None = None
    #: ``deploy.json``, if the package has one.
    deploy: Deploy | None = None

    @classmethod
    def _from_native(cls, raw: dict[str, Any]) -> ExtractedPackage:
        values = _native_fields(cls, raw, ("path", "link"))
        values["signed"] = Signed._from_native(raw.get("signed"))
        return cls(**values)


@dataclass(frozen=True)
class DeploymentInfo:
    """One published tree of an app, as ``PackageLoader.list`` sees it."""

    #: The manifest's version.
    version: str
    #: The first 16 hex digits of the archive's SHA-256.
    digest: str
    #: The tree.
    path: Path
    #: The app's link, when it points at this tree.
    link: Path | None
    #: The venv its record names (``None`` for a tree ``extract`` published).
    venv: Path | None
    #: That venv's lock (``pylock.toml``): what it holds.
    lock: Path | None
    #: That venv's SBOM (``sbom.cdx.json``).
    sbom: Path | None
    #: The tree's size on disk (hard links counted once).
    tree_bytes: int
    #: The venv's size on disk.
    venv_bytes: int
    #: When it was last loaded, in seconds since the epoch.
    last_loaded: int
    #: Whether it is the app's most recently loaded deployment (``gc`` always keeps it).
    current: bool
    #: Host pids of running agents started from it.
    agents: tuple[int, ...]
    #: Who signed the archive, when the loader that loaded it trusted keys.
    signed: Signed | None = None


@dataclass(frozen=True)
class AppInfo:
    """One app under the root."""

    app_id: str
    #: Most recently loaded first.
    deployments: tuple[DeploymentInfo, ...]
    #: Venvs no deployment names (``gc`` removes them).
    orphan_venvs: tuple[Path, ...]


@dataclass(frozen=True)
class Listing:
    """Everything under a root (``PackageLoader.list``)."""

    root: Path
    apps: tuple[AppInfo, ...]
    #: The root's size, as ``du`` counts it.
    root_bytes: int
    #: The build environments in par's cache, with the venvs each built, as dicts.
    build_environments: tuple[dict[str, Any], ...] = field(repr=False)
    #: The running agents started from this root, as dicts.
    agents: tuple[dict[str, Any], ...] = field(repr=False)

    @classmethod
    def _from_native(cls, raw: dict[str, Any]) -> Listing:
        def optional(value: str | None) -> Path | None:
            return None if value is None else Path(value)

        apps = tuple(
            AppInfo(
                app_id=app["app_id"],
                deployments=tuple(
                    DeploymentInfo(
                        **{
                            **d,
                            "path": Path(d["path"]),
                            "link": optional(d["link"]),
                            "venv": optional(d["venv"]),
                            "lock": optional(d["lock"]),
                            "sbom": optional(d["sbom"]),
                            "agents": tuple(d["agents"]),
                            "signed": Signed._from_native(d.get("signed")),
                        }
                    )
                    for d in app["deployments"]
                ),
                orphan_venvs=tuple(Path(p) for p in app["orphan_venvs"]),
            )
            for app in raw["apps"]
        )
        return cls(
            root=Path(raw["root"]),
            apps=apps,
            root_bytes=raw["root_bytes"],
            build_environments=tuple(raw["build_environments"]),
            agents=tuple(raw["agents"]),
        )


@dataclass(frozen=True)
class RemovedItem:
    """One thing ``gc`` or ``remove`` removed."""

    #: ``tree``, ``venv``, ``record``, ``link``, ``build-environment`` or ``stray``.
    kind: str
    app_id: str | None
    path: Path
    bytes: int
    #: ``keep``, ``budget``, ``unused`` or ``requested``.
    reason: str


@dataclass(frozen=True)
class Collection:
    """What ``gc`` or ``remove`` removed (with ``dry_run``: would remove)."""

    dry_run: bool
    removed: tuple[RemovedItem, ...]
    #: Apps passed over because a load or agent start held them.
    busy_apps: tuple[str, ...]
    #: Agents stopped first (``remove(force=True)``).
    stopped_agents: tuple[int, ...]
    bytes_removed: int
    #: What the disk got back (files also linked from elsewhere are not counted).
    bytes_freed: int
    root_bytes_before: int
    root_bytes_after: int

    @classmethod
    def _from_native(cls, raw: dict[str, Any]) -> Collection:
        removed = tuple(RemovedItem(**{**item, "path": Path(item["path"])}) for item in raw["removed"])
        return cls(
            **{
                **raw,
                "removed": removed,
                "busy_apps": tuple(raw["busy_apps"]),
                "stopped_agents": tuple(raw["stopped_agents"]),
            }
        )
