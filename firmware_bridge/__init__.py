"""Field-bus I/O: Modbus meters and gate controllers, BLE door sensors.

This package reads devices and yields typed values. It knows nothing of storage, models or
the cloud.
"""

from firmware_bridge.events import AccessEvent, AccessEventKind
from firmware_bridge.readings import Reading

__all__ = ["AccessEvent", "AccessEventKind", "Reading"]
