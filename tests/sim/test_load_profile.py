"""The residential load profile: its documented shape, weekday/weekend, deterministic noise."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from sim.load_profile import ResidentialLoadProfile, power_w

MONDAY = datetime(2024, 5, 6)
SATURDAY = datetime(2024, 5, 11)


def at(day: datetime, hour: float) -> datetime:
    return day + timedelta(hours=hour)


def test_night_base_load_morning_and_evening_peaks_on_a_weekday() -> None:
    profile = ResidentialLoadProfile()
    night, morning, noon, evening = (profile.power_w(at(MONDAY, h)) for h in (3, 7.5, 13, 19))
    assert night < 1.05 * profile.base_w
    assert morning > 4 * night
    assert evening > 8 * night
    assert evening > morning > noon > night
    assert max(profile.power_w(at(MONDAY, h / 4)) for h in range(96)) == evening


def test_weekends_sleep_in_and_stay_home_at_noon() -> None:
    profile = ResidentialLoadProfile()
    assert profile.power_w(at(SATURDAY, 7.5)) < profile.power_w(at(MONDAY, 7.5))
    assert profile.power_w(at(SATURDAY, 9)) > profile.power_w(at(MONDAY, 9))
    assert profile.power_w(at(SATURDAY, 13)) > 2 * profile.power_w(at(MONDAY, 13))


def test_the_evening_peak_wraps_smoothly_past_midnight() -> None:
    profile = ResidentialLoadProfile()
    before, after = profile.power_w(at(MONDAY, 23.99)), profile.power_w(at(MONDAY, 24.01))
    assert abs(before - after) < 1.0


def test_noise_is_seeded_deterministic_and_constant_within_a_slot() -> None:
    noisy = ResidentialLoadProfile(noise=0.1, seed=42)
    ts = at(MONDAY, 19)
    assert noisy.power_w(ts) == ResidentialLoadProfile(noise=0.1, seed=42).power_w(ts)
    assert noisy.power_w(ts) != ResidentialLoadProfile(noise=0.1, seed=43).power_w(ts)
    assert noisy.power_w(ts) != noisy.shape_w(ts)
    slot_start = noisy.power_w(ts) / noisy.shape_w(ts)
    assert (
        noisy.power_w(ts + timedelta(seconds=30)) / noisy.shape_w(ts + timedelta(seconds=30))
        == slot_start
    )
    # The same wall time gives the same power whatever the time zone label.
    assert noisy.power_w(ts.replace(tzinfo=UTC)) == noisy.power_w(ts)


def test_without_a_seed_there_is_no_noise() -> None:
    assert ResidentialLoadProfile(noise=0.5).power_w(at(MONDAY, 19)) == power_w(at(MONDAY, 19))
    assert power_w(at(MONDAY, 19), seed=1) == power_w(at(MONDAY, 19), seed=1)


@given(
    ts=st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1)),
    seed=st.integers(0, 2**32),
)
def test_power_is_never_negative_even_with_wild_noise(ts: datetime, seed: int) -> None:
    assert ResidentialLoadProfile(noise=2.0, seed=seed).power_w(ts) >= 0.0
