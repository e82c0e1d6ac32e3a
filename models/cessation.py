"""Cessation detection: a dwelling whose water and electricity use stops while normally active.

The case that matters most to a neighbourhood is a resident living alone whose use of water and
electricity stops (a fall, an illness) at a time when the dwelling is normally in use. This module
raises it in two stages, each once per episode, with a score and a short reason ("no electricity
use for 3 h, usually active in 2.8 of these hours"): ``use_quiet`` within about 3 hours of the
stop (a warning: someone phones to check in), then ``use_stopped`` (critical: someone visits)
when a door or motion sensor agrees or the quiet goes on past a longer window (see *Two stages*
below).

Why a per-dwelling statistical model and not a learnt classifier (and so no ONNX here): no labelled
stops exist to learn from, every dwelling has its own rhythm, and what must be controlled is the
false-alarm rate of each dwelling, which only that dwelling's own history can calibrate. The model
is a handful of numbers per meter (an activity threshold and 168 probabilities) fitted from the
meter's own recent weeks, stored as a JSON-able dict, refitted weekly on the gateway in plain numpy.

Model, per meter (electricity in kWh per window, water in litres or pulses per window):

- Activity. A window is *active* when its use exceeds the meter's base load (fridge, standby, a
  dripping tap) by a margin learnt from its own history: over the night windows (local 01:00 to
  05:00) of the fit period, ``base`` is their median and ``spread`` their median minus their 10 %
  quantile; the window is active when ``value > base + max(2 * spread, 0.25 * base, resolution)``
  (``resolution``: 0.02 kWh per hour for electricity, 1 unit for water). Missing windows (NaN) are
  neither active nor inactive: they add no evidence and do not end a run.
- Profile. For each local hour of the week (Monday 00:00 = slot 0; public holidays of the
  :class:`~models.calendar.Calendar` count as Sundays) the probability that a window is active,
  from the last 8 weeks, shrunk towards the hour of day (weekday or weekend) with 4 pseudo-windows,
  which is itself shrunk towards the overall rate with 4 pseudo-windows, then clipped to
  [0.01, 0.97] so that no slot is certain.
- Score. At the end of each window the dwelling's inactive run is the windows since the last window
  in which any of its meters was active. The score is ``-log`` of the probability that a normal day
  shows no activity over the run, summed over the meters (independent meters)::

      score = sum over meters m, windows w of the run, m not missing in w: -log(1 - p_m(slot(w)))

- Alert. An alert is raised when ``score >= threshold``, once per episode (hysteresis): the next
  alert needs a window with activity first (the episode is then cleared).
- Usual night (:class:`NightRule`, :func:`fit_night`). Scored hour by hour, a lie-in looks like a
  stop: the morning hours a household is usually up in weigh heavily, one after the other, while
  a late morning is one event. So the dwelling's night is learnt from the profile weeks: the block
  of local hours around 03:00 when its meters are usually quiet (mean probability of activity
  below 0.5, within 20:00-09:59; a dwelling active at 03:00 has none), and the hour it is usually
  *up by*, weekdays and weekends apart: the night's end plus the latest first activity of its
  mornings in those weeks (mornings with no use for 8 h, nobody home, left out) plus one hour.
  The evidence of a run's night windows does not count, nor that of its morning windows before
  the hour it is usually up by once the run has been through the night: a dwelling quiet since
  the evening is judged from that hour on. A stop in the night is thus alerted a few hours after
  the dwelling is usually up, not within 3 h of the stop (such a stop is not at a time the
  dwelling is normally active).
- Door sensor (optional). ``doors`` counts the openings of the dwelling's door per window. An
  inactive run that begins right after the door opened is presumed an outing: no evidence counts
  while *away*; the next opening is the return, and the count starts again from the window after
  it; *away* ends by itself after ``away_max_h`` (12 h), so that a door opened to a visitor just
  before a fall silences the dwelling for no longer than that (:func:`step`). The calibration
  scores the history the same way, so outings do not spend the alarm budget.
- Calibration rule. At each fit, the dwelling's last 26 weeks (those available, at least the 8 of
  the profile) are scored with the new profiles; every inactive run shorter than 24 h gives its
  final score (runs of 24 h or more are absences, the very thing to alert on, and are left out);
  with ``M`` months of calibration history and a budget of ``a = floor(0.5 * M)`` alarms (half the
  one-a-month target, a margin for the weeks ahead), the *calibrated* threshold is just above the
  ``(a + 1)``-th largest run score, and at least 3.0 (a 5 % chance). The threshold in force is the
  calibrated one capped at the dwelling's *3-hour cap* (:func:`within_cap`): the highest threshold
  that 94 % (``CessationParams.respond_share``) of the stops at the hours of the week the dwelling
  is normally active in reach within 3 h, each hour weighted by the chance that a stop comes then
  (some meter in use in the hour before, :func:`stop_weights`), computed from the profile (a stop
  makes every window inactive: its score is the profile's evidence from the stop on,
  :func:`stop_scores`), and at least 3.0. The alert must come within 3 h of a stop, and a household
  whose own quiet spells would need more gets the alarms its history says it will get, counted in
  ``calibration["past_alarms_per_month"]`` (the runs of the history at or above the threshold in
  force, per month) for the operator to see. The cap follows the dwelling: each meter adds its
  evidence (a home with electricity and water reaches a stop's score sooner, so its cap is higher
  for the same promise), windows shorter than an hour add theirs, and a regular home's usually
  active hours weigh more. On the UCI household (one meter, hourly) it comes out at a median 5.3
  over weekly fits on the 26 weeks before (10 %-90 %: 5.0-5.8). ``calibration["calibrated"]`` keeps
  the uncapped value, ``["within_3h_cap"]`` the cap. A dwelling may choose the uncapped one instead
  (``CessationParams.responding``: ``within_3h``, the default, or ``calibrated``);
  :meth:`DwellingModel.choices` tells what each choice costs it (its threshold, the alarms a month
  of its history at that threshold, and :meth:`DwellingModel.response_h`, the median hours from a
  stop at a normally active hour to the alert).

- Two stages. The threshold above is the first stage, ``use_quiet``: a phone call, within 3 h.
  Outings and lie-ins raise most of its false alarms, and a call costs little. The second,
  ``use_stopped`` (a visit), needs more (:class:`CessationDetector`): a door sensor that agrees
  (the quiet did not begin as the door opened: at once); or a motion sensor that agrees (the
  dwelling's meters *and* its motion sensor, as one more meter whose windows with movement are
  active, fitted as a second model, the *presence* model, whose own first stage is reached); or,
  with neither, the longer window: the quiet spell's score reaches ``calibration["stopped"]``,
  the calibration rule's threshold on a budget of ``floor(0.25 * M)`` alarms (about one every
  four months on the history; the weeks ahead bring more), or, when the installer sets
  ``stopped_after_h``, that many counted hours.

Evaluation protocol (injected stops), :func:`evaluate`: the dwelling is refitted every 168 h from
the end of its first 8 weeks on the data before the refit only (profile: last 8 weeks; threshold:
last 26 weeks), and each hour is scored with the model in force (the run state carries over a
refit, as on the gateway). A refit needs 14 days of known hours of each meter in its 8 profile
weeks (:data:`MIN_KNOWN_DAYS`): a week without one has no model in force and is not evaluated, and
a dwelling with no such week, or into which no stop could be injected, is skipped with the reason
(:class:`TooLittleData`). False alarms per month are the alarms raised on the untouched series over
the evaluated hours (30.44-day months); those whose inactive run went on for 24 h or more (a real
absence: the household left) are also counted apart. Stops: for each week, up to 3 stop hours are
drawn (seeded, without replacement) among the hours ``t`` where the dwelling is *normally active*:
the model in force expects at least 2.4 active windows in ``[t, t + 3 h)`` (on the UCI household
these are 38 % of the hours from 07:00 to 23:00), the hour before ``t`` was active, the
untouched series has an active hour in ``[t, t + 3 h)`` (so the stop changes something: not inside
a real quiet stretch or absence) and no missing hour in ``[t - 1 h, t + 24 h)``. The 24 h from ``t``
are replaced by readings drawn (seeded, with replacement) from the dwelling's own quiet night hours
of the 8 weeks before the refit: the hours 01:00-05:00 local at or below their median (the fridge
and standby cycling, not zeros). A stop is detected within 3 h when the alert comes at the end of
hour ``t``, ``t + 1`` or ``t + 2``; the delay is the hours from the stop to the end of the window
of the alert.

Note on that protocol: the replacement readings lie below the median of night hours, so below the
activity threshold; the figures measure the profile, the score and the calibration, not how the
activity threshold copes with appliances that keep cycling in an empty home (a water heater, air
conditioning). ``evaluate(..., pool_quantile=1.0)`` draws from all night hours instead (people up
at night, water heater on the off-peak tariff): a harsher, less realistic variant.

Methods: ``cessation`` is the detector's first stage as on the gateway; ``stopped`` its second
stage without a door or motion sensor (the longer window), ``stopped+motion`` with a motion
sensor (when the data has one), ``cessation+doors`` with a door sensor (whose second stage is its
first); ``cessation_calibrated`` the first stage with the uncapped calibrated threshold (the
fewest alarms its history allows, whatever the delay). The rules cities deploy, beside:
``10L_12h`` and ``10L_24h`` alert when the water used over the last 12 or 24 hours is below 10 L
(those hours all known), once per quiet spell, for dwellings with a water meter. Baselines
beside (same activity threshold, same stops): ``3h_inactive`` alerts after 3
consecutive inactive hours at any time; ``3h_inactive_day`` only when the third hour ends between
08:00 and 23:00 local.

Measured (``nbedge models evaluate cessation``; the tables, the synthetic resident and what
each figure means are in ``docs/model-card-cessation.md``; ``tests/models/test_cessation.py`` and
``tests/models/test_daiad.py`` pin them). On the UCI household (electricity only, 514 stops):
``cessation`` 95.9 % within 3 h at 8.20 false alarms a month, ``stopped`` 1.05 a month at a
median 13 h. On the 51 DAIAD homes (water only; medians): ``cessation`` 97.0 % within 3 h at
3.94 warnings a month (3.05 without the absences of a day or more), ``stopped`` 0.99 a month at a
median 8 h; ``10L_12h`` 0.99 a month at 12 h, ``10L_24h`` 0.39 at 24 h. A door sensor that sees
every outing makes the second stage come within 3 h (UCI, made-up openings: 95.3 % at 0.77 a
month); a motion sensor does for a resident who stays in, not for one who goes out (it cannot tell
an outing from a stop).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from models.calendar import Calendar
from models.series import HourlySeries
from nbedge.errors import NbedgeError

FEATURE_VERSION = "cessation-3"

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

SLOTS = 168
HOURS_PER_WEEK = 168
DAYS_PER_MONTH = 30.44
KINDS = ("electricity", "water", "motion")
"""What a channel of the detector measures: a meter's use, or how often a motion sensor saw
movement in the window (a presence sensor, not a meter: see :class:`CessationDetector`)."""
DETECT_WITHIN_H = 3  # the promise: a stop at a normally active hour is alerted within 3 h
STOP_H = 24  # the hours after a stop that are looked at (injected stops, response_h)
MIN_EXPECTED_ACTIVE = 2.4  # "normally active" at t: so many active hours of [t, t + 3 h) expected
# what a dwelling's alert threshold is chosen for: an alert within 3 h of a stop at a normally
# active hour (the calibrated threshold capped by what such a stop scores in 3 h), or the fewest
# false alarms its history allows (the calibrated threshold, uncapped)
RESPONSES = ("within_3h", "calibrated")


def response_thresholds(calibrated: float, cap: float | None) -> dict[str, float]:
    """The alert threshold of each choice of :data:`RESPONSES`: for ``calibrated`` the calibrated
    one, for ``within_3h`` the same at most ``cap`` (:func:`within_cap`; None: no cap)."""
    return {
        "within_3h": calibrated if cap is None else min(calibrated, cap),
        "calibrated": calibrated,
    }


@dataclass(frozen=True, slots=True)
class CessationParams:
    """The constants of the model (the values above are the defaults)."""

    profile_weeks: int = 8
    calibration_weeks: int = 26
    night_hours: tuple[int, ...] = (1, 2, 3, 4)
    margin_k: float = 2.0
    margin_rel: float = 0.25
    prior_hour: float = 4.0
    prior_slot: float = 4.0
    p_min: float = 0.01
    p_max: float = 0.97
    target_alarms_per_month: float = 0.5
    min_threshold: float = 3.0
    respond: str = "within_3h"  # or "calibrated": the calibrated threshold, uncapped
    respond_share: float = 0.94  # within_3h: of the stops at the normally active hours
    stopped_alarms_per_month: float = 0.25  # use_stopped's longer window, on the history alone
    stopped_after_h: float | None = None  # or: so many quiet hours counted (None: learnt)
    absence_h: float = 24.0
    away_max_h: float = 12.0
    sleep_p: float = 0.5
    sleep_span: tuple[int, int] = (20, 10)
    wake_absent_h: float = 8.0
    wake_margin_h: float = 1.0

    def __post_init__(self) -> None:
        if self.respond not in RESPONSES:
            raise ValueError(f"respond must be one of {RESPONSES}, not {self.respond!r}")

    def away_max_windows(self, window_minutes: int) -> int:
        """``away_max_h`` in windows of ``window_minutes``."""
        return round(self.away_max_h * 60 / window_minutes)

    def to_dict(self) -> dict[str, Any]:
        return {
            name: list(value) if isinstance(value, tuple) else value
            for name, value in ((f, getattr(self, f)) for f in self.__dataclass_fields__)
        }

    @classmethod
    def responding(cls, respond: str, stopped_after_h: float | None = None) -> CessationParams:
        """The parameters of a dwelling configured to respond ``within_3h`` or ``calibrated``,
        and its ``stopped_after_h`` (None: learnt from its history)."""
        return cls(respond=respond, stopped_after_h=stopped_after_h)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CessationParams:
        values: dict[str, Any] = {
            name: tuple(int(h) for h in value) if isinstance(value, list) else value
            for name, value in data.items()
        }
        return cls(**values)


def resolution(kind: str, window_minutes: int) -> float:
    """The smallest use that counts above base load: 0.02 kWh per hour, or 1 litre / pulse."""
    if kind == "electricity":
        return 0.02 * window_minutes / 60
    if kind == "water":
        return 1.0
    if kind == "motion":
        return 0.5  # a window with any movement seen is active
    raise ValueError(f"meter kind {kind!r} is not one of {KINDS}")


def week_slots(timestamps: npt.NDArray[np.datetime64], calendar: Calendar) -> IntArray:
    """Local hour of the week of each window start (Monday 00:00 = 0); holidays count as Sundays."""
    local = calendar.local(np.asarray(timestamps))
    weekday = np.where(local.holiday, 6, local.weekday)
    return (weekday * 24 + local.hour).astype(np.int64)


@dataclass(frozen=True, slots=True)
class ActivityProfile:
    """One meter's activity threshold and probability of activity per local hour of the week."""

    kind: str
    window_minutes: int
    base: float
    threshold: float
    p_active: tuple[float, ...]
    windows: int
    fitted_until: str = ""

    def __post_init__(self) -> None:
        resolution(self.kind, self.window_minutes)  # raises for an unknown kind
        if len(self.p_active) != SLOTS:
            raise ValueError(f"{len(self.p_active)} probabilities, not {SLOTS}")

    @classmethod
    def fit(
        cls,
        values: npt.ArrayLike,
        timestamps: npt.NDArray[np.datetime64],
        calendar: Calendar,
        *,
        kind: str,
        window_minutes: int = 60,
        params: CessationParams | None = None,
    ) -> ActivityProfile:
        """Fit from the meter's history (window starts, UTC); uses the last ``profile_weeks``."""
        params = params or CessationParams()
        stamps = np.asarray(timestamps)
        keep = stamps >= stamps[-1] - np.timedelta64(params.profile_weeks * 7 * 24 * 60, "m")
        slots = week_slots(stamps[keep], calendar)
        profile = fit_from_slots(
            np.asarray(values, dtype=np.float64)[keep], slots, kind, window_minutes, params
        )
        end = stamps[-1] + np.timedelta64(window_minutes, "m")
        return _with_until(profile, str(np.datetime64(end, "m")))

    def is_active(self, values: npt.ArrayLike) -> BoolArray:
        """Per window: use above base load by the margin (NaN: False)."""
        v = np.asarray(values, dtype=np.float64)
        with np.errstate(invalid="ignore"):
            return np.asarray(v > self.threshold)

    def probabilities(self, slots: npt.ArrayLike) -> FloatArray:
        return np.asarray(self.p_active, dtype=np.float64)[np.asarray(slots, dtype=np.int64)]

    def to_dict(self) -> dict[str, Any]:
        return {
            "feature_version": FEATURE_VERSION,
            "kind": self.kind,
            "window_minutes": self.window_minutes,
            "base": self.base,
            "threshold": self.threshold,
            "p_active": list(self.p_active),
            "windows": self.windows,
            "fitted_until": self.fitted_until,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ActivityProfile:
        if data.get("feature_version") != FEATURE_VERSION:
            raise ValueError(f"profile of version {data.get('feature_version')!r}")
        return cls(
            kind=str(data["kind"]),
            window_minutes=int(data["window_minutes"]),
            base=float(data["base"]),
            threshold=float(data["threshold"]),
            p_active=tuple(float(p) for p in data["p_active"]),
            windows=int(data["windows"]),
            fitted_until=str(data.get("fitted_until", "")),
        )


def _with_until(profile: ActivityProfile, until: str) -> ActivityProfile:
    return ActivityProfile(
        kind=profile.kind,
        window_minutes=profile.window_minutes,
        base=profile.base,
        threshold=profile.threshold,
        p_active=profile.p_active,
        windows=profile.windows,
        fitted_until=until,
    )


def fit_from_slots(
    values: FloatArray,
    slots: IntArray,
    kind: str,
    window_minutes: int,
    params: CessationParams,
) -> ActivityProfile:
    """The profile of windows with known local week slots (the rule in the module docstring)."""
    known = ~np.isnan(values)
    night = known & np.isin(slots % 24, params.night_hours)
    pool = values[night] if night.sum() >= 7 else values[known]
    if pool.size == 0:
        raise ValueError("no known reading to fit an activity profile on")
    base = float(np.quantile(pool, 0.5))
    spread = base - float(np.quantile(pool, 0.1))
    margin = max(
        params.margin_k * spread, params.margin_rel * base, resolution(kind, window_minutes)
    )
    threshold = base + margin
    with np.errstate(invalid="ignore"):
        active = (values > threshold)[known].astype(np.float64)
    s = slots[known]
    overall = (active.sum() + 1.0) / (active.size + 2.0)
    n_slot = np.bincount(s, minlength=SLOTS).astype(np.float64)
    k_slot = np.bincount(s, weights=active, minlength=SLOTS)
    # hour of day, weekdays (slots 0-119) and weekend (120-167) apart
    day_type = (np.arange(SLOTS) >= 120).astype(np.int64)
    group = day_type * 24 + np.arange(SLOTS) % 24
    n_hour = np.bincount(group, weights=n_slot, minlength=48)
    k_hour = np.bincount(group, weights=k_slot, minlength=48)
    p_hour = (k_hour + params.prior_hour * overall) / (n_hour + params.prior_hour)
    prior = p_hour[group]
    p_slot = (k_slot + params.prior_slot * prior) / (n_slot + params.prior_slot)
    p_slot = np.clip(p_slot, params.p_min, params.p_max)
    return ActivityProfile(
        kind=kind,
        window_minutes=window_minutes,
        base=base,
        threshold=threshold,
        p_active=tuple(float(p) for p in p_slot),
        windows=int(known.sum()),
    )


# --- the dwelling's usual night

DAY, NIGHT, MORNING = 0, 1, 2  # the phase of a window: see NightRule.phases
SLEEP_ANCHOR = 3  # the usual night is the block of quiet hours around 03:00 local


@dataclass(frozen=True, slots=True)
class NightRule:
    """The dwelling's usual night: its quiet hours, and by when it is usually up in the morning.

    ``hours``: the local hours of its night, in order (``hours[-1] + 1`` is the first hour of
    the morning); ``up_by``: the local hour by which it is usually up, on weekdays and on
    weekends (Saturday, Sunday and public holidays).
    """

    hours: tuple[int, ...]
    up_by: tuple[int, int]

    @property
    def morning(self) -> int:
        return (self.hours[-1] + 1) % 24

    def phases(self, slots: npt.ArrayLike) -> IntArray:
        """Per window (local hour of the week): NIGHT, MORNING (before ``up_by``) or DAY."""
        s = np.asarray(slots, dtype=np.int64)
        hour = s % 24
        up_by = np.where(s >= 120, self.up_by[1], self.up_by[0])
        night = np.isin(hour, self.hours)
        morning = ~night & (hour >= self.morning) & (hour < up_by)
        return np.where(night, NIGHT, np.where(morning, MORNING, DAY)).astype(np.int64)

    def to_dict(self) -> dict[str, Any]:
        return {"hours": list(self.hours), "up_by": list(self.up_by)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NightRule:
        weekday, weekend = (int(h) for h in data["up_by"])
        return cls(hours=tuple(int(h) for h in data["hours"]), up_by=(weekday, weekend))


def fit_night(
    active: BoolArray,
    known: BoolArray,
    slots: IntArray,
    p_active: FloatArray,
    window_minutes: int,
    params: CessationParams,
) -> NightRule | None:
    """The dwelling's usual night, from its activity over the profile weeks (None: it has none).

    ``p_active`` is the probability, per local hour of the week, that any of the dwelling's
    meters is active. The night is the block of hours around 03:00 whose mean probability is
    below ``sleep_p``, within ``sleep_span`` (20:00 to 10:00); a dwelling active at 03:00 has
    none. Each morning in the history tells how many hours after the night the dwelling was first
    active (0 when it was already up in the night's last hour); mornings with no activity within
    ``wake_absent_h`` (nobody home) or a missing window are left out. ``up_by`` is the night's
    end plus the latest of those delays plus ``wake_margin_h``, weekdays and weekends apart.
    """
    by_hour = np.asarray(p_active, dtype=np.float64).reshape(7, 24).mean(axis=0)
    if by_hour[SLEEP_ANCHOR] >= params.sleep_p:
        return None
    first_hour, end_hour = params.sleep_span
    span = [h % 24 for h in range(first_hour, end_hour + 24 * (end_hour < first_hour))]
    at = span.index(SLEEP_ANCHOR)
    lo, hi = at, at
    while lo > 0 and by_hour[span[lo - 1]] < params.sleep_p:
        lo -= 1
    while hi + 1 < len(span) and by_hour[span[hi + 1]] < params.sleep_p:
        hi += 1
    hours = tuple(span[lo : hi + 1])
    morning = (hours[-1] + 1) % 24
    per_hour = 60 // window_minutes
    absent = int(params.wake_absent_h * per_hour)
    delays: tuple[list[int], list[int]] = ([], [])
    hour = slots % 24
    starts = np.flatnonzero((hour == morning) & (np.r_[-1, hour[:-1]] != morning))
    for e in starts[starts > 0]:
        ahead = slice(e - 1, min(len(active), e + absent))
        if not known[ahead].all() or known[ahead].size < absent + 1:
            continue
        if active[e - 1]:
            delay = 0
        else:
            woke = np.flatnonzero(active[e : e + absent])
            if woke.size == 0:
                continue
            delay = int(woke[0]) // per_hour
        delays[int(slots[e] >= 120)].append(delay)
    latest = [max(d) if d else None for d in delays]
    fallback = max((d for d in latest if d is not None), default=0)
    margin = math.ceil(params.wake_margin_h)
    weekday, weekend = (morning + (fallback if d is None else d) + margin for d in latest)
    return NightRule(hours, (min(weekday, 23), min(weekend, 23)))


# --- scoring: one vectorised function, used for calibration, evaluation and tested equal to the
# --- streaming CessationDetector


@dataclass(frozen=True, slots=True)
class RunScores:
    """Per window: any meter active, the run's score, its length in windows, alert raised here."""

    active: BoolArray
    score: FloatArray
    run_windows: IntArray
    alert: BoolArray
    counted: IntArray  # of the run's windows, those whose evidence counts (not asleep, not out)


def window_evidence(
    values: Mapping[str, FloatArray], p: Mapping[str, FloatArray], thresholds: Mapping[str, Any]
) -> tuple[BoolArray, FloatArray]:
    """Per window: whether any meter is active, and the sum over inactive meters of -log(1 - p)."""
    names = list(values)
    n = len(values[names[0]])
    active = np.zeros(n, dtype=np.bool_)
    evidence = np.zeros(n)
    for name in names:
        v = values[name]
        with np.errstate(invalid="ignore"):
            on = v > thresholds[name]
            off = v <= thresholds[name]
        active |= on
        evidence += np.where(off, -np.log1p(-p[name]), 0.0)
    return active, evidence


def run_scores(
    active: BoolArray,
    evidence: FloatArray,
    threshold: float | FloatArray,
    phases: IntArray | None = None,
) -> RunScores:
    """Scores of the inactive runs and the alerts (first crossing of ``threshold`` per run).

    ``phases`` (:meth:`NightRule.phases`): the evidence of a run's night windows, and of its
    morning windows once the run has been through a night, does not count (:func:`step`).
    """
    n = len(active)
    index = np.arange(n)
    last_active = np.maximum.accumulate(np.where(active, index, -1))
    if phases is not None:
        nights = np.cumsum(phases == NIGHT)
        slept = nights - np.where(last_active >= 0, nights[np.maximum(last_active, 0)], 0) > 0
        asleep = (phases == NIGHT) | ((phases == MORNING) & slept)
        evidence = np.where(asleep, 0.0, evidence)
    else:
        asleep = np.zeros(n, dtype=np.bool_)
    awake = np.cumsum(~active & ~asleep)
    counted = np.where(
        active, 0, awake - np.where(last_active >= 0, awake[np.maximum(last_active, 0)], 0)
    )
    total = np.cumsum(np.where(active, 0.0, evidence))
    before = np.where(last_active >= 0, total[np.maximum(last_active, 0)], 0.0)
    score = np.where(active, 0.0, total - before)
    run_windows = np.where(active, 0, index - last_active)
    crossed = (score >= threshold) & ~active
    alert = np.zeros(n, dtype=np.bool_)
    hits = np.flatnonzero(crossed)
    if hits.size:
        _, first = np.unique(last_active[hits], return_index=True)
        alert[hits[first]] = True
    return RunScores(active, score, run_windows.astype(np.int64), alert, counted.astype(np.int64))


@dataclass(slots=True)
class RunState:
    """Where a dwelling's inactive run stands at the end of a window (see :func:`step`)."""

    windows: int = 0  # inactive windows since the last active one
    counted: int = 0  # of which their evidence counts: since the run began or the last door
    score: float = 0.0
    alarmed: bool = False
    away: bool = False  # presumed out: a door opened, then no use
    away_windows: int = 0
    door_before: bool = False  # a door opened in the last active window
    night: bool = False  # the run has been through the dwelling's usual night


def step(
    state: RunState,
    active: bool,
    evidence: float,
    threshold: float,
    doors: int = 0,
    away_max_windows: int = 12,
    phase: int = DAY,
) -> bool:
    """Advance ``state`` by one window; True when the episode's alert is raised in it.

    Without doors this is :func:`run_scores` one window at a time. ``phase`` is the window's
    place in the dwelling's usual night (:meth:`NightRule.phases`): the evidence of a night
    window does not count, nor that of a morning window before the dwelling is usually up once
    the run has been through the night (asleep as usual, or a lie-in as the history has seen).
    With a door sensor, ``doors`` is how many times the dwelling's door opened in the window:

    - an inactive run that begins right after a door opened (in the last active window or in the
      run's first window) is presumed an outing: no evidence is counted while *away*;
    - an odd number of openings during the run turns *away* over (the resident came back, or
      left after a quiet spell); any opening restarts the count, from the window after it;
    - *away* ends by itself after ``away_max_windows`` windows without use: a door opened by a
      visitor, just before a fall, must not silence the dwelling for longer than that.
    """
    if active:
        # each opening turns in and out over: from home, one opening is a departure (or a
        # visitor: the run after it tells); from out, the first is the return
        state.door_before = doors > 0 and state.away != (doors % 2 == 1)
        state.windows = state.counted = state.away_windows = 0
        state.score = 0.0
        state.alarmed = state.away = state.night = False
        return False
    state.windows += 1
    if state.windows == 1 and state.door_before:
        state.away, state.away_windows = True, 0
    state.night = state.night or phase == NIGHT
    if doors:
        state.score, state.counted = 0.0, 0
        if doors % 2:
            state.away, state.away_windows = not state.away, 0
        return False
    if state.away:
        state.away_windows += 1
        if state.away_windows >= away_max_windows:
            state.away = False
        return False
    if state.night and phase != DAY:
        return False
    state.counted += 1
    state.score += evidence
    raise_now = not state.alarmed and state.score >= threshold
    state.alarmed = state.alarmed or raise_now
    return raise_now


def door_run_scores(
    active: BoolArray,
    evidence: FloatArray,
    threshold: float | FloatArray,
    doors: npt.ArrayLike,
    away_max_windows: int,
    phases: IntArray | None = None,
) -> RunScores:
    """:func:`run_scores` for a dwelling with a door sensor (door openings per window)."""
    n = len(active)
    limit = np.broadcast_to(np.asarray(threshold, dtype=np.float64), (n,))
    opened = np.asarray(doors, dtype=np.int64)
    phase = np.full(n, DAY, dtype=np.int64) if phases is None else np.asarray(phases)
    state = RunState()
    score, run_windows = np.zeros(n), np.zeros(n, dtype=np.int64)
    counted = np.zeros(n, dtype=np.int64)
    alert = np.zeros(n, dtype=np.bool_)
    for i in range(n):
        alert[i] = step(
            state,
            bool(active[i]),
            float(evidence[i]),
            float(limit[i]),
            int(opened[i]),
            away_max_windows,
            int(phase[i]),
        )
        score[i], run_windows[i], counted[i] = state.score, state.windows, state.counted
    return RunScores(active, score, run_windows, alert, counted)


def calibrate_threshold(
    active: BoolArray,
    evidence: FloatArray,
    window_minutes: int,
    params: CessationParams,
    doors: npt.ArrayLike | None = None,
    phases: IntArray | None = None,
    cap: float | None = None,
) -> tuple[float, dict[str, float]]:
    """The alert threshold from scored history (the calibration rule of the module docstring).

    The history is scored as the detector scores it: with the dwelling's usual night
    (``phases``) and, with ``doors`` (openings per window), its door sensor: an outing does not
    count towards the alarms of the budget; a run's score is its highest (the count restarts at
    a door). ``cap`` (:func:`within_cap`) bounds the threshold of ``respond = "within_3h"``.
    """
    if doors is None:
        runs = run_scores(active, evidence, math.inf, phases)
    else:
        away_max = params.away_max_windows(window_minutes)
        runs = door_run_scores(active, evidence, math.inf, doors, away_max, phases)
    n = len(active)
    ends = ~runs.active & np.r_[runs.active[1:], True]
    run_id = np.cumsum(runs.active)[~runs.active]  # inactive windows, numbered by their run
    highest = np.zeros(n + 1)
    np.maximum.at(highest, run_id, runs.score[~runs.active])
    final = highest[np.cumsum(runs.active)[ends]]
    hours = runs.run_windows[ends] * window_minutes / 60
    final = np.sort(final[hours < params.absence_h])[::-1]
    months = n * window_minutes / 60 / 24 / DAYS_PER_MONTH
    budget = math.floor(params.target_alarms_per_month * months)
    order_stat = float(final[budget]) if final.size > budget else 0.0
    calibrated = max(params.min_threshold, float(np.nextafter(order_stat, math.inf)))
    thresholds = response_thresholds(calibrated, cap)
    # use_stopped's longer window: the same rule on a smaller budget
    stopped_budget = math.floor(params.stopped_alarms_per_month * months)
    stopped_stat = float(final[stopped_budget]) if final.size > stopped_budget else 0.0
    stopped = max(calibrated, float(np.nextafter(stopped_stat, math.inf)))

    def per_month(limit: float) -> float:
        return float((final >= limit).sum() / months) if months else 0.0

    threshold = thresholds[params.respond]
    return threshold, {
        "months": months,
        "budget": budget,
        "order_statistic": order_stat,
        "calibrated": calibrated,
        "stopped": stopped,
        "stopped_past_alarms_per_month": per_month(stopped),
        "past_alarms_per_month": per_month(threshold),
    } | ({} if cap is None else {"within_3h_cap": cap}) | {
        f"{choice}_past_alarms_per_month": per_month(limit) for choice, limit in thresholds.items()
    }


def stop_scores(profiles: Mapping[str, ActivityProfile], night: NightRule | None) -> FloatArray:
    """The score of a stop at each hour of the week the dwelling is normally active in.

    Normally active as the evaluation draws its stops: at least 2.4 active hours of the next 3
    expected, on one of its meters. A stop makes every window inactive, so its score is the
    profile's evidence summed from the stop on, the usual night left out as :func:`step` does:
    no data needed. One row per such hour (in order of the week), one column per window of the
    ``STOP_H`` hours from the stop: the score at the end of that window.
    """
    p = np.array([m.p_active for m in profiles.values()])  # meters x 168 hours
    hours = np.arange(SLOTS + STOP_H) % SLOTS
    per_hour = 60 // next(iter(profiles.values())).window_minutes
    slots = np.repeat(hours, per_hour)  # one per window
    evidence = -np.log1p(-p).sum(axis=0)
    phases = None if night is None else night.phases(slots)
    rows = []
    for hour in normally_active_hours(p):
        run = slice(hour * per_hour, (hour + STOP_H) * per_hour)
        counted = evidence[slots[run]].copy()
        if phases is not None:
            slept = np.cumsum(phases[run] == NIGHT) > 0
            counted[(phases[run] == NIGHT) | ((phases[run] == MORNING) & slept)] = 0.0
        rows.append(np.cumsum(counted))
    return np.array(rows, dtype=np.float64).reshape(len(rows), STOP_H * per_hour)


def within_cap(
    profiles: Mapping[str, ActivityProfile], night: NightRule | None, params: CessationParams
) -> float | None:
    """The highest threshold that ``respond_share`` of the stops reach within 3 h, and at least
    ``min_threshold``; None when the dwelling has no hour it is normally active in.

    The stops are those at the hours of the week the dwelling is normally active in
    (:func:`stop_scores`), each hour weighted by the chance that a stop comes then
    (:func:`stop_weights`).

    It counts each of the dwelling's meters and follows its window length and its rhythm: a
    regular home reaches it sooner and may keep its threshold higher (fewer false alarms) for the
    same promise of an alert within 3 h.
    """
    scores = stop_scores(profiles, night)
    if not len(scores):
        return None
    per_hour = scores.shape[1] // STOP_H  # windows an hour, as stop_scores laid them out
    at_3h = scores[:, DETECT_WITHIN_H * per_hour - 1]
    weights = stop_weights(profiles)
    order = np.argsort(at_3h, kind="stable")
    share_below = np.cumsum(weights[order]) / weights.sum()
    # the lowest score with at least 1 - respond_share of the stops' weight at or below it
    # (the inverted CDF), rounded so that 1 - 0.94 = 0.06000000000000005 does not step past an
    # exact share
    missed = round(1.0 - params.respond_share, 9)
    first = min(int(np.searchsorted(np.round(share_below, 9), missed, side="left")), len(order) - 1)
    return max(params.min_threshold, float(at_3h[order[first]]))


def stop_weights(profiles: Mapping[str, ActivityProfile]) -> FloatArray:
    """How likely a stop is at each row of :func:`stop_scores`: the chance that some meter is
    active in the hour before it.

    A stop is noticed as use that ends: it comes after an hour of use, as the evaluation draws its
    stops. An hour of the week that follows one with little use weighs less in the share of stops
    that :func:`within_cap` promises an alert within 3 h.
    """
    p = np.array([m.p_active for m in profiles.values()])  # meters x 168 hours
    before = (normally_active_hours(p) - 1) % SLOTS
    return np.asarray(1.0 - np.prod(1.0 - p[:, before], axis=0), dtype=np.float64)


def normally_active_hours(p: FloatArray) -> IntArray:
    """The hours of the week a dwelling is normally active in, as the evaluation draws its stops:
    at least 2.4 active hours of the next 3 expected on one of its meters (``p``: the meters'
    chances of activity, meters x 168 hours)."""
    hours = np.arange(SLOTS + DETECT_WITHIN_H) % SLOTS
    expected = np.max(
        [np.convolve(row, np.ones(DETECT_WITHIN_H), "valid")[:SLOTS] for row in p[:, hours]],
        axis=0,
    )
    return np.flatnonzero(expected >= MIN_EXPECTED_ACTIVE)


def _median_delay(scores: FloatArray, threshold: float) -> float | None:
    """The median hours from a stop to its alert over the rows of :func:`stop_scores` (None: no
    row, or the median stop not alerted within ``STOP_H``)."""
    if not len(scores):
        return None
    per_hour = scores.shape[1] // STOP_H
    crossed = scores >= threshold
    delays = np.where(crossed.any(axis=1), (crossed.argmax(axis=1) + 1) / per_hour, math.inf)
    median = float(np.quantile(delays, 0.5, method="inverted_cdf"))
    return None if math.isinf(median) else median


@dataclass(frozen=True, slots=True)
class DwellingModel:
    """A dwelling's meters' profiles, its usual night and its alert threshold; JSON-able."""

    profiles: dict[str, ActivityProfile]
    threshold: float
    calibration: dict[str, float] = field(default_factory=dict)
    params: CessationParams = field(default_factory=CessationParams)
    night: NightRule | None = None

    @property
    def stopped_threshold(self) -> float:
        """The score at which ``use_stopped`` is raised on the history alone (its longer window:
        :data:`CessationParams.stopped_alarms_per_month`), never below the threshold in force."""
        return max(self.threshold, self.calibration.get("stopped", self.threshold))

    def phases(self, slots: npt.ArrayLike) -> IntArray | None:
        """Each window's place in the usual night (None: the dwelling has no usual night)."""
        return None if self.night is None else self.night.phases(slots)

    def response_h(self, threshold: float | None = None) -> float | None:
        """Hours from a stop to its alert, median over the hours of the week the dwelling is
        normally active in (:func:`stop_scores`), at ``threshold`` (default: the one in force).

        None when the dwelling has no such hour or the median stop is not alerted within 24 h.
        """
        limit = self.threshold if threshold is None else threshold
        return _median_delay(stop_scores(self.profiles, self.night), limit)

    def choices(self) -> dict[str, dict[str, float | None]]:
        """What each choice of :data:`RESPONSES` costs this dwelling: its threshold, the alarms a
        month its calibration history would have raised at it, and :meth:`response_h`."""
        calibrated = self.calibration.get("calibrated", self.threshold)
        thresholds = response_thresholds(calibrated, self.calibration.get("within_3h_cap"))
        scores = stop_scores(self.profiles, self.night)  # once for both thresholds
        return {
            choice: {
                "threshold": threshold,
                "past_alarms_per_month": self.calibration.get(f"{choice}_past_alarms_per_month"),
                "response_h": _median_delay(scores, threshold),
            }
            for choice, threshold in thresholds.items()
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "feature_version": FEATURE_VERSION,
            "threshold": self.threshold,
            "calibration": dict(self.calibration),
            "params": self.params.to_dict(),
            "profiles": {name: p.to_dict() for name, p in self.profiles.items()},
            "night": None if self.night is None else self.night.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DwellingModel:
        if data.get("feature_version") != FEATURE_VERSION:
            raise ValueError(f"model of version {data.get('feature_version')!r}")
        return cls(
            profiles={n: ActivityProfile.from_dict(p) for n, p in data["profiles"].items()},
            threshold=float(data["threshold"]),
            calibration={k: float(v) for k, v in data.get("calibration", {}).items()},
            params=CessationParams.from_dict(data.get("params", {})),
            night=None if data.get("night") is None else NightRule.from_dict(data["night"]),
        )


@dataclass(frozen=True, slots=True)
class MeterHistory:
    """One meter's readings per window (NaN: missing) and its kind (electricity or water)."""

    kind: str
    values: FloatArray


def fit_dwelling(
    meters: Mapping[str, MeterHistory],
    timestamps: npt.NDArray[np.datetime64],
    calendar: Calendar,
    *,
    window_minutes: int = 60,
    params: CessationParams | None = None,
    doors: npt.ArrayLike | None = None,
) -> DwellingModel:
    """Fit each meter's profile (last 8 weeks) and calibrate the dwelling's threshold (26 weeks).

    All meters share ``timestamps`` (window starts, UTC, consecutive windows); ``doors``, for a
    dwelling with a door sensor, is how many times its door opened in each of those windows.
    """
    params = params or CessationParams()
    return _fit_on_slots(
        meters, week_slots(np.asarray(timestamps), calendar), window_minutes, params, doors
    )


def _fit_on_slots(
    meters: Mapping[str, MeterHistory],
    slots: IntArray,
    window_minutes: int,
    params: CessationParams,
    doors: npt.ArrayLike | None = None,
) -> DwellingModel:
    per_week = HOURS_PER_WEEK * 60 // window_minutes
    profile_n = params.profile_weeks * per_week
    calib_n = params.calibration_weeks * per_week
    profiles = {
        name: fit_from_slots(
            m.values[-profile_n:], slots[-profile_n:], m.kind, window_minutes, params
        )
        for name, m in meters.items()
    }
    s = slots[-calib_n:]
    active, evidence = window_evidence(
        {name: m.values[-calib_n:] for name, m in meters.items()},
        {name: p.probabilities(s) for name, p in profiles.items()},
        {name: p.threshold for name, p in profiles.items()},
    )
    p_quiet = np.prod([1 - np.asarray(p.p_active) for p in profiles.values()], axis=0)
    known = np.all([~np.isnan(m.values[-calib_n:]) for m in meters.values()], axis=0)
    recent = slice(-min(profile_n, len(s)), None)
    night = fit_night(active[recent], known[recent], s[recent], 1 - p_quiet, window_minutes, params)
    phases = None if night is None else night.phases(s)
    opened = None if doors is None else np.asarray(doors)[-calib_n:]
    cap = within_cap(profiles, night, params)
    threshold, calibration = calibrate_threshold(
        active, evidence, window_minutes, params, opened, phases, cap
    )
    return DwellingModel(profiles, threshold, calibration, params, night)


@dataclass(frozen=True, slots=True)
class Verdict:
    """The verdict at the end of a window.

    ``alert`` is True only in the window where an episode's alert is raised (one per episode);
    ``alarmed`` stays True from then until a window with activity clears the episode: the first
    stage (``use_quiet``). ``stopped`` is the second (``use_stopped``), from the window in which
    it is raised until activity; ``stopped_by`` says why (see :class:`CessationDetector`).
    ``score`` is the run's ``-log`` probability, ``inactive_h`` the hours since the last activity;
    ``away`` is
    True while the dwelling is presumed out (a door opened, then no use: see :func:`step`);
    ``asleep`` while the quiet is its usual night, or a morning before it is usually up.
    """

    score: float
    alert: bool
    reason: str
    inactive_h: float
    alarmed: bool = False
    away: bool = False
    asleep: bool = False
    stopped: bool = False
    stopped_by: str = ""


STOPPED_BY = ("door", "motion", "window")
"""Why ``use_stopped`` followed ``use_quiet``: a door sensor agrees (the quiet did not begin as
the door opened), a motion sensor agrees (nobody moved either, for long enough to be unusual
too), or the quiet went on past the longer window."""


class CessationDetector:
    """Streaming detector of one dwelling: feed it the newest window of each of its meters.

    ``update(start, {"electricity": 0.21, "water": 0.0})`` at the end of each window (``start``
    is the window start, UTC); a meter absent from the mapping or NaN is missing; ``doors`` is how
    many times the dwelling's door opened in the window, for a dwelling with a door sensor. After
    a weekly refit, :meth:`replace_model` swaps the model and keeps the running episode.

    Two stages. The first (``alarmed``: ``use_quiet``, a phone call) is the meters' quiet spell
    reaching the model's threshold. The second (``stopped``: ``use_stopped``, a visit) follows it
    when a presence sensor agrees or the quiet goes on: with ``door_sensor``, at once (the door
    did not open as the quiet began, or the spell would be an outing); with a ``presence`` model
    (the meters and a motion sensor, ``readings["motion"]``: windows with movement seen), when
    the spell of neither use nor movement reaches that model's own threshold; otherwise when the
    score reaches the model's :attr:`~DwellingModel.stopped_threshold` (or ``stopped_after_h``
    counted hours, when the params set it).
    """

    def __init__(
        self,
        model: DwellingModel,
        calendar: Calendar,
        *,
        presence: DwellingModel | None = None,
        door_sensor: bool = False,
    ) -> None:
        self.model = model
        self.calendar = calendar
        self.door_sensor = door_sensor
        self._state = RunState()
        self._expected: dict[str, float] = dict.fromkeys(model.profiles, 0.0)
        self._last_slot = 0
        self._presence = None if presence is None else CessationDetector(presence, calendar)
        self._stopped_by = ""

    def replace_model(self, model: DwellingModel, presence: DwellingModel | None = None) -> None:
        if set(model.profiles) != set(self.model.profiles):
            raise ValueError("the new model has other meters")
        if (presence is None) != (self._presence is None):
            raise ValueError("the new model has another presence sensor")
        self.model = model
        if presence is not None and self._presence is not None:
            self._presence.replace_model(presence)

    @property
    def presence(self) -> CessationDetector | None:
        """The detector of the meters and the motion sensor together, with one."""
        return self._presence

    def update(
        self, start: np.datetime64, readings: Mapping[str, float], doors: int = 0
    ) -> Verdict:
        slot = int(week_slots(np.array([start]), self.calendar)[0])
        self._last_slot = slot
        values = {
            n: np.array([readings.get(n, math.nan)], dtype=np.float64) for n in self._expected
        }
        active, evidence = window_evidence(
            values,
            {n: p.probabilities([slot]) for n, p in self.model.profiles.items()},
            {n: p.threshold for n, p in self.model.profiles.items()},
        )
        state = self._state
        counted = state.counted
        phases = self.model.phases([slot])
        phase = DAY if phases is None else int(phases[0])
        raise_now = step(
            state,
            bool(active[0]),
            float(evidence[0]),
            self.model.threshold,
            doors,
            self.model.params.away_max_windows(self._window_minutes),
            phase,
        )
        if state.counted == 0:
            self._expected = dict.fromkeys(self._expected, 0.0)
        elif state.counted > counted:
            for name, profile in self.model.profiles.items():
                if not math.isnan(float(values[name][0])):
                    self._expected[name] += profile.p_active[slot]
        seen = None if self._presence is None else self._presence.update(start, readings, doors)
        if active[0]:
            self._stopped_by = ""
            return Verdict(0.0, False, "", 0.0)
        if state.alarmed and not self._stopped_by:
            self._stopped_by = self._second_stage(seen)
        asleep = state.night and phase != DAY and not state.away
        return Verdict(
            state.score,
            raise_now,
            self._reason(slot, asleep),
            self.inactive_h,
            state.alarmed,
            state.away,
            asleep,
            bool(self._stopped_by),
            self._stopped_by,
        )

    def _second_stage(self, seen: Verdict | None) -> str:
        """Why the first stage becomes the second now (:data:`STOPPED_BY`), or ""."""
        if self.door_sensor:
            return "door"
        if seen is not None and seen.alarmed:
            return "motion"
        params, state = self.model.params, self._state
        after_h = params.stopped_after_h
        if after_h is not None:
            reached = state.counted * self._window_minutes / 60 >= after_h
        else:
            reached = state.score >= self.model.stopped_threshold
        return "window" if reached else ""

    @property
    def inactive_h(self) -> float:
        return self._state.windows * self._window_minutes / 60

    @property
    def _window_minutes(self) -> int:
        return next(iter(self.model.profiles.values())).window_minutes

    def evidence(self) -> dict[str, str | int | float]:
        """The running quiet spell as the gateway's ``use_quiet`` and ``use_stopped`` alerts
        carry it: ``meters`` (``electricity``, ``water`` or ``electricity+water``),
        ``hours_quiet`` (the hours counted), ``usual_uses`` (how many of them the most regular
        meter is usually active in), ``variant`` (``motion``: nobody moved either, for
        ``hours_still`` hours; ``door``:
        counted since the door opened; ``night``: outside the usual night, with ``up_by``) and,
        once the second stage is reached, ``stopped_by`` (:data:`STOPPED_BY`)."""
        to_h = self._window_minutes / 60
        state = self._state
        meters = "+".join(sorted(self._expected))
        found: dict[str, str | int | float] = {
            "meters": meters,
            "hours_quiet": round(state.counted * to_h, 2),
            "usual_uses": round(max(self._expected.values(), default=0.0) * to_h, 2),
            "variant": "",
        }
        if self._stopped_by:
            found["stopped_by"] = self._stopped_by
        night = self.model.night
        if self._stopped_by == "motion" and self._presence is not None:
            found["variant"] = "motion"
            found["hours_still"] = round(self._presence.inactive_h, 2)
        elif state.night and night is not None:
            found["variant"] = "night"
            found["up_by"] = int(night.up_by[int(self._last_slot >= 120)])  # 120: the weekend
        elif state.counted != state.windows:
            found["variant"] = "door"
        return found

    def _reason(self, slot: int, asleep: bool) -> str:
        to_h = self._window_minutes / 60
        state = self._state
        if state.away:
            return f"presumed out: the door opened, then no use for {state.windows * to_h:g} h"
        night = self.model.night
        if state.night and night is not None:
            up_by = f"usually up by {night.up_by[int(slot >= 120)]:02d}:00"
            if asleep:
                return f"the usual night: no use for {state.windows * to_h:g} h, {up_by}"
            parts = [
                f"no {name} use for {state.windows * to_h:g} h, {up_by}, and usually active in "
                f"{expected * to_h:.1f} of the {state.counted * to_h:g} h outside the night"
                for name, expected in self._expected.items()
            ]
            return "; ".join(parts)
        hours = state.counted * to_h
        since = "" if state.counted == state.windows else " since the door opened"
        parts = [
            f"no {name} use for {hours:g} h{since}, usually active in {expected * to_h:.1f} "
            "of these hours"
            for name, expected in self._expected.items()
        ]
        return "; ".join(parts)


# --- evaluation on injected stops

STOPS_PER_WEEK = 3
# a weekly refit of the evaluation needs, for each meter, so many days of known hours among the
# profile weeks before it (the gateway waits for min_history_days, 14 by default, before its first)
MIN_KNOWN_DAYS = 14
METHODS = ("cessation", "stopped", "cessation_calibrated", "3h_inactive", "3h_inactive_day")
"""``cessation`` is the first stage (``use_quiet``), ``stopped`` the second without a presence
sensor (``use_stopped`` at its longer window); with a door sensor the second stage comes with the
first (``cessation+doors``); with a motion sensor it is ``stopped+motion``."""
DOORS = "+doors"  # the suffix of a method that also reads the door sensor
DOOR_METHODS = ("cessation" + DOORS, "cessation_calibrated" + DOORS)
MOTION_METHODS = ("stopped+motion",)
_MODEL_METHODS = ("cessation", "stopped", "cessation_calibrated")  # the model's, its night too
LOW_USE_LITRES = 10.0
LOW_USE = {"10L_12h": 12, "10L_24h": 24}
"""The rules cities deploy (less than 10 L of water in 12 or in 24 hours), beside on the same
homes: each hour whose last 12 (24) hours are known and used less than 10 L in all is alerted,
once per such spell; a stop is detected from the first such hour after it."""
DOOR_LEAD_H = 24  # hours replayed before a stop for the door-aware methods (away_max_h is 12)


@dataclass(frozen=True, slots=True)
class MethodResult:
    """One method's figures on one dwelling (or dwelling-year): stops, delays, alarms."""

    method: str
    delays_h: tuple[float, ...]  # per injected stop, hours to the alert; inf: none within 24 h
    alarms: int  # on the untouched series
    absence_alarms: int  # of which at the start of a real inactive run of 24 h or more
    months: float

    @property
    def stops(self) -> int:
        return len(self.delays_h)

    @property
    def detected_pct(self) -> float:
        """Percent of injected stops alerted within 3 h."""
        if not self.delays_h:
            return math.nan
        return 100 * sum(d <= DETECT_WITHIN_H for d in self.delays_h) / len(self.delays_h)

    def delay_quantile(self, q: float) -> float:
        """Quantile of the delay over all stops (inf for stops never alerted within 24 h)."""
        if not self.delays_h:
            return math.nan
        return float(np.quantile(np.array(self.delays_h), q, method="inverted_cdf"))

    @property
    def alarms_per_month(self) -> float:
        return self.alarms / self.months if self.months else math.nan

    @property
    def non_absence_alarms_per_month(self) -> float:
        return (self.alarms - self.absence_alarms) / self.months if self.months else math.nan


@dataclass(frozen=True, slots=True)
class DwellingReport:
    """One dwelling's figures over a period ('all' or a year) for each method."""

    name: str
    period: str
    methods: tuple[MethodResult, ...]
    normally_active_pct: float  # of the hours 07:00-23:00 local that are eligible stop times
    real_quiet_starts_per_month: float  # eligible hours that begin a real 3 h without activity
    meters: tuple[str, ...] = ("electricity",)  # the dwelling's meters' names
    known_pct: float = 100.0  # of the hours evaluated, those every meter was read in


class TooLittleData(NbedgeError, ValueError):
    """A dwelling's series cannot be evaluated on injected stops; the message says why."""

    def __init__(self, name: str, reason: str) -> None:
        self.name = name
        self.reason = reason
        super().__init__(f"{name}: {reason}")


@dataclass(frozen=True, slots=True)
class SkippedDwelling:
    """A dwelling left out of the evaluation, its meters' names and why."""

    name: str
    meters: tuple[str, ...]
    reason: str


@dataclass(frozen=True, slots=True)
class CessationReport:
    rows: tuple[DwellingReport, ...]
    seed: int
    pool_quantile: float
    params: CessationParams
    skipped: tuple[SkippedDwelling, ...] = ()


@dataclass(frozen=True, slots=True)
class _InForce:
    """Per hour of the series: each meter's p and activity threshold, and the alert thresholds."""

    p: dict[str, FloatArray]
    activity: dict[str, FloatArray]
    thresholds: dict[str, FloatArray]  # per method: "cessation", "cessation_calibrated" (+doors)
    pools: list[dict[str, FloatArray]]  # per refit block: each meter's quiet night readings
    block_starts: list[int]  # the refits made (MIN_KNOWN_DAYS): a week without one has no model
    phases: IntArray  # each hour's place in the dwelling's usual night (NightRule.phases)
    in_force: BoolArray  # the hours a model is in force for (the hours evaluated)


def _thresholds(model: DwellingModel) -> dict[str, float]:
    """The threshold in force (capped for a response within about 3 h) and the uncapped one."""
    calibrated = model.calibration.get("calibrated", model.threshold)
    return {
        "cessation": model.threshold,
        "stopped": model.stopped_threshold,
        "cessation_calibrated": calibrated,
    }


def _door_thresholds(
    meters: Mapping[str, MeterHistory],
    slots: IntArray,
    params: CessationParams,
    opened: IntArray,
    starts: list[int],
) -> dict[str, FloatArray]:
    """The alert thresholds in force, each refit calibrated with the door's openings."""
    n = len(slots)
    calib_n = params.calibration_weeks * HOURS_PER_WEEK
    thresholds = {m + DOORS: np.full(n, np.nan) for m in ("cessation", "cessation_calibrated")}
    for r in starts:
        lo, end = max(0, r - calib_n), min(n, r + HOURS_PER_WEEK)
        history = {m: MeterHistory(h.kind, h.values[lo:r]) for m, h in meters.items()}
        model = _fit_on_slots(history, slots[lo:r], 60, params, opened[lo:r])
        for method, value in _thresholds(model).items():
            if method + DOORS in thresholds:
                thresholds[method + DOORS][r:end] = value
    return thresholds


def _known_before(meters: Mapping[str, MeterHistory], hours: int) -> IntArray:
    """Per hour ``r`` (0 to n): the known hours of ``[r - hours, r)``, fewest over the meters."""
    counts = []
    for m in meters.values():
        known = np.r_[0, np.cumsum(~np.isnan(m.values))]
        counts.append(known - np.r_[np.zeros(min(hours, len(known)), np.int64), known[:-hours]])
    return np.asarray(np.min(counts, axis=0), dtype=np.int64)


def _models_in_force(
    meters: Mapping[str, MeterHistory],
    slots: IntArray,
    params: CessationParams,
    pool_quantile: float,
) -> _InForce:
    n = len(slots)
    profile_n = params.profile_weeks * HOURS_PER_WEEK
    calib_n = params.calibration_weeks * HOURS_PER_WEEK
    p = {m: np.full(n, np.nan) for m in meters}
    activity = {m: np.full(n, np.nan) for m in meters}
    thresholds = {m: np.full(n, np.nan) for m in ("cessation", "stopped", "cessation_calibrated")}
    phases = np.full(n, DAY, dtype=np.int64)
    in_force = np.zeros(n, dtype=np.bool_)
    pools: list[dict[str, FloatArray]] = []
    known = _known_before(meters, profile_n)
    weekly = range(profile_n, n, HOURS_PER_WEEK)
    starts = [r for r in weekly if known[r] >= MIN_KNOWN_DAYS * 24]
    for r in starts:
        lo, end = max(0, r - calib_n), min(n, r + HOURS_PER_WEEK)
        history = {m: MeterHistory(h.kind, h.values[lo:r]) for m, h in meters.items()}
        model = _fit_on_slots(history, slots[lo:r], 60, params)
        in_force[r:end] = True
        for method, value in _thresholds(model).items():
            thresholds[method][r:end] = value
        if model.night is not None:
            phases[r:end] = model.night.phases(slots[r:end])
        pool: dict[str, FloatArray] = {}
        for m, profile in model.profiles.items():
            p[m][r:end] = profile.probabilities(slots[r:end])
            activity[m][r:end] = profile.threshold
            recent, recent_slots = meters[m].values[r - profile_n : r], slots[r - profile_n : r]
            night = recent[np.isin(recent_slots % 24, params.night_hours) & ~np.isnan(recent)]
            pool[m] = night[night <= np.quantile(night, pool_quantile)] if night.size else night
        pools.append(pool)
    return _InForce(p, activity, thresholds, pools, starts, phases, in_force)


def _method_arrays(
    method: str,
    values: Mapping[str, FloatArray],
    force: _InForce,
    span: slice,
    local_hour: IntArray,
) -> tuple[BoolArray, FloatArray, FloatArray]:
    """Activity, evidence per window and alert threshold of ``method`` over ``span``."""
    active, evidence = window_evidence(
        values,
        {m: a[span] for m, a in force.p.items()},
        {m: a[span] for m, a in force.activity.items()},
    )
    if method in force.thresholds:
        return active, evidence, force.thresholds[method][span]
    known = np.zeros(len(active), dtype=np.bool_)
    for v in values.values():
        known |= ~np.isnan(v)
    in_force = force.in_force[span]
    hours = np.where(known & in_force, 1.0, 0.0)
    limit = np.where(in_force, float(DETECT_WITHIN_H), math.inf)
    if method == "3h_inactive_day":
        hour = local_hour[span]
        limit[(hour < 7) | (hour > 22)] = math.inf
    return active, hours, limit


@dataclass(frozen=True, slots=True)
class DoorSimulation:
    """Door openings made up for a dwelling whose data has no door sensor (a what-if).

    Each inactive run of the untouched series that begins between 07:00 and 22:59 local and lasts
    ``outing_h`` hours or more is taken for an outing: the door opens in the last active hour
    before it (leaving) and in the first active hour after it (coming back), each seen by the
    sensor with probability ``seen``. Visits open the door ``visits_per_day`` times a day on
    average (Poisson), at random hours from 08:00 to 19:59 local, whatever the dwelling is doing.
    """

    seen: float = 0.9
    visits_per_day: float = 1.0
    outing_h: int = 2

    def doors(self, active: BoolArray, local_hour: IntArray, rng: np.random.Generator) -> IntArray:
        n = len(active)
        opened = np.zeros(n, dtype=np.int64)
        for start, stop in _inactive_runs(active):
            if stop - start < self.outing_h or not 7 <= local_hour[start] <= 22:
                continue
            if start > 0 and rng.random() < self.seen:
                opened[start - 1] += 1
            if stop < n and rng.random() < self.seen:
                opened[stop] += 1
        daytime = np.flatnonzero((local_hour >= 8) & (local_hour <= 19))
        visits = rng.poisson(self.visits_per_day * n / 24)
        if daytime.size and visits:
            np.add.at(opened, rng.choice(daytime, size=visits), 1)
        return opened


def _first_of_runs(condition: BoolArray, active: BoolArray) -> BoolArray:
    """The first window of each inactive run in which ``condition`` holds."""
    index = np.arange(len(active))
    last_active = np.maximum.accumulate(np.where(active, index, -1))
    alert = np.zeros(len(active), dtype=np.bool_)
    hits = np.flatnonzero(condition & ~active)
    if hits.size:
        _, first = np.unique(last_active[hits], return_index=True)
        alert[hits[first]] = True
    return alert


def _alarmed(runs: RunScores) -> BoolArray:
    """Per window: the run's alert has been raised (in this window or before, since activity)."""
    index = np.arange(len(runs.active))
    last_active = np.maximum.accumulate(np.where(runs.active, index, -1))
    last_alert = np.maximum.accumulate(np.where(runs.alert, index, -1))
    return np.asarray((last_alert > last_active) & ~runs.active)


def second_stage(first: RunScores, seen: RunScores, limit: float | FloatArray) -> BoolArray:
    """``use_stopped``'s alerts of a dwelling with a motion sensor: the first stage's runs
    (``first``, its meters) raised and, in the same run, either the runs of its meters and the
    motion sensor together (``seen``) raised too, or the first stage's score at the longer
    window's ``limit`` (:attr:`DwellingModel.stopped_threshold`). As the detector streams it."""
    with np.errstate(invalid="ignore"):
        condition = _alarmed(first) & (_alarmed(seen) | (first.score >= limit))
    return _first_of_runs(condition, first.active)


def low_use(litres: FloatArray, hours: int, limit: float = LOW_USE_LITRES) -> BoolArray:
    """Per hour: its last ``hours`` hours are all known and used less than ``limit`` in all."""
    known = ~np.isnan(litres)
    use = np.r_[0.0, np.cumsum(np.where(known, litres, 0.0))]
    count = np.r_[0, np.cumsum(known)]
    end = np.arange(1, len(litres) + 1)
    begin = np.maximum(end - hours, 0)
    full = (count[end] - count[begin] == hours) & (end >= hours)
    return np.asarray(full & (use[end] - use[begin] < limit))


def _inactive_runs(active: BoolArray) -> list[tuple[int, int]]:
    """``[start, stop)`` of each run of inactive windows."""
    edges = np.flatnonzero(np.diff(np.r_[0, (~active).astype(np.int8), 0]))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True)]


def evaluate_dwelling(
    name: str,
    meters: Mapping[str, tuple[str, HourlySeries]],
    calendar: Calendar,
    *,
    seed: int = 0,
    params: CessationParams | None = None,
    pool_quantile: float = 0.5,
    stops_per_week: int = STOPS_PER_WEEK,
    doors: npt.ArrayLike | DoorSimulation | None = None,
    motion: npt.ArrayLike | None = None,
) -> list[DwellingReport]:
    """Injected-stop figures of one dwelling (meters: name -> (kind, hourly series on one grid)).

    ``doors``: the door's openings per hour on the same grid, or a :class:`DoorSimulation`; the
    methods of :data:`DOOR_METHODS` are then evaluated too. Nobody opens the door during an
    injected stop; an opening in the hour before it stays. ``motion``: a motion sensor's
    windows with movement seen per hour (1 or 0, NaN unknown); the methods of
    :data:`MOTION_METHODS` are then evaluated too, and nobody moves after an injected stop. A
    water meter also gets the deployed rules of :data:`LOW_USE`.

    Returns the row over the whole evaluated period (the weeks a model is in force: each refit
    needs :data:`MIN_KNOWN_DAYS` of known hours), then one row per calendar year. Raises
    :class:`TooLittleData` when no model can be fitted or no stop injected.
    """
    params = params or CessationParams()
    series = [s for _, s in meters.values()]
    stamps = series[0].timestamps
    if any(not np.array_equal(s.timestamps, stamps) for s in series):
        raise ValueError(f"{name}: the meters' series are not on one grid")
    n = len(stamps)
    profile_n = params.profile_weeks * HOURS_PER_WEEK
    if n <= profile_n:
        raise TooLittleData(
            name,
            f"{n / 24:.0f} days of data, not more than the {params.profile_weeks} weeks the "
            "first fit learns from",
        )
    slots = week_slots(stamps, calendar)
    local_hour = slots % 24
    history = {m: MeterHistory(kind, s.values) for m, (kind, s) in meters.items()}
    force = _models_in_force(history, slots, params, pool_quantile)
    if not force.block_starts:
        most = int(_known_before(history, profile_n)[profile_n:].max()) // 24
        raise TooLittleData(
            name,
            f"no week has {MIN_KNOWN_DAYS} days of known hours in the "
            f"{params.profile_weeks} weeks before it to fit the model on (at most {most} days)",
        )
    first = force.block_starts[0]
    rng = np.random.default_rng(seed)
    values = {m: h.values for m, h in history.items()}
    untouched = slice(first, n)
    orig_active, _ = window_evidence(
        {m: v[untouched] for m, v in values.items()},
        {m: a[untouched] for m, a in force.p.items()},
        {m: a[untouched] for m, a in force.activity.items()},
    )
    active = np.r_[np.zeros(first, dtype=np.bool_), orig_active]
    missing = np.zeros(n, dtype=np.bool_)
    for v in values.values():
        missing |= np.isnan(v)
    expected = np.zeros(n)
    for pm in force.p.values():
        window = np.nan_to_num(pm)
        sums = sum(np.r_[window[k:], np.zeros(k)] for k in range(DETECT_WITHIN_H))
        expected = np.maximum(expected, sums)

    # stops: per refit block, up to stops_per_week eligible hours
    stops: list[tuple[int, dict[str, FloatArray]]] = []
    eligible_all = np.zeros(n, dtype=np.bool_)
    real_quiet = np.zeros(n, dtype=np.bool_)
    unseen = missing | ~force.in_force
    for b, r in enumerate(force.block_starts):
        if any(not pool.size for pool in force.pools[b].values()):
            continue  # no quiet night reading known to fill a stop with
        cands = []
        for t in range(max(r, 1), min(n - STOP_H, r + HOURS_PER_WEEK)):
            if expected[t] < MIN_EXPECTED_ACTIVE:
                continue
            if not active[t - 1] or unseen[t - 1 : t + STOP_H].any():
                continue
            eligible_all[t] = True
            if active[t : t + DETECT_WITHIN_H].any():
                cands.append(t)
            else:
                real_quiet[t] = True
        chosen = rng.choice(cands, size=min(stops_per_week, len(cands)), replace=False)
        for t in sorted(int(c) for c in chosen):
            pool = force.pools[b]
            draws = {m: rng.choice(pool[m], size=STOP_H) for m in values}
            stops.append((t, draws))
    if not stops:
        raise TooLittleData(
            name,
            "no stop could be injected: no hour at which it is normally active (at least "
            f"{MIN_EXPECTED_ACTIVE:g} of the next {DETECT_WITHIN_H} hours active expected, the "
            f"hour before active, the {STOP_H} hours from it known)",
        )

    years = stamps.astype("datetime64[Y]")
    periods: list[tuple[str, BoolArray]] = [("all", force.in_force)]
    for year in np.unique(years[force.in_force]):
        periods.append((str(year), (years == year) & force.in_force))

    if isinstance(doors, DoorSimulation):
        # activity before the first refit by that refit's thresholds: the calibration of the
        # door-aware thresholds needs openings over its whole history
        seen = np.zeros(n, dtype=np.bool_)
        for m, v in values.items():
            limit = force.activity[m].copy()
            limit[:first] = limit[first]
            with np.errstate(invalid="ignore"):
                seen |= v > limit
        opened = doors.doors(seen, local_hour, np.random.default_rng([seed, 1]))
    elif doors is not None:
        opened = np.nan_to_num(np.asarray(doors, dtype=np.float64)).astype(np.int64)
        if opened.shape != (n,):
            raise ValueError(f"{name}: {opened.shape[0]} door counts for {n} hours")
    if doors is not None:
        door = _door_thresholds(history, slots, params, opened, force.block_starts)
        force = replace(force, thresholds=force.thresholds | door)
    away_max = params.away_max_windows(60)
    seen_values: dict[str, FloatArray] = {}
    if motion is not None:
        moved = np.asarray(motion, dtype=np.float64)
        if moved.shape != (n,):
            raise ValueError(f"{name}: {moved.shape[0]} motion counts for {n} hours")
        with_motion = history | {"motion": MeterHistory("motion", moved)}
        seen_force = _models_in_force(with_motion, slots, params, pool_quantile)
        seen_values = {m: h.values for m, h in with_motion.items()}

    def stopped_with_motion(
        meters_now: Mapping[str, FloatArray], seen_now: Mapping[str, FloatArray], span: slice
    ) -> BoolArray:
        a, e, lim = _method_arrays("cessation", meters_now, force, span, local_hour)
        first_runs = run_scores(a, e, lim, force.phases[span])
        a, e, lim = _method_arrays("cessation", seen_now, seen_force, span, local_hour)
        seen_runs = run_scores(a, e, lim, seen_force.phases[span])
        return second_stage(first_runs, seen_runs, force.thresholds["stopped"][span])

    water = [m for m, (kind, _) in meters.items() if kind == "water"]

    def scored(
        method: str, act: BoolArray, ev: FloatArray, limit: Any, span: slice, stop: int = -1
    ) -> RunScores:
        # the usual night is the model's; the baselines count every hour alike
        phases = force.phases[span] if method.removesuffix(DOORS) in _MODEL_METHODS else None
        if not method.endswith(DOORS):
            return run_scores(act, ev, limit, phases)
        during = opened[span].copy()
        if stop >= 0:  # nobody opens the door after the stop
            during[stop:] = 0
        return door_run_scores(act, ev, limit, during, away_max, phases)

    names = (
        METHODS
        + (DOOR_METHODS if doors is not None else ())
        + (MOTION_METHODS if motion is not None else ())
        + (tuple(LOW_USE) if water else ())
    )
    results: dict[str, tuple[BoolArray, BoolArray, FloatArray]] = {}
    idx = np.arange(n)
    next_active = np.minimum.accumulate(np.where(active, idx, n)[::-1])[::-1]
    last_active = np.maximum.accumulate(np.where(active, idx, -1))
    for method in names:
        if method in LOW_USE or method in MOTION_METHODS:
            if method in LOW_USE:
                alert = _first_of_runs(low_use(values[water[0]], LOW_USE[method]), active)
            else:
                now = {m: v[untouched] for m, v in values.items()}
                seen_now = {m: v[untouched] for m, v in seen_values.items()}
                alert = np.r_[
                    np.zeros(first, dtype=np.bool_), stopped_with_motion(now, seen_now, untouched)
                ]
            alert &= force.in_force
            absence = alert & (next_active - last_active - 1 >= params.absence_h)
            delays = np.full(len(stops), math.inf)
            for i, (t, draws) in enumerate(stops):
                if method in LOW_USE:
                    lead = min(LOW_USE[method], t - 1)
                    litres = np.r_[values[water[0]][t - 1 - lead : t], draws[water[0]]]
                    hits = np.flatnonzero(low_use(litres, LOW_USE[method])) - lead
                else:
                    lead, span = 0, slice(t - 1, t + STOP_H)
                    now = {m: np.r_[v[t - 1 : t], draws[m]] for m, v in values.items()}
                    seen_now = {m: np.r_[v[t - 1 : t], draws[m]] for m, v in values.items()}
                    seen_now["motion"] = np.r_[seen_values["motion"][t - 1 : t], np.zeros(STOP_H)]
                    hits = np.flatnonzero(stopped_with_motion(now, seen_now, span))
                hits = hits[hits > 0]
                if hits.size:
                    delays[i] = float(hits[0])
            results[method] = (alert, absence, delays)
            continue
        act, ev, limit = _method_arrays(
            method, {m: v[untouched] for m, v in values.items()}, force, untouched, local_hour
        )
        runs = scored(method, act, ev, limit, untouched)
        alert = np.r_[np.zeros(first, dtype=np.bool_), runs.alert]
        run_h = next_active - idx + np.r_[np.zeros(first, np.int64), runs.run_windows] - 1
        absence = alert & (run_h >= params.absence_h)
        delays = np.full(len(stops), math.inf)
        for i, (t, draws) in enumerate(stops):
            # the hour before the stop was active, which ends any run; with a door sensor the
            # hours before it also tell whether that hour's door was a return or a departure
            lead = min(DOOR_LEAD_H, t - first) if method.endswith(DOORS) else 0
            span = slice(t - 1 - lead, t + STOP_H)
            modified = {m: np.r_[v[t - 1 - lead : t], draws[m]] for m, v in values.items()}
            a, e, lim = _method_arrays(method, modified, force, span, local_hour)
            hits = np.flatnonzero(scored(method, a, e, lim, span, stop=lead + 1).alert) - lead
            hits = hits[hits > 0]
            if hits.size:
                delays[i] = float(hits[0])
        results[method] = (alert, absence, delays)

    stop_at = np.array([t for t, _ in stops], dtype=np.int64)
    rows = []
    for label, mask in periods:
        in_period = mask[stop_at] if stop_at.size else np.zeros(0, dtype=np.bool_)
        months = mask.sum() / 24 / DAYS_PER_MONTH
        day = mask & (local_hour >= 7) & (local_hour <= 22)
        methods = tuple(
            MethodResult(
                method=method,
                delays_h=tuple(float(d) for d in delays[in_period]),
                alarms=int((alert & mask).sum()),
                absence_alarms=int((absence & mask).sum()),
                months=float(months),
            )
            for method, (alert, absence, delays) in results.items()
        )
        share = 100 * float(eligible_all[day].mean()) if day.any() else math.nan
        quiet = float((real_quiet & mask).sum() / months) if months else math.nan
        known = 100 * float((~missing & mask).sum() / mask.sum())
        rows.append(DwellingReport(name, label, methods, share, quiet, tuple(meters), known))
    return rows


def evaluate(
    series: Sequence[HourlySeries],
    calendar: Calendar,
    seed: int = 0,
    *,
    params: CessationParams | None = None,
    pool_quantile: float = 0.5,
) -> CessationReport:
    """Injected-stop evaluation, each series one dwelling: its electricity (kWh/h) and, where the
    series has it (``HourlySeries.water``), its water meter, both silenced by a stop, or its
    water meter alone (``HourlySeries.meter == "water"``, litres per hour); a series
    with door counts (``HourlySeries.doors``) also gets the door-aware methods, one with a motion
    sensor's hours (``HourlySeries.motion``) ``stopped+motion``. A dwelling with
    too little data (:class:`TooLittleData`) is left out, with the reason, in ``skipped``."""
    params = params or CessationParams()
    rows: list[DwellingReport] = []
    skipped: list[SkippedDwelling] = []
    for i, s in enumerate(series):
        meters = {s.meter: (s.meter, s)}
        if s.water is not None:
            water = HourlySeries(f"{s.name} water", s.timestamps, s.water)
            meters["water"] = ("water", water)
        try:
            rows += evaluate_dwelling(
                s.name,
                meters,
                calendar,
                seed=seed + i,
                params=params,
                pool_quantile=pool_quantile,
                doors=s.doors,
                motion=s.motion,
            )
        except TooLittleData as exc:
            skipped.append(SkippedDwelling(s.name, tuple(meters), exc.reason))
    return CessationReport(tuple(rows), seed, pool_quantile, params, tuple(skipped))


def _fmt_h(hours: float) -> str:
    if math.isnan(hours):
        return "-"
    return ">24" if math.isinf(hours) else f"{hours:.0f}"


def _fmt_pct(percent: float) -> str:
    return "-" if math.isnan(percent) else f"{percent:.1f}"


def _median(values: Sequence[float]) -> tuple[float, int]:
    """The median of the values that are not NaN (NaN when none is), and how many there are."""
    counted = [v for v in values if not math.isnan(v)]
    return (float(np.median(counted)) if counted else math.nan), len(counted)


def _meters(names: Sequence[str]) -> str:
    """A dwelling's meters as the report's column shows them: ``electricity+water``."""
    return "+".join(names)


def _dwellings(count: int) -> str:
    return f"{count} dwelling" + ("" if count == 1 else "s")


def format_report(report: CessationReport) -> str:
    """One line per dwelling (and dwelling-year) and method, then the median over dwellings, and
    the dwellings skipped with the reason.

    The ``meters`` column tells a dwelling's meters (``electricity``, ``water`` or
    ``electricity+water``); each set of meters has its own medians. A median leaves out the
    dwellings that have no figure for it (no stop: no delay) and says over how many it is.
    """
    width = max([22] + [len(row.name) + 2 for row in report.rows])
    lines = [
        "Cessation on injected stops (24 h of quiet-night readings from a normally active hour; "
        f"seed {report.seed}, pool quantile {report.pool_quantile:g})",
        f"{'dwelling':<{width}}{'period':>7}{'meters':>19}{'method':>28}{'stops':>7}{'<=3h %':>8}"
        f"{'med h':>7}{'p95 h':>7}{'alarms/mo':>11}{'excl. absences':>16}",
    ]
    for row in report.rows:
        for r in row.methods:
            lines.append(
                f"{row.name:<{width}}{row.period:>7}{_meters(row.meters):>19}{r.method:>28}"
                f"{r.stops:>7}"
                f"{_fmt_pct(r.detected_pct):>8}{_fmt_h(r.delay_quantile(0.5)):>7}"
                f"{_fmt_h(r.delay_quantile(0.95)):>7}{r.alarms_per_month:>11.2f}"
                f"{r.non_absence_alarms_per_month:>16.2f}"
            )
    whole = [row for row in report.rows if row.period == "all"]
    meter_sets = dict.fromkeys(_meters(row.meters) for row in whole)  # each has its medians
    every = METHODS + DOOR_METHODS + MOTION_METHODS + tuple(LOW_USE)
    for kind, method in ((k, m) for k in meter_sets for m in every):
        picked = [
            r
            for row in whole
            if _meters(row.meters) == kind
            for r in row.methods
            if r.method == method
        ]
        if not picked:
            continue
        detected, with_stops = _median([r.detected_pct for r in picked])
        median_h, _ = _median([r.delay_quantile(0.5) for r in picked])
        p95_h, _ = _median([r.delay_quantile(0.95) for r in picked])
        alarms, with_months = _median([r.alarms_per_month for r in picked])
        non_absence, _ = _median([r.non_absence_alarms_per_month for r in picked])
        over = f"over {_dwellings(with_stops)}"
        if with_months != with_stops:
            over = f"delays over {_dwellings(with_stops)}, alarms over {with_months}"
        lines.append(
            f"{'median':<{width}}{'all':>7}{kind:>19}{method:>28}{sum(r.stops for r in picked):>7}"
            f"{_fmt_pct(detected):>8}{_fmt_h(median_h):>7}{_fmt_h(p95_h):>7}{alarms:>11.2f}"
            f"{non_absence:>16.2f}  ({over})"
        )
    for row in whole:
        lines.append(
            f"{row.name} ({' and '.join(row.meters)}): {row.known_pct:.0f} % of the hours "
            "evaluated known; eligible stop times (normally active, active the hour before) are "
            f"{row.normally_active_pct:.0f} % of the hours 07:00-23:00 local; the untouched "
            "series goes 3 h without activity from such an hour "
            f"{row.real_quiet_starts_per_month:.1f} times a month (at 3 h these look like a stop: "
            "a rough floor on the false alarms of a detector that alerts within 3 h)"
        )
    if report.skipped:
        lines.append(f"{_dwellings(len(whole))} evaluated, {len(report.skipped)} skipped:")
    for gone in report.skipped:
        lines.append(f"skipped {gone.name} ({' and '.join(gone.meters)}): {gone.reason}")
    return "\n".join(lines)
