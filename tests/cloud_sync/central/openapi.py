"""The central API's OpenAPI document, read from the application itself, so that the tests that
must cover every operation or every integer parameter cover the ones added later too."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from pydantic import SecretStr

from cloud_sync.central import CentralSettings, create_app


@functools.cache
def api_document() -> dict[str, Any]:
    """The OpenAPI document, as ``GET /openapi.json`` serves it."""
    settings = CentralSettings(database_url="sqlite://", platform_token=SecretStr("x" * 32))
    return create_app(settings).openapi()


def operations() -> list[tuple[str, str, dict[str, Any]]]:
    """Every operation: its method (upper case), its path template and its description."""
    return [
        (method.upper(), path, operation)
        for path, item in api_document()["paths"].items()
        for method, operation in item.items()
    ]


@dataclass(frozen=True)
class IntegerParameter:
    """An integer query or path parameter of one operation, with its bounds (None if unbounded)."""

    method: str
    path: str
    where: str
    name: str
    minimum: int | None
    maximum: int | None

    def __str__(self) -> str:
        return f"{self.method} {self.path} {self.name}"

    def request(self, site_id: str, value: str | int) -> tuple[str, dict[str, str]]:
        """The URL and query parameters of a request that passes ``value`` to this parameter."""
        if self.where == "path":
            return self.path.format(**{"site_id": site_id, self.name: value}), {}
        return fill(self.path, site_id), {self.name: str(value)}

    def bounds(self) -> tuple[int, int]:
        """``(minimum, maximum)``; fails the test if the document leaves either out."""
        assert self.minimum is not None, f"{self}: no minimum in OpenAPI"
        assert self.maximum is not None, f"{self}: no maximum in OpenAPI"
        return self.minimum, self.maximum

    def holds(self, value: int) -> bool:
        """Whether ``value`` is within the bounds the document states."""
        low_ok = self.minimum is None or value >= self.minimum
        return low_ok and (self.maximum is None or value <= self.maximum)


def integer_parameters() -> list[IntegerParameter]:
    """Every integer parameter of every operation."""
    found = []
    for method, path, operation in operations():
        for parameter in operation.get("parameters", []):
            schema = parameter.get("schema", {})
            if schema.get("type") == "integer":
                found.append(
                    IntegerParameter(
                        method=method,
                        path=path,
                        where=parameter["in"],
                        name=parameter["name"],
                        minimum=schema.get("minimum"),
                        maximum=schema.get("maximum"),
                    )
                )
    return found


def fill(path: str, site_id: str, gateway_id: str = "gw-1", alert_id: str = "a1") -> str:
    """A path template with its parameters filled in."""
    return path.format(site_id=site_id, gateway_id=gateway_id, alert_id=alert_id)
