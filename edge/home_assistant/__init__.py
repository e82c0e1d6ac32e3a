"""The building in Home Assistant, through its MQTT discovery (docs/home-assistant.md).

- :mod:`edge.home_assistant.causes`: alert causes, their ids, those the configuration implies;
- :mod:`edge.home_assistant.discovery`: the entities' discovery configs and states (no I/O);
- :mod:`edge.home_assistant.bridge`: what the local publisher sends for them, presses in.
"""

from edge.home_assistant.bridge import HomeAssistantBridge, Message
from edge.home_assistant.causes import Cause, known_causes, safe_id
from edge.home_assistant.discovery import MAIN_POINTS, PRESS, UNITS, Discovery, main_sensors

__all__ = [
    "MAIN_POINTS",
    "PRESS",
    "UNITS",
    "Cause",
    "Discovery",
    "HomeAssistantBridge",
    "Message",
    "known_causes",
    "main_sensors",
    "safe_id",
]
