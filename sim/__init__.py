"""A building in software: load profiles, simulated meters and gate controllers, Modbus servers
that answer like them.

Depends on ``firmware_bridge`` for the device profiles only, so the simulator serves exactly the
register maps the gateway reads.
"""

from sim.gate import (
    Coil,
    DenyReason,
    GateAddressError,
    GateEvent,
    GateState,
    OpenedBy,
    RandomActivity,
    SimulatedGate,
)
from sim.load_profile import LoadProfile, ResidentialLoadProfile, power_w
from sim.meter import ALL_PHASES, SimulatedMeter, VoltageEvent
from sim.modbus_server import (
    SimulatedBuilding,
    drive_gates,
    meters_for,
    register_image,
    serve_building,
)

__all__ = [
    "ALL_PHASES",
    "Coil",
    "DenyReason",
    "GateAddressError",
    "GateEvent",
    "GateState",
    "LoadProfile",
    "OpenedBy",
    "RandomActivity",
    "ResidentialLoadProfile",
    "SimulatedBuilding",
    "SimulatedGate",
    "SimulatedMeter",
    "VoltageEvent",
    "drive_gates",
    "meters_for",
    "power_w",
    "register_image",
    "serve_building",
]
