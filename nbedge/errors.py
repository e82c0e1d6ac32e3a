"""One error hierarchy, grouped by what the caller should do about it.

| class               | the caller should                                   |
|---------------------|-----------------------------------------------------|
| ``ConfigError``     | stop and tell the installer (exit status 78)        |
| ``DeviceUnavailable`` | retry later with backoff; the device may come back |
| ``DecodeError``     | drop the input and count it                         |
| ``StoreFull``       | keep what you hold in memory and retry later        |
| ``UplinkUnavailable`` | keep the records buffered and retry later         |
| ``UplinkRejected``  | keep the records buffered; a person must look       |
|                     | (a refused record is set aside; the rest flows)     |
| ``ModelRejected``   | keep the model in use; a person must look           |
| ``InvalidOutput``   | go back to the previous model and count it          |

Third-party errors are wrapped at the edge with ``raise ... from exc``.
"""

from __future__ import annotations

from dataclasses import dataclass

EX_CONFIG = 78  # sysexits.h: configuration error


class NbedgeError(Exception):
    """Base of every error nbedge raises on purpose."""


@dataclass(frozen=True, slots=True)
class ConfigIssue:
    """One problem in a configuration file: where it is and what is wrong."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class ConfigError(NbedgeError):
    """The configuration cannot be used. Carries every issue found, not just the first."""

    def __init__(self, source: str, issues: list[ConfigIssue]) -> None:
        self.source = source
        self.issues = issues
        lines = "\n".join(f"  {issue}" for issue in issues)
        super().__init__(f"{source}: {len(issues)} error(s)\n{lines}")


class DeviceUnavailable(NbedgeError):
    """A field device did not answer (timeout, connection refused, bus error). Retry later."""

    def __init__(self, device: str, reason: str) -> None:
        self.device = device
        self.reason = reason
        super().__init__(f"{device}: {reason}")


class DeviceRefused(DeviceUnavailable):
    """A field device answered with a Modbus exception reply: it is there but refused."""

    def __init__(self, device: str, reason: str, exception_code: int) -> None:
        super().__init__(device, reason)
        self.exception_code = exception_code


class DecodeError(NbedgeError):
    """Input from a device or a peer could not be decoded. Drop it and count it."""


class StoreFull(NbedgeError):
    """The disk under the store is full: SQLite could not write, even after the store freed its
    reserve and evicted what it may. Nothing was written; keep what you hold in memory and retry
    later (the store evicts, or space comes back)."""

    def __init__(self, operation: str, free_bytes: int) -> None:
        self.operation = operation
        self.free_bytes = free_bytes
        super().__init__(f"store disk full ({free_bytes} bytes free): {operation} not written")


class UplinkUnavailable(NbedgeError):
    """The central API could not be reached or failed temporarily. Keep records buffered."""

    def __init__(self, reason: str, retry_after_s: float | None = None) -> None:
        self.reason = reason
        self.retry_after_s = retry_after_s
        super().__init__(reason)


class UplinkRejected(NbedgeError):
    """The central API refused the gateway itself (401, 403, no wire version in common), not a
    record of it (those are set aside, see ``cloud_sync.client``). Records stay buffered; a
    person must look."""

    def __init__(self, status: int, detail: str) -> None:
        self.status = status
        self.detail = detail
        super().__init__(f"central API refused the batch ({status}): {detail}")


class ModelRejected(NbedgeError):
    """A model bundle failed a check (files, sha256, signature, feature version, self-test).

    The model in use stays in use.
    """

    def __init__(self, bundle: str, reason: str) -> None:
        self.bundle = bundle
        self.reason = reason
        super().__init__(f"model bundle {bundle} refused: {reason}")


class InvalidOutput(NbedgeError):
    """A model returned output of the wrong shape or not finite. Fall back and count it."""
