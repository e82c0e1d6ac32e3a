"""SimulatedMeter: physics that hold together, energy that only grows, events, overrides."""

from __future__ import annotations

from datetime import datetime

import pytest

from firmware_bridge.modbus.profiles import load_profile
from sim.meter import ALL_PHASES, SimulatedMeter, VoltageEvent
from sim.modbus_server import register_image

SDM630 = load_profile("eastron_sdm630")
SDM120 = load_profile("eastron_sdm120")
EM24 = load_profile("carlo_gavazzi_em24")
WATER = load_profile("advantech_adam6050_water")
START = datetime(2024, 5, 6, 19, 0)


class ConstantLoad:
    def __init__(self, watts: float) -> None:
        self.watts = watts

    def power_w(self, ts: datetime) -> float:
        return self.watts


def test_a_three_phase_meter_serves_every_point_of_its_profile_consistently() -> None:
    meter = SimulatedMeter(SDM630, ConstantLoad(3000.0), start=START, seed=1)
    v = meter.values_at(0.0)
    assert set(v) == set(SDM630.point_names)
    for phase in (1, 2, 3):
        assert 225.0 < v[f"voltage_l{phase}"] < 235.0
        assert v[f"current_l{phase}"] == pytest.approx(
            v[f"power_l{phase}"] / v[f"voltage_l{phase}"]
        )
    assert v["total_power"] == pytest.approx(3000.0)
    assert v["power_l1"] + v["power_l2"] + v["power_l3"] == pytest.approx(v["total_power"])
    assert v["power_l1"] > v["power_l2"] > v["power_l3"] > 0
    assert 49.9 < v["frequency"] < 50.1
    assert dict(meter.last_values) == v


def test_a_single_phase_meter_carries_the_whole_load() -> None:
    meter = SimulatedMeter(SDM120, ConstantLoad(1150.0), start=START, voltage_noise_v=0.0)
    v = meter.values_at(0.0)
    assert set(v) == set(SDM120.point_names)
    assert v["voltage"] == 230.0
    assert v["power"] == 1150.0
    assert v["current"] == pytest.approx(5.0)


def test_import_energy_integrates_power_and_never_decreases() -> None:
    meter = SimulatedMeter(SDM630, ConstantLoad(3600.0), start=START, initial_energy_kwh=100.0)
    energies = [meter.values_at(t)["import_energy"] for t in range(0, 1001, 10)]
    assert energies == sorted(energies)
    assert energies[-1] == pytest.approx(101.0)  # 3.6 kW for 1000 s = 1 kWh
    assert meter.values_at(500.0)["import_energy"] == pytest.approx(101.0)  # time went back
    assert meter.values_at(1000.0)["total_energy"] == pytest.approx(101.0)


def test_a_voltage_event_pins_l1_outside_en_50160_then_ends() -> None:
    swell = VoltageEvent(start_s=10.0, duration_s=5.0, voltage_v=262.0)
    meter = SimulatedMeter(SDM630, ConstantLoad(2000.0), start=START, voltage_events=[swell])
    assert meter.values_at(9.9)["voltage_l1"] != 262.0
    during = meter.values_at(12.0)
    assert during["voltage_l1"] == 262.0
    assert not 207.0 <= during["voltage_l1"] <= 253.0
    assert during["voltage_l2"] != 262.0
    assert during["current_l1"] == pytest.approx(during["power_l1"] / 262.0)
    assert meter.values_at(15.0)["voltage_l1"] != 262.0


def test_a_repeating_event_on_all_phases() -> None:
    dip = VoltageEvent(
        start_s=0.0, duration_s=1.0, voltage_v=195.0, period_s=10.0, phases=ALL_PHASES
    )
    meter = SimulatedMeter(SDM630, ConstantLoad(2000.0), start=START, voltage_events=[dip])
    for t in (0.5, 10.5, 20.0, 990.9):
        v = meter.values_at(t)
        assert v["voltage_l1"] == v["voltage_l2"] == v["voltage_l3"] == 195.0
    assert meter.values_at(1001.5)["voltage_l3"] != 195.0


def test_an_outage_carries_no_load() -> None:
    outage = VoltageEvent(start_s=0.0, duration_s=60.0, voltage_v=0.0, phases=(2,))
    meter = SimulatedMeter(SDM630, ConstantLoad(3000.0), start=START, voltage_events=[outage])
    v = meter.values_at(1.0)
    assert v["voltage_l2"] == 0.0
    assert v["power_l2"] == 0.0
    assert v["current_l2"] == 0.0
    assert v["total_power"] == pytest.approx(v["power_l1"] + v["power_l3"])


def test_overrides_pin_a_point_until_released() -> None:
    meter = SimulatedMeter(SDM630, ConstantLoad(1000.0), start=START)
    meter.override("voltage_l1", 262.0)
    assert meter.values_at(0.0)["voltage_l1"] == 262.0
    assert meter.last_values["voltage_l1"] == 262.0
    assert dict(meter.overrides) == {"voltage_l1": 262.0}
    meter.override("voltage_l1", None)
    assert meter.values_at(1.0)["voltage_l1"] != 262.0
    with pytest.raises(KeyError):
        meter.override("voltage_l9", 1.0)


def test_the_same_seed_gives_the_same_meter() -> None:
    a, b = (SimulatedMeter(SDM630, ConstantLoad(900.0), start=START, seed=5) for _ in range(2))
    assert [a.values_at(t) for t in range(5)] == [b.values_at(t) for t in range(5)]


def test_served_registers_are_encoded_from_the_profile() -> None:
    meter = SimulatedMeter(SDM120, ConstantLoad(0.0), start=START)
    meter.override("voltage", 230.0)
    meter.override("total_energy", 1_000_000.0)
    image = register_image(SDM120, meter.values_at(0.0))
    assert set(image) == {"input"}
    assert image["input"][0x00:0x02] == [0x4366, 0x0000]
    assert image["input"][0x156:0x158] == [0x4974, 0x2400]
    assert len(image["input"]) == 0x158


def test_a_water_meter_serves_a_volume_that_integrates_the_flow() -> None:
    meter = SimulatedMeter(
        WATER, ConstantLoad(2000.0), start=START, initial_volume_m3=50.0, water_m3_h_per_kw=0.1
    )
    volumes = [meter.values_at(t)["volume"] for t in range(0, 3601, 60)]
    assert set(meter.last_values) == {"volume"}
    assert volumes == sorted(volumes)
    assert volumes[-1] == pytest.approx(50.2)  # 0.2 m3/h (2 kW x 0.1) for an hour
    assert meter.values_at(10.0)["volume"] == pytest.approx(50.2)  # time went back: no change


def test_served_integer_registers_carry_scale_and_low_word_first() -> None:
    em24 = SimulatedMeter(EM24, ConstantLoad(0.0), start=START)
    em24.override("power_l3", -1234.5)
    em24.override("import_energy", 123456.7)
    image = register_image(EM24, em24.values_at(0.0))
    assert set(image) == {"input"}
    assert image["input"][0x16:0x18] == [0xCFC7, 0xFFFF]  # -12345, low word first
    assert image["input"][0x3E:0x40] == [0xD687, 0x0012]  # 1234567 tenths of a kWh
    water = SimulatedMeter(WATER, ConstantLoad(0.0), start=START, initial_volume_m3=1234.567)
    assert register_image(WATER, water.values_at(0.0)) == {"holding": [0xD687, 0x0012]}


def test_bad_events_and_shares_are_refused() -> None:
    with pytest.raises(ValueError, match="duration_s"):
        VoltageEvent(start_s=0.0, duration_s=0.0, voltage_v=230.0)
    with pytest.raises(ValueError, match="period_s"):
        VoltageEvent(start_s=0.0, duration_s=5.0, voltage_v=230.0, period_s=1.0)
    with pytest.raises(ValueError, match="phases"):
        VoltageEvent(start_s=0.0, duration_s=5.0, voltage_v=230.0, phases=(4,))
    with pytest.raises(ValueError, match="phase_shares"):
        SimulatedMeter(SDM630, ConstantLoad(1.0), start=START, phase_shares=(0.5, 0.5, 0.5))
    with pytest.raises(ValueError, match="water_m3_h_per_kw"):
        SimulatedMeter(WATER, ConstantLoad(1.0), start=START, water_m3_h_per_kw=-1.0)
