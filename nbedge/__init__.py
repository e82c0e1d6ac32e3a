"""Shared kernel of the nbedge distribution: the version and the error hierarchy.

The working packages are ``firmware_bridge``, ``edge``, ``models``, ``cloud_sync`` and ``sim``;
this one holds only what all of them must agree on.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("nbedge")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0"

__all__ = ["__version__"]
