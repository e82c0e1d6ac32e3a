"""A building in software: load profiles, simulated meters, Modbus servers that answer like them.

Depends on ``firmware_bridge`` for the device profiles only, so the simulator serves exactly the
register maps the gateway reads.
"""

from sim.load_profile import LoadProfile, ResidentialLoadProfile, power_w
from sim.meter import ALL_PHASES, SimulatedMeter, VoltageEvent
from sim.modbus_server import SimulatedBuilding, meters_for, register_image, serve_building

__all__ = [
    "ALL_PHASES",
    "LoadProfile",
    "ResidentialLoadProfile",
    "SimulatedBuilding",
    "SimulatedMeter",
    "VoltageEvent",
    "meters_for",
    "power_w",
    "register_image",
    "serve_building",
]
