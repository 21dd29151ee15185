"""The exceptions a load raises: the class says who is at fault, and each
carries the ``kind`` and ``subject`` that ``par --json`` prints."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any


class ParError(Exception):
    """Any failure of a load, an extraction or an inspection."""

    #: A stable, kebab-case name (``unsafe-entry``, ``install-failed``, ``io`` …).
    kind: str
    #: The archive entry, manifest field or import call at fault, when there is one.
    subject: str | None
    #: Whether the package (not the host or the caller) is to blame.
    package_fault: bool

    def __init__(self, message: str, *, kind: str, subject: str | None = None, package_fault: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.kind = kind
        self.subject = subject
        self.package_fault = package_fault

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), self.message, self.__dict__))


def _rebuild(cls: type[ParError], message: str, state: dict[str, Any]) -> ParError:
    error = cls.__new__(cls)
    Exception.__init__(error, message)
    error.__dict__.update(state)
    return error


class PackageRefused(ParError):
    """The package broke a rule: an unsafe entry, a limit, an invalid
    manifest, a refused requirement, or a guest that broke the protocol.
    Nothing of it was kept."""


class SandboxError(ParError):
    """The sandbox stopped the guest reading the package: its memory or CPU
    limit, a trap, a panic; or the engine itself failed (``kind`` ``engine``)."""


class InvalidInput(ParError, ValueError):
    """A value the caller passed is unusable (an app id that is not a safe name, a path that is no file)."""


class HostError(ParError):
    """The host failed: file-system I/O, a full disk, a missing installer
    sandbox, or a bug in par."""


class SpawnFailed(ParError):
    """Starting an agent failed: a refused variable (``env-refused``, ``subject``
    names it), a socket that could not be bound (``bind``), no sandbox, an
    agent that exited before it was ready or was not ready in time."""


class NotFound(ParError, LookupError):
    """``remove`` named an app (or version) with nothing under the root."""


class InUse(ParError):
    """``remove`` would take what a running agent uses; ``pids`` are the
    agents' host pids. Pass ``force=True`` to stop them first."""

    pids: tuple[int, ...]

    def __init__(self, message: str, *, pids: Iterable[int] = (), **fields: Any) -> None:
        super().__init__(message, **fields)
        self.pids = tuple(pids)


@dataclass(frozen=True)
class InstallStepFailure:
    """One failed install step, as the spec words it in ``message``."""

    #: ``failed`` (the step ran and exited non-zero), ``timed-out``, ``refused`` or ``host``.
    kind: str
    #: ``venv``, ``requirements``, ``self-install``, ``verify-import`` …; ``None`` for a host failure.
    step: str | None
    #: ``Dependency installation failed: <stderr>``, ``Agent package installation timed out after 120s`` …
    message: str
    #: The step's exit code, when it ran and failed.
    exit_code: int | None = None
    #: The end of its error output.
    stderr: str = ""
    #: The end of its output.
    stdout: str = ""


class InstallFailed(ParError):
    """Installing failed: ``failures`` holds every failed step, in the order they ran."""

    failures: tuple[InstallStepFailure, ...]

    def __init__(self, message: str, *, failures: Iterable[Mapping[str, Any]] = (), **fields: Any) -> None:
        super().__init__(message, **fields)
        self.failures = tuple(InstallStepFailure(**failure) for failure in failures)

    @property
    def errors(self) -> list[str]:
        """Each failure in the spec's words, as the spec's loader collects them."""
        return [failure.message for failure in self.failures]
