"""Typed errors of the runtime core.

Inside the runtime, errors carry their context (the path, the value, the errno).
At the edge (CLI, magics) each becomes one line for the user: ``str(error)``
is always that line, written to say what went wrong and how to fix it.
"""

from __future__ import annotations


class ContainerError(Exception):
    """Base of every error the runtime reports to a user (exit status 125)."""

    exit_code = 125


class SpecError(ContainerError, ValueError):
    """A container specification or option value is invalid."""


class NotFound(ContainerError, LookupError):
    """No container, image or network has that name."""


class Conflict(ContainerError):
    """The name is taken, or the container is in the wrong state for the verb."""


class HostUnsupported(ContainerError):
    """The host lacks a kernel feature the request needs (see `containerlab-magic doctor`)."""


class RuntimeFailure(ContainerError):
    """Setting up or running the container failed for a reason outside the spec."""
