"""A deterministic daily electrical load for a residential building.

The shape, in the building's local time (the hour of the ``datetime`` you pass)::

    W
    |                                         evening peak (19:00)
    |              morning peak                  ___
    |               (07:30 Mon-Fri,             /   \\
    |                09:00 Sat-Sun)   midday   /     \\
    |         ___/\\___ ........................      \\____
    |________/                 (weekends only)              \\______ night base load
    +-----------------------------------------------------------------> hour
    0        6        9        12        15        18        21       24

    power(h) = base + morning * g(h; mu_m, 1.0 h) + evening * g(h; 19.0, 1.6 h)
               + (weekends) midday * g(h; 13.0, 2.5 h)

where ``g`` is a Gaussian bump of height 1 measured on the 24-hour circle (so the evening peak
wraps smoothly past midnight). On weekends the morning peak is 1.5 h later and 30 % lower, and a
midday plateau appears (people at home). With ``noise > 0`` and a ``seed``, each
``noise_step_s`` time slot gets a multiplicative factor ``1 + noise * N(0, 1)`` drawn from a
generator seeded by ``(seed, slot)``: the same time and seed always give the same power, in any
order of calls. The result is never negative.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

_EPOCH = datetime(2000, 1, 1)  # naive on purpose: noise slots follow the building's wall time


class LoadProfile(Protocol):
    """Anything that says how much power a building draws at a given time."""

    def power_w(self, ts: datetime) -> float:
        """Active power in W at ``ts`` (local time of the building)."""
        ...


def _bump(hour: float, centre: float, width: float) -> float:
    """A Gaussian bump of height 1 on the 24-hour circle."""
    distance = abs(hour - centre) % 24.0
    distance = min(distance, 24.0 - distance)
    return math.exp(-0.5 * (distance / width) ** 2)


@dataclass(frozen=True, slots=True)
class ResidentialLoadProfile:
    """A residential building's daily load; see the module docstring for the shape."""

    base_w: float = 300.0
    morning_peak_w: float = 1800.0
    evening_peak_w: float = 3200.0
    weekend_midday_w: float = 900.0
    noise: float = 0.0
    seed: int | None = None
    noise_step_s: int = 60

    def __post_init__(self) -> None:
        if min(self.base_w, self.morning_peak_w, self.evening_peak_w, self.weekend_midday_w) < 0:
            raise ValueError("powers must be >= 0")
        if self.noise < 0 or self.noise_step_s <= 0:
            raise ValueError("noise must be >= 0 and noise_step_s > 0")

    def shape_w(self, ts: datetime) -> float:
        """The noise-free power in W at ``ts``."""
        hour = ts.hour + ts.minute / 60.0 + ts.second / 3600.0 + ts.microsecond / 3.6e9
        weekend = ts.weekday() >= 5
        morning_centre, morning_height = (9.0, 0.7) if weekend else (7.5, 1.0)
        power = (
            self.base_w
            + self.morning_peak_w * morning_height * _bump(hour, morning_centre, 1.0)
            + self.evening_peak_w * _bump(hour, 19.0, 1.6)
        )
        if weekend:
            power += self.weekend_midday_w * _bump(hour, 13.0, 2.5)
        return power

    def power_w(self, ts: datetime) -> float:
        """The power in W at ``ts``, with the seeded noise if any; never negative."""
        power = self.shape_w(ts)
        if self.noise > 0 and self.seed is not None:
            seconds = (ts.replace(tzinfo=None) - _EPOCH).total_seconds()
            slot = math.floor(seconds / self.noise_step_s)
            factor = 1.0 + self.noise * random.Random(f"{self.seed}:{slot}").gauss(0.0, 1.0)
            power *= factor
        return max(0.0, power)


_DEFAULT = ResidentialLoadProfile()


def power_w(ts: datetime, seed: int | None = None, noise: float = 0.05) -> float:
    """The default residential profile's power at ``ts``; seeded noise when ``seed`` is given."""
    if seed is None:
        return _DEFAULT.power_w(ts)
    return ResidentialLoadProfile(noise=noise, seed=seed).power_w(ts)
