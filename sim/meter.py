"""A simulated energy or water meter: every point of a device profile computed at a time, no I/O.

:class:`SimulatedMeter` knows the quantities an electricity meter and a water meter measure and
serves the ones its profile names:

- ``voltage_l1..l3`` (``voltage`` on a single-phase meter): nominal (230 V) plus seeded noise,
  or the voltage of an active :class:`VoltageEvent`; a phase under 1 V is out and carries no load;
- ``power_l1..l3`` (``power``): the load profile's power split over the phases by fixed shares;
- ``total_power``: their sum; ``current_*`` = phase power / phase voltage;
- ``frequency``: nominal (50 Hz) plus a little seeded noise;
- ``import_energy`` and ``total_energy`` (kWh): the power integrated over time (trapezoids),
  never decreasing; ``export_energy`` stays 0;
- ``flow`` (m3/h): water drawn, ``water_m3_h_per_kw`` times the load in kW (a household draws
  water when it is active: the load profile stands in for both), and ``volume`` (m3) that flow
  integrated like energy, never decreasing. Any other point name is served as 0.0.

Time ``t`` is seconds since the simulator started; the load profile sees ``start + t``. Energy is
state: it integrates between successive calls of :meth:`SimulatedMeter.values_at` and does not move
when ``t`` goes backwards. :meth:`SimulatedMeter.override` pins a point to a value (tests use it to
know exactly what is served); :attr:`SimulatedMeter.last_values` is what the last call returned.
:meth:`SimulatedMeter.reset_counters` puts energy and volume back to 0, as a meter that reboots
(or is replaced) does.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Final

from firmware_bridge.modbus.profiles import DeviceProfile
from sim.load_profile import LoadProfile

ALL_PHASES: Final = (1, 2, 3)
OUTAGE_BELOW_V: Final = 1.0
_SINGLE_PHASE_ALIASES: Final = {
    "voltage": "voltage_l1",
    "current": "current_l1",
    "power": "power_l1",
}


@dataclass(frozen=True, slots=True)
class VoltageEvent:
    """``phases`` sit at ``voltage_v`` from ``start_s`` for ``duration_s``, every ``period_s``.

    Times are seconds since the simulator started. ``phases=(1,)`` affects L1 only (the single
    phase of a single-phase meter); ``ALL_PHASES`` affects all three. 262 V is outside
    EN 50160's 230 V +-10 %; 0 V is an outage.
    """

    start_s: float
    duration_s: float
    voltage_v: float
    period_s: float | None = None
    phases: tuple[int, ...] = (1,)

    def __post_init__(self) -> None:
        if self.duration_s <= 0 or self.voltage_v < 0:
            raise ValueError("duration_s must be > 0 and voltage_v >= 0")
        if self.period_s is not None and self.period_s < self.duration_s:
            raise ValueError("period_s must be at least duration_s")
        if not self.phases or any(p not in ALL_PHASES for p in self.phases):
            raise ValueError(f"phases must be a non-empty subset of {ALL_PHASES}")

    def active(self, t: float) -> bool:
        """Whether the event holds at ``t``."""
        if t < self.start_s:
            return False
        elapsed = t - self.start_s
        if self.period_s is not None:
            elapsed %= self.period_s
        return elapsed < self.duration_s


class SimulatedMeter:
    """Computes the points of ``profile`` from a load profile and a voltage event schedule."""

    def __init__(
        self,
        profile: DeviceProfile,
        load: LoadProfile,
        *,
        start: datetime,
        seed: int = 0,
        voltage_events: Sequence[VoltageEvent] = (),
        nominal_voltage_v: float = 230.0,
        voltage_noise_v: float = 0.8,
        frequency_hz: float = 50.0,
        initial_energy_kwh: float = 0.0,
        initial_volume_m3: float = 0.0,
        water_m3_h_per_kw: float = 0.1,
        phase_shares: tuple[float, float, float] = (0.40, 0.33, 0.27),
    ) -> None:
        if abs(sum(phase_shares) - 1.0) > 1e-9 or min(phase_shares) < 0:
            raise ValueError("phase_shares must be >= 0 and sum to 1")
        if water_m3_h_per_kw < 0 or initial_volume_m3 < 0:
            raise ValueError("water_m3_h_per_kw and initial_volume_m3 must be >= 0")
        self.profile = profile
        self.load = load
        self.start = start
        self.voltage_events = tuple(voltage_events)
        self.nominal_voltage_v = nominal_voltage_v
        self.voltage_noise_v = voltage_noise_v
        self.frequency_hz = frequency_hz
        names = set(profile.point_names)
        self.phases = 3 if {"voltage_l2", "power_l2", "current_l2"} & names else 1
        self._shares = phase_shares if self.phases == 3 else (1.0, 0.0, 0.0)
        self._rng = random.Random(seed)
        self._energy_kwh = initial_energy_kwh
        self.water_m3_h_per_kw = water_m3_h_per_kw
        self._volume_m3 = initial_volume_m3
        self._last_t: float | None = None
        self._last_power_w = 0.0
        self._last_flow_m3_h = 0.0
        self._overrides: dict[str, float] = {}
        self._last_values: dict[str, float] = {}

    @property
    def last_values(self) -> Mapping[str, float]:
        """What the last :meth:`values_at` returned (overrides applied): what was served."""
        return MappingProxyType(self._last_values)

    @property
    def overrides(self) -> Mapping[str, float]:
        """The points pinned by :meth:`override`."""
        return MappingProxyType(self._overrides)

    def override(self, point: str, value: float | None) -> None:
        """Pin ``point`` to ``value``; ``None`` unpins it. KeyError if the profile lacks it."""
        self.profile.point(point)
        if value is None:
            self._overrides.pop(point, None)
        else:
            self._overrides[point] = float(value)

    def reset_counters(self) -> None:
        """Energy and water volume start again from 0 (a reboot or a replaced meter)."""
        self._energy_kwh = 0.0
        self._volume_m3 = 0.0

    def voltage_at(self, t: float, phase: int) -> float | None:
        """The voltage an active event imposes on ``phase`` at ``t``, or None."""
        for event in self.voltage_events:
            if phase in event.phases and event.active(t):
                return event.voltage_v
        return None

    def values_at(self, t: float) -> dict[str, float]:
        """Every point of the profile at ``t`` s since start; integrates energy up to ``t``."""
        total_w = max(0.0, self.load.power_w(self.start + timedelta(seconds=t)))
        quantities: dict[str, float] = {}
        phase_total = 0.0
        for phase in range(1, self.phases + 1):
            imposed = self.voltage_at(t, phase)
            volts = imposed if imposed is not None else self._noisy_voltage()
            watts = total_w * self._shares[phase - 1] if volts >= OUTAGE_BELOW_V else 0.0
            quantities[f"voltage_l{phase}"] = volts
            quantities[f"power_l{phase}"] = watts
            quantities[f"current_l{phase}"] = watts / volts if volts >= OUTAGE_BELOW_V else 0.0
            phase_total += watts
        flow_m3_h = self.water_m3_h_per_kw * total_w / 1000.0
        self._integrate(t, phase_total, flow_m3_h)
        quantities["total_power"] = phase_total
        quantities["frequency"] = self.frequency_hz + self._rng.gauss(0.0, 0.02)
        quantities["import_energy"] = self._energy_kwh
        quantities["export_energy"] = 0.0
        quantities["total_energy"] = self._energy_kwh
        quantities["flow"] = flow_m3_h
        quantities["volume"] = self._volume_m3
        for alias, quantity in _SINGLE_PHASE_ALIASES.items():
            quantities[alias] = quantities[quantity]
        values = {name: quantities.get(name, 0.0) for name in self.profile.point_names}
        values.update(self._overrides)
        self._last_values = values
        return dict(values)

    def _noisy_voltage(self) -> float:
        return self.nominal_voltage_v + self._rng.gauss(0.0, self.voltage_noise_v)

    def _integrate(self, t: float, power_w: float, flow_m3_h: float) -> None:
        if self._last_t is not None and t > self._last_t:
            mean_w = (self._last_power_w + power_w) / 2.0
            self._energy_kwh += mean_w * (t - self._last_t) / 3.6e6
            mean_m3_h = (self._last_flow_m3_h + flow_m3_h) / 2.0
            self._volume_m3 += mean_m3_h * (t - self._last_t) / 3600.0
        if self._last_t is None or t > self._last_t:
            self._last_t = t
            self._last_power_w = power_w
            self._last_flow_m3_h = flow_m3_h
