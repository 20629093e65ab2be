"""Error types. Raised for bad input only; a gang that does not fit is a Placement, not an error."""
from __future__ import annotations


class GangplaceError(Exception):
    """Base of every error gangplace raises on purpose.

    ``field`` names the offending input field (dotted path, e.g. ``nodes[3].gpus``) so adapters can
    echo it back: the CLI prints it, the extender puts it in a reason, gRPC in INVALID_ARGUMENT.
    """

    def __init__(self, message: str, *, field: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field

    def __str__(self) -> str:  # one line, field first: "nodes[3].gpus: must be >= 0, got -1"
        return f"{self.field}: {self.message}" if self.field else self.message


class InvalidTopology(GangplaceError):
    """The cluster description is inconsistent (levels, labels, duplicate nodes, capacities)."""


class InvalidRequest(GangplaceError):
    """A gang request is malformed or names things the cluster does not have."""


class InvalidFile(GangplaceError):
    """A file could not be read or parsed (wrong format, unreadable, not a mapping)."""


class SolverError(GangplaceError):
    """The exact solver failed in a way that is not a timeout (callers fall back to the heuristic)."""
