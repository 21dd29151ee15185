"""What a load and an extraction return: frozen, with ``pathlib.Path`` paths."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any


def _native_fields(cls: type[Any], raw: dict[str, Any], paths: tuple[str, ...]) -> dict[str, Any]:
    """The fields of the dataclass ``cls`` from the native JSON: ``paths`` as
    ``Path``, ``manifest`` as the ``agent.yaml`` document."""
    values = {f.name: raw[f.name] for f in fields(cls) if f.name in raw}
    for name in paths:
        values[name] = Path(values[name])
    values["manifest"] = raw["manifest"]["document"]
    return values


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

    @classmethod
    def _from_native(cls, raw: dict[str, Any]) -> AgentPackage:
        values = _native_fields(cls, raw, ("path", "link", "venv_path", "python_path"))
        values["timings"] = Timings(**raw["timings"])
        return cls(**values)


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

    @classmethod
    def _from_native(cls, raw: dict[str, Any]) -> ExtractedPackage:
        return cls(**_native_fields(cls, raw, ("path", "link")))
