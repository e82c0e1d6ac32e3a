"""Modbus: device profiles (register maps as data), read planning and decoding, the bus owner
(TCP or RTU), and the unit-id scan."""

from firmware_bridge.modbus.bus import (
    BusStatus,
    ConnectionState,
    DeviceSpec,
    DeviceState,
    DeviceStatus,
    ModbusBus,
    ModbusTcpBus,
    SerialLine,
    TcpLink,
)
from firmware_bridge.modbus.plan import ReadBlock, decode_block, encode_point, plan_reads
from firmware_bridge.modbus.profiles import (
    DeviceProfile,
    PointSpec,
    available_profiles,
    load_profile,
)

__all__ = [
    "BusStatus",
    "ConnectionState",
    "DeviceProfile",
    "DeviceSpec",
    "DeviceState",
    "DeviceStatus",
    "ModbusBus",
    "ModbusTcpBus",
    "PointSpec",
    "ReadBlock",
    "SerialLine",
    "TcpLink",
    "available_profiles",
    "decode_block",
    "encode_point",
    "load_profile",
    "plan_reads",
]
