"""``AgentProcess``: an agent ``PackageLoader.spawn`` started in the sandbox."""

from __future__ import annotations

import asyncio
import functools
from pathlib import Path
from types import TracebackType

from . import _native


class AgentProcess:
    """A running agent, on sockets par bound for it.

    ``wait_ready``, ``stop`` and ``wait`` release the GIL while they wait, and
    each has an ``*_async`` form. Used as a context manager, the agent is
    stopped gracefully on exit; an ``AgentProcess`` that is garbage-collected
    kills its agent at once.
    """

    def __init__(self, native: _native.Agent) -> None:
        self._native = native

    @property
    def pid(self) -> int:
        """The host pid par started: bubblewrap's when sandboxed, else the agent's."""
        return self._native.pid

    @property
    def sandbox(self) -> str:
        """``bwrap`` when the agent runs in the sandbox, else ``none``."""
        return self._native.sandbox

    @property
    def ports(self) -> dict[str, tuple[str, int]]:
        """Each TCP socket par bound, by name: ``(host, port)``, with the port chosen for ``:0``."""
        return {name: (host, port) for name, host, port in self._native.ports}

    @property
    def unix_sockets(self) -> dict[str, Path]:
        """Each unix socket par bound, by name: its path."""
        return {name: Path(path) for name, path in self._native.unix_sockets}

    @property
    def returncode(self) -> int | None:
        """How it ended, as ``subprocess`` says it (minus the signal that ended it), or ``None`` while it runs."""
        return self._native.returncode()

    def wait_ready(self) -> float:
        """Waits until it is ready (the health check answers, or it accepts a
        connection); returns the seconds since it started. On a timeout or an
        early exit it is stopped, and ``SpawnFailed`` says which."""
        return self._native.wait_ready()

    def stop(self, grace: float | None = None) -> int | None:
        """SIGTERM to every process of it, ``grace`` seconds (the spawn's
        ``stop_grace`` by default), then SIGKILL; returns its returncode."""
        return self._native.stop(grace)

    def wait(self) -> int | None:
        """Waits until it ends; returns its returncode."""
        return self._native.wait()

    async def wait_ready_async(self) -> float:
        """``wait_ready`` without blocking the event loop."""
        return await asyncio.get_running_loop().run_in_executor(None, self.wait_ready)

    async def stop_async(self, grace: float | None = None) -> int | None:
        """``stop`` without blocking the event loop."""
        return await asyncio.get_running_loop().run_in_executor(None, functools.partial(self.stop, grace))

    async def wait_async(self) -> int | None:
        """``wait`` without blocking the event loop."""
        return await asyncio.get_running_loop().run_in_executor(None, self.wait)

    def __enter__(self) -> AgentProcess:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"AgentProcess(pid={self.pid}, returncode={self.returncode})"
