"""par_loader: par's sandboxed APKG loader, with the spec's ``PackageLoader`` API.

Every byte of an APKG is read inside a WASI sandbox; ``setup.py`` and the
installer run under bubblewrap. Swap a runtime's loader for this one with
one import::

    from par_loader import PackageLoader

    loader = PackageLoader("/tmp/pixell-runtime")
    package = loader.load_package("agent.apkg", agent_app_id="my-app")
    print(package.venv_path, package.installed_as_package)
"""

from ._errors import (
    HostError,
    InstallFailed,
    InstallStepFailure,
    InUse,
    InvalidInput,
    NotFound,
    PackageRefused,
    ParError,
    SandboxError,
    SpawnFailed,
)
from ._agent import AgentProcess
from ._loader import PackageLoader, generate_keys
from ._types import (
    AgentPackage,
    AppInfo,
    Collection,
    DataAccess,
    Deploy,
    DeploymentInfo,
    ExtractedPackage,
    Listing,
    Permissions,
    Pulled,
    Pushed,
    RegistrySource,
    RemovedItem,
    ResolvedLock,
    Signed,
    Timings,
    WrittenBundle,
)

__all__ = [
    "AgentPackage",
    "AgentProcess",
    "AppInfo",
    "Collection",
    "DataAccess",
    "Deploy",
    "DeploymentInfo",
    "ExtractedPackage",
    "HostError",
    "InUse",
    "InstallFailed",
    "InstallStepFailure",
    "InvalidInput",
    "Listing",
    "NotFound",
    "PackageLoader",
    "PackageRefused",
    "ParError",
    "Permissions",
    "Pulled",
    "Pushed",
    "RegistrySource",
    "RemovedItem",
    "ResolvedLock",
    "SandboxError",
    "Signed",
    "SpawnFailed",
    "Timings",
    "WrittenBundle",
    "generate_keys",
]
