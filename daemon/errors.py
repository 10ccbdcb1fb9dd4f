"""The error hierarchy of depthd.

    DepthdError
    ├── ConfigError          config.toml is unreadable, has an unknown key, a wrong type or a bad value
    ├── InputError           a replay input is malformed or truncated (names file and line)
    ├── LocalError           our fault: a bug or an illegal state transition inside depthd
    │   └── IllegalTransition    a state machine got an event its table does not allow
    ├── VenueError           the venue's fault: a message or answer that breaks its protocol
    ├── ModelError           a model file is unreadable, not depthd's, or does not fit the feature schema
    └── ControlError         `depthd kill/resume/status` could not get an answer from the daemon

Errors carry enough context to act on without a traceback.
"""

from __future__ import annotations


class DepthdError(Exception):
    """Base of every error depthd raises on purpose."""


class ConfigError(DepthdError):
    """The configuration is invalid; the message names the file and the key."""


class InputError(DepthdError):
    """A replay input is malformed or truncated; the message names the file and the line."""

    def __init__(self, path: str, line: int | None, problem: str) -> None:
        self.path = path
        self.line = line
        self.problem = problem
        where = f"{path}:{line}" if line is not None else path
        super().__init__(f"{where}: {problem}")


class LocalError(DepthdError):
    """Our fault: depthd reached a state it should never reach."""


class IllegalTransition(LocalError):
    """A state machine was fed an event that its transition table does not allow in that state."""

    def __init__(self, machine: str, state: str, event: str) -> None:
        self.machine = machine
        self.state = state
        self.event = event
        super().__init__(f"{machine}: event {event} is not allowed in state {state}")


class VenueError(DepthdError):
    """The venue's fault: a message or response that breaks the venue's protocol."""


class ModelError(DepthdError):
    """A model cannot be used: unreadable, missing depthd metadata, or trained on other features."""


class ControlError(DepthdError):
    """The control endpoint of a running daemon could not be reached or refused the request."""
