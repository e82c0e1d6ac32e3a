"""The models on the gateway: demand forecasts, unusual hours and dwellings gone quiet, every hour.

Once an hour, shortly after the hour's summaries are written (``HOUR_DELAY_S`` past the hour, and
once at start), the service reads each configured series from the store's summaries
(:mod:`edge.store.hourly`: the same hourly values the models were trained on, NaN where unknown),
and

- **demand** (``[[models.demand]]``): forecasts the next 24 hours with the demand model, stores the
  forecast (synced to the central API as a ``forecast`` record), compares past forecasts with what
  happened (CV(RMSE) of the last 7 days' forecasts over the hours that have passed, shown in
  ``/api/status``), and raises ``demand_capacity`` when a forecast hour is above the building's
  ``capacity_kwh``; it clears when every forecast hour is at or below 95 % of it;
- **anomaly** (``[[models.anomaly]]``): scores the hour that just ended against what the model
  expects for that meter, with the meter's own threshold; ``unusual_use`` is raised with the score
  and a reason, and cleared after ``ANOMALY_CLEAR_H`` ordinary hours in a row;
- **cessation** (``[[models.dwellings]]``): feeds the dwelling's hour to its detector
  (:mod:`models.cessation`), which raises a quiet spell in two stages, with the reason ("no water
  use for 4 h, usually active in 3.1 of these hours"), both cleared at the first hour with use
  again: ``use_quiet`` (a warning, "please check in") when the dwelling's inactivity becomes
  unlikely for it, then ``use_stopped`` (critical, "please visit", superseding the first) when a
  door or motion sensor agrees or the quiet goes on past the longer window. A dwelling with
  ``motion`` (BLE motion sensors) feeds whether one saw movement in each hour (the hourly mean of
  its ``motion`` readings above 0; unknown when none was heard), and once ``min_history_days`` of
  them are stored a second model of the meters and the sensors decides the second stage. A
  dwelling with ``doors`` (BLE door sensors) also
  feeds the detector how many times its doors opened in each hour (from the store's access
  events), in its history too: a quiet spell that starts as the door opens is an outing, shown as
  "presumed out for N h (door)" with no alert, until the door opens again or 12 h have passed.
  The dwelling's usual night is learnt too: a quiet night, and a morning quiet until the hour it
  is usually up by, is shown as "quiet for N h (the usual night)" and counts for nothing; the
  status also shows how many alarms a month the dwelling's own last 26 weeks would have raised
  (``past_alarms_per_month``: above one, a door sensor is what helps) and how soon a stop is
  alerted (``response_h``), for its choice of ``respond`` (``within_3h`` or ``calibrated``) and
  for the other (``choices``, worked out once per daily fit).

Per-meter thresholds and activity profiles are learnt from the meter's own history in the store
once ``min_history_days`` of it exist, and learnt again each day. At start, the detectors replay
the last day, so that a dwelling already quiet before a restart is not forgotten.

Models come from bundles (:mod:`models.bundle`): the shipped ones (``models/artifacts/``) and a
newer bundle an operator puts in ``<state_dir>/models/<kind>/``, checked every
``bundle_check_interval_s``: a bundle that passes every check replaces the one in use without a
restart; one that fails is refused and logged, and the model in use stays. A model that gives
invalid output is replaced by the previous one (:class:`models.runtime.ModelSlot`).

All model work runs in one thread of its own (``nbedge-models``), never on the event loop; alert
findings go to the pipeline's alert book (``Pipeline.submit_finding``), which decides what changed.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import numpy as np

from edge.alerts import Finding, alert_key
from edge.alerts.catalogue import Params
from edge.clock import Clock
from edge.config import meter_kind
from edge.pipeline import Pipeline
from edge.schemas import DemandSeriesSection, DwellingSection, GatewayConfig
from edge.status import (
    AnalyticsStatus,
    DemandStatus,
    DwellingStateName,
    DwellingStatus,
    ForecastStatus,
    MeterStatus,
    ModelSlotStatus,
    RespondChoice,
)
from edge.store import Store
from edge.store.forecasts import Forecast
from models.bundle import CARD_FILE, trusted_keys
from models.calendar import Calendar
from models.runtime import ModelSlot
from nbedge.errors import InvalidOutput, ModelRejected

log = logging.getLogger(__name__)

T = TypeVar("T")

HOUR_S = 3600
HOUR_DELAY_S = 60.0
"""Seconds past the hour the hourly run waits for the hour's summaries."""
WALL_RECHECK_S = 60.0
"""The schedule looks at the wall clock at least this often, so that a clock set forward or back
(NTP's first step on a Pi without a real-time clock) moves the next run within a minute."""
CAPACITY_CLEAR_FRACTION = 0.95
ACCURACY_WINDOW_S = 7 * 86_400
SHIPPED_DIR = Path(__file__).resolve().parent.parent / "models" / "artifacts"

DEMAND_RULE = "demand_capacity"
ANOMALY_RULE = "unusual_use"
CESSATION_RULE = "use_stopped"
QUIET_RULE = "use_quiet"
DEMAND_POINT = "forecast"
"""The point of a demand series' alert (its device is the series)."""
DWELLING_POINT = "use"
"""The point of a dwelling's alerts (their device is the dwelling)."""
MOTION_POINT = "motion"
"""The reading of a ``kind = "motion"`` BLE sensor: 1 when it saw movement, else 0."""
ANOMALY_CLEAR_H = 3
"""Ordinary hours in a row that clear ``unusual_use``."""
REPLAY_H = 24
"""Thresholds and profiles are learnt from the history up to a day ago; a dwelling's detector is
fed that last day again after a start."""
CALIBRATION_DAYS = 8 * 7
"""A meter's threshold is learnt from (up to) its last eight weeks."""


def _hour(epoch: float) -> int:
    return int(epoch // HOUR_S) * HOUR_S


def next_run_after(epoch: float) -> float:
    """When the hourly run after one at ``epoch`` is due: ``HOUR_DELAY_S`` past the next hour,
    or past this one if that is still to come (a run at start, before it)."""
    return _hour(epoch - HOUR_DELAY_S) + HOUR_S + HOUR_DELAY_S


def _utc_hour(epoch: int) -> np.datetime64:
    return np.datetime64(epoch // HOUR_S, "h")


@dataclass
class DemandState:
    config: DemandSeriesSection
    last: Forecast | None = None
    status: str = "waiting for the first run"
    cv_rmse_7d: float | None = None
    pairs_7d: int = 0


@dataclass
class MeterState:
    meter: str
    calibration: Any = None  # models.anomaly.Calibration once learnt
    fitted_day: int = -1
    ordinary_run: int = 0
    """Ordinary hours in a row: ``ANOMALY_CLEAR_H`` of them find ``unusual_use`` inactive."""
    status: str = "learning"
    score: float | None = None


@dataclass
class DwellingState:
    config: DwellingSection
    kinds: dict[str, str]  # meter -> electricity | water
    scales: dict[str, float]  # meter -> factor to the model's unit (m3 -> litres)
    detector: Any = None  # models.cessation.CessationDetector once learnt
    fitted_day: int = -1
    last_hour: int = 0
    status: str = "learning"
    state: DwellingStateName = "learning"
    score: float = 0.0
    reason: str = ""
    quiet_h: float | None = None
    last_door_hour: float | None = None  # start of the latest hour with a door opening
    choices: dict[str, dict[str, float | None]] | None = None  # each respond choice: its cost


@dataclass
class AnalyticsStats:
    runs: int = 0
    last_run_at: float | None = None
    """Wall time the last hourly run started."""
    next_run_at: float = 0.0
    """Wall time the next hourly run is due."""
    forecasts: int = 0
    bundles_refused: int = 0
    failures: int = 0
    bundle_errors: list[str] = field(default_factory=list)
    model_runs: dict[str, int] = field(default_factory=dict)
    """Runs of one series' model, per kind (``demand``, ``anomaly``, ``cessation``)."""
    model_seconds: dict[str, float] = field(default_factory=dict)
    """Their total duration, per kind (seconds of the process's monotonic clock)."""


class Analytics:
    """The hourly model runs of one gateway (see the module docstring)."""

    def __init__(
        self,
        config: GatewayConfig,
        store: Store,
        pipeline: Pipeline,
        *,
        shipped_dir: Path = SHIPPED_DIR,
        clock: Clock | None = None,
    ) -> None:
        """``clock`` is the gateway's (default: the store's)."""
        self._config = config
        self._store = store
        self._pipeline = pipeline
        self._shipped_dir = shipped_dir
        self._state_models = config.gateway.state_dir / "models"
        self._clock = store.clock if clock is None else clock
        site = config.site
        self.calendar = Calendar(site.timezone, site.country, site.subdivision)
        keys = trusted_keys(config.models.trusted_keys)
        self.slots: dict[str, ModelSlot] = {}
        if config.models.demand:
            from models import demand

            self.slots["demand"] = ModelSlot("demand", demand.FEATURE_VERSION, keys)
        if config.models.anomaly:
            from models import anomaly

            self.slots["anomaly"] = ModelSlot("anomaly", anomaly.FEATURE_VERSION, keys)
        self._offered: dict[str, str] = {}  # kind -> sha256 of the state folder's card offered
        self.demand = {s.name: DemandState(s) for s in config.models.demand}
        self.meters = {a.meter: MeterState(a.meter) for a in config.models.anomaly}
        self.dwellings = {d.name: _dwelling_state(config, d) for d in config.models.dwellings}
        self.stats = AnalyticsStats()
        self._executor: ThreadPoolExecutor | None = None

    # --- the service ---------------------------------------------------------------------

    async def run(self) -> None:
        """Load the models, run them at once, then every hour (``HOUR_DELAY_S`` past it), and
        check for new bundles every ``bundle_check_interval_s``, until cancelled."""
        clock = self._clock
        interval = self._config.models.bundle_check_interval_s
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nbedge-models")
        try:
            await self.start()
            await self.run_hour()
            next_check = clock.monotonic() + interval
            while True:
                now = clock.wall_time()
                due = self.stats.next_run_at
                if now >= due:
                    await self.run_hour()
                    continue
                if due - now > HOUR_S + HOUR_DELAY_S:  # the wall clock was set back
                    self.stats.next_run_at = next_run_after(now)
                    continue
                check_in = next_check - clock.monotonic()
                if check_in <= 0:
                    await self.check_bundles()
                    next_check = clock.monotonic() + interval
                    continue
                await clock.sleep(min(due - now, check_in, WALL_RECHECK_S))
        finally:
            executor, self._executor = self._executor, None
            await asyncio.to_thread(executor.shutdown, wait=True)

    async def start(self) -> None:
        """Load the shipped models, then any newer bundle from the state folder."""
        await self._load_shipped()
        await self.check_bundles()

    async def _in_thread(self, fn: Callable[..., T], *args: Any) -> T:
        if self._executor is None:
            return fn(*args)
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def _load_shipped(self) -> None:
        for kind, slot in self.slots.items():
            try:
                await self._in_thread(slot.offer, self._shipped_dir / kind)
            except ModelRejected as exc:
                self._refused(exc)

    async def check_bundles(self) -> None:
        """Offer each kind's bundle in ``<state_dir>/models/<kind>/`` if it changed since."""
        for kind, slot in self.slots.items():
            folder = self._state_models / kind
            try:
                digest = hashlib.sha256((folder / CARD_FILE).read_bytes()).hexdigest()
            except OSError:
                continue  # no bundle there (or it is being replaced): keep the model in use
            if self._offered.get(kind) == digest:
                continue
            self._offered[kind] = digest
            try:
                await self._in_thread(slot.offer, folder)
            except ModelRejected as exc:
                self._refused(exc)

    def _refused(self, exc: ModelRejected) -> None:
        self.stats.bundles_refused += 1
        self.stats.bundle_errors = [*self.stats.bundle_errors[-4:], str(exc)]

    async def run_hour(self) -> None:
        """One hourly run of every configured model; a failure of one is logged, not fatal."""
        started = self._clock.wall_time()
        self.stats.runs += 1
        self.stats.last_run_at = started
        self.stats.next_run_at = next_run_after(started)
        hour = _hour(started)
        for state in self.demand.values():
            await self._guarded(self._forecast(state, hour), "demand", state.config.name)
        for meter in self.meters.values():
            await self._guarded(self._score_meter(meter, hour), "anomaly", meter.meter)
        for dwelling in self.dwellings.values():
            await self._guarded(
                self._watch_dwelling(dwelling, hour), "cessation", dwelling.config.name
            )

    async def _guarded(self, work: Any, kind: str, series: str) -> None:
        """Run one series' model, timed per ``kind``; a failure is counted and logged."""
        stats = self.stats
        start = time.perf_counter()
        try:
            await work
        except asyncio.CancelledError:
            raise
        except Exception:
            stats.failures += 1
            log.exception("model run failed", extra={"series": f"{kind} {series}"})
        finally:
            stats.model_runs[kind] = stats.model_runs.get(kind, 0) + 1
            elapsed = time.perf_counter() - start
            stats.model_seconds[kind] = stats.model_seconds.get(kind, 0.0) + elapsed

    # --- series from the store -----------------------------------------------------------

    async def _hourly(
        self, meter: str, start: int, hours: int, how: Literal["delta", "mean"]
    ) -> np.ndarray:
        device, point = meter.split(":")
        values = await self._store.hourly(
            device, point, start=start, hours=hours, how=how, synced_only=self._store.clock.synced()
        )
        return np.asarray(values, dtype=np.float64)

    async def _counter_sum(self, meters: Sequence[str], start: int, hours: int) -> np.ndarray:
        total = np.zeros(hours)
        for meter in meters:
            total += await self._hourly(meter, start, hours, "delta")  # NaN in any meter: NaN
        return total

    async def _gauge(self, meter: str, start: int, hours: int) -> np.ndarray:
        return await self._hourly(meter, start, hours, "mean")

    async def _motion_hours(
        self, dwelling: DwellingSection, start: int, hours: int
    ) -> np.ndarray | None:
        """Per hour: 1 when a motion sensor of the dwelling saw movement, 0 when they were heard
        and saw none, NaN when none was heard; None without motion sensors."""
        if not dwelling.motion:
            return None
        seen = np.full(hours, np.nan)
        for sensor in dwelling.motion:
            mean = await self._hourly(f"{sensor}:{MOTION_POINT}", start, hours, "mean")
            with np.errstate(invalid="ignore"):
                moved = np.where(np.isnan(mean), np.nan, (mean > 0).astype(np.float64))
            seen = np.fmax(seen, moved)
        return seen

    async def _door_openings(
        self, dwelling: DwellingSection, start: int, hours: int
    ) -> np.ndarray | None:
        """How many times the dwelling's doors opened in each hour; None without doors."""
        if not dwelling.doors:
            return None
        counts = await self._store.hourly_access(
            dwelling.doors,
            "opened",
            start=start,
            hours=hours,
            synced_only=self._store.clock.synced(),
        )
        return np.asarray(counts, dtype=np.int64)

    # --- demand ---------------------------------------------------------------------------

    async def demand_inputs(
        self, series: DemandSeriesSection, hour: int
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """The 168 hourly values (and temperatures) before ``hour``, as the model is fed them."""
        from models import demand

        start = hour - demand.HISTORY_H * HOUR_S
        history = await self._counter_sum(series.meters, start, demand.HISTORY_H)
        temperature = None
        if series.temperature is not None:
            temperature = await self._gauge(series.temperature, start, demand.HISTORY_H)
        return history, temperature

    async def _forecast(self, state: DemandState, hour: int) -> None:
        from models import demand

        series = state.config
        slot = self.slots["demand"]
        history, temperature = await self.demand_inputs(series, hour)
        await self._compare(state, hour)
        features = demand.demand_features(history, temperature, _utc_hour(hour), self.calendar)
        if features is None:
            known = int(np.sum(~np.isnan(history)))
            state.status = (
                f"waiting for history: {known} of the last {demand.HISTORY_H} hours known, "
                f"{demand.MIN_KNOWN_H} needed"
            )
            return
        rows, level = features
        if slot.active is None:
            state.status = "no demand model loaded"
            return
        try:
            relative = await self._in_thread(slot.run, rows)
        except InvalidOutput:  # counted by the slot, which went back to the previous model
            if slot.active is None:
                raise
            relative = await self._in_thread(slot.run, rows)  # the previous model, once
        values = tuple(max(0.0, float(v)) for v in relative * level)
        card = slot.active.bundle.card  # the model that answered (run raises without one)
        label = f"{card.name} {card.version} {card.sha256[:12]}"
        forecast = Forecast(
            series=series.name,
            issued_at=self._clock.wall_time(),
            start=float(hour),
            values=values,
            model=label,
            capacity_kwh=series.capacity_kwh,
        )
        await self._store.write_forecast(forecast)
        self.stats.forecasts += 1
        state.last = forecast
        peak = max(values)
        state.status = f"forecast issued; peak {peak:.1f} kWh"
        if series.capacity_kwh is not None:
            self._capacity_verdict(series.name, series.capacity_kwh, forecast, peak)

    def _capacity_verdict(
        self, name: str, capacity: float, forecast: Forecast, peak: float
    ) -> None:
        """``demand_capacity``: active above the capacity, inactive at or below 95 % of it."""
        if CAPACITY_CLEAR_FRACTION * capacity < peak <= capacity:
            return
        index = forecast.values.index(peak)
        when = _utc_hour(int(forecast.start) + index * HOUR_S)
        local = self.calendar.local(np.array([when]))
        self._pipeline.submit_finding(
            Finding(
                code=DEMAND_RULE,
                device=name,
                point=DEMAND_POINT,
                active=peak > capacity,
                value=peak,
                at=forecast.issued_at,
                params={
                    "peak": peak,
                    "hour": int(local.hour[0]),
                    "hours_ahead": index,
                    "capacity": capacity,
                },
            )
        )

    async def _compare(self, state: DemandState, hour: int) -> None:
        """CV(RMSE) of the last week's forecasts over the hours that have passed."""
        since = hour - ACCURACY_WINDOW_S - 24 * HOUR_S
        forecasts = await self._store.forecasts(state.config.name, since)
        if not forecasts:
            return
        first = int(min(f.start for f in forecasts))
        span = (hour - first) // HOUR_S
        if span <= 0:
            return
        actual = await self._counter_sum(state.config.meters, first, span)
        predicted: list[float] = []
        measured: list[float] = []
        for f in forecasts:
            offset = (int(f.start) - first) // HOUR_S
            for k, value in enumerate(f.values):
                i = offset + k
                if i < span and not math.isnan(actual[i]) and f.start >= hour - ACCURACY_WINDOW_S:
                    predicted.append(value)
                    measured.append(float(actual[i]))
        if len(measured) < 24:
            return
        from models.metrics import cv_rmse

        state.cv_rmse_7d = cv_rmse(measured, predicted)
        state.pairs_7d = len(measured)

    # --- anomaly --------------------------------------------------------------------------

    async def _score_meter(self, state: MeterState, hour: int) -> None:
        """Score the hour that just ended; calibrate from the meter's own history once a day."""
        from models import anomaly

        slot = self.slots["anomaly"]
        if slot.active is None:
            state.status = "no anomaly model loaded"
            return
        session = slot.as_session()
        day = hour // 86_400
        if state.fitted_day != day:
            span = CALIBRATION_DAYS * 24
            fit_end = hour - REPLAY_H * HOUR_S  # the hours being judged are not what is usual
            values = await self._counter_sum([state.meter], fit_end - span * HOUR_S, span)
            known = int(np.sum(~np.isnan(values)))
            needed = self._config.models.min_history_days * 24
            if known < needed:
                state.status = f"learning: {known // 24} of {needed // 24} days of history"
                return
            stamps = np.arange(_utc_hour(fit_end - span * HOUR_S), _utc_hour(fit_end))
            try:
                state.calibration = await self._in_thread(
                    anomaly.calibrate, values, stamps, self.calendar, session
                )
            except anomaly.CalibrationError as exc:
                state.status = f"learning: {exc}"
                return
            state.fitted_day = day
        context = anomaly.CONTEXT_H + 1
        values = await self._counter_sum([state.meter], hour - context * HOUR_S, context)
        stamps = np.arange(_utc_hour(hour - context * HOUR_S), _utc_hour(hour))
        scored = await self._in_thread(
            anomaly.score, session, values, stamps, self.calendar, state.calibration
        )
        last = float(scored.score[-1])
        state.score = None if math.isnan(last) else last
        device = state.meter.split(":")[0]
        at = self._clock.wall_time()
        if bool(scored.flag[-1]):
            state.ordinary_run = 0
            state.status = f"unusual: {scored.reason[-1]}"
            self._pipeline.submit_finding(
                Finding(
                    code=ANOMALY_RULE,
                    device=device,
                    point=state.meter,
                    active=True,
                    value=last if not math.isnan(last) else scored.threshold,
                    at=at,
                    params=dict(scored.details[-1] or {}),
                )
            )
            return
        if math.isnan(last):
            state.status = "hour not scored (missing readings)"
            return
        state.ordinary_run += 1
        state.status = f"usual (score {last:.1f}, threshold {scored.threshold:.1f})"
        if state.ordinary_run >= ANOMALY_CLEAR_H:  # the book knows whether one is raised
            self._pipeline.submit_finding(
                Finding(
                    code=ANOMALY_RULE,
                    device=device,
                    point=state.meter,
                    active=False,
                    value=last,
                    at=at,
                    params={"hours": state.ordinary_run},
                )
            )

    # --- cessation ------------------------------------------------------------------------

    async def _watch_dwelling(self, state: DwellingState, hour: int) -> None:
        from models import cessation

        history_days = self._config.models.min_history_days
        day = hour // 86_400
        weeks = cessation.CessationParams().calibration_weeks
        if state.fitted_day != day:
            # Learnt from the history up to a day ago: an inactive run going on now must not be
            # part of what "usual" is learnt from (the detector replays the last day instead).
            fit_end = hour - REPLAY_H * HOUR_S
            span = weeks * 7 * 24
            start = fit_end - span * HOUR_S
            values = {
                m: await self._counter_sum([m], start, span) * state.scales[m] for m in state.kinds
            }
            known = min(int(np.sum(~np.isnan(v))) for v in values.values())
            if known < history_days * 24:
                state.status = f"learning: {known // 24} of {history_days} days of history"
                state.state = "learning"
                return
            first = int(np.argmax(np.all([~np.isnan(v) for v in values.values()], axis=0)))
            timestamps = np.arange(_utc_hour(start + first * HOUR_S), _utc_hour(fit_end))
            meters = {
                state.kinds[m]: cessation.MeterHistory(state.kinds[m], v[first:])
                for m, v in values.items()
            }
            opened = await self._door_openings(state.config, start, span)
            history = None if opened is None else opened[first:]
            _note_door_hours(state, start, opened)
            params = cessation.CessationParams.responding(
                state.config.respond, state.config.stopped_after_h
            )
            model = await self._in_thread(
                lambda: cessation.fit_dwelling(
                    meters, timestamps, self.calendar, params=params, doors=history
                )
            )
            moved = await self._motion_hours(state.config, start, span)
            presence = None
            if moved is not None and np.sum(~np.isnan(moved[first:])) >= history_days * 24:
                # the meters and the motion sensor together: the second stage's own detector
                with_motion = meters | {"motion": cessation.MeterHistory("motion", moved[first:])}
                presence = await self._in_thread(
                    lambda: cessation.fit_dwelling(
                        with_motion, timestamps, self.calendar, params=params, doors=history
                    )
                )
            state.choices = await self._in_thread(model.choices)
            replay_from = hour - REPLAY_H * HOUR_S
            detector = state.detector
            if detector is None or (presence is None) != (detector.presence is None):
                # new, or a motion sensor's history has just become long enough: replay the day
                state.detector = cessation.CessationDetector(
                    model, self.calendar, presence=presence, door_sensor=bool(state.config.doors)
                )
                state.last_hour = replay_from
            else:
                detector.replace_model(model, presence)
            state.fitted_day = day
        # feed every hour since the last one fed (a replay after start, normally just one)
        start = max(state.last_hour, hour - REPLAY_H * HOUR_S)
        hours = (hour - start) // HOUR_S
        if hours <= 0:
            return
        values = {
            m: await self._counter_sum([m], start, hours) * state.scales[m] for m in state.kinds
        }
        opened = await self._door_openings(state.config, start, hours)
        _note_door_hours(state, start, opened)
        moved = await self._motion_hours(state.config, start, hours)
        checked_in: tuple[float, dict[str, str | int | float]] | None = None
        for k in range(hours):
            readings = {state.kinds[m]: float(v[k]) for m, v in values.items()}
            if moved is not None:
                readings["motion"] = float(moved[k])
            doors = 0 if opened is None else int(opened[k])
            verdict = state.detector.update(_utc_hour(start + k * HOUR_S), readings, doors=doors)
            if verdict.alarmed and not verdict.stopped:
                checked_in = (verdict.score, state.detector.evidence())
            elif not verdict.alarmed:
                checked_in = None
        state.last_hour = hour
        state.score = verdict.score
        state.reason = verdict.reason
        state.quiet_h = verdict.inactive_h
        name = state.config.name
        at = self._clock.wall_time()
        evidence = state.detector.evidence()

        def found(code: str, active: bool, value: float, params: Params | None = None) -> None:
            """A finding of the dwelling: active ones carry the evidence unless ``params``."""
            if params is None:
                params = evidence if active else {}
            self._pipeline.submit_finding(
                Finding(
                    code=code,
                    device=name,
                    point=DWELLING_POINT,
                    active=active,
                    value=value,
                    at=at,
                    params=params,
                )
            )

        if verdict.away:
            # An outing: nothing is raised, and an alert raised before the door opened is not
            # cleared either (no use came back; the one who opened it may be answering it).
            state.status = f"presumed out for {verdict.inactive_h:g} h (door)"
            state.state = "away"
        elif verdict.stopped:
            state.status = f"alert: {verdict.reason}"
            state.state = "alert"
            if checked_in is not None and not any(
                self._pipeline.is_active(alert_key(code, name, DWELLING_POINT))
                for code in (QUIET_RULE, CESSATION_RULE)
            ):
                # A replay (after a start) went through the check-in to the visit: both, in
                # their order, so that the alert's story is the one people would have lived.
                score, then = checked_in
                found(QUIET_RULE, True, score, then)
            found(CESSATION_RULE, True, verdict.score)
            # a visit supersedes the check-in: "still quiet; a visit is asked for now"
            found(QUIET_RULE, False, verdict.score, {"superseded": True})
        elif verdict.alarmed:
            state.status = f"please check in: {verdict.reason}"
            state.state = "quiet"
            found(CESSATION_RULE, False, 0.0)
            found(QUIET_RULE, True, verdict.score)
        else:
            if verdict.inactive_h == 0:
                state.status, state.state = "in use", "in_use"
            elif verdict.asleep:
                state.status = f"quiet for {verdict.inactive_h:g} h (the usual night)"
                state.state = "night"
            else:
                state.status, state.state = f"quiet for {verdict.inactive_h:g} h", "quiet"
            found(CESSATION_RULE, False, 0.0)
            found(QUIET_RULE, False, verdict.score)

    # --- status ---------------------------------------------------------------------------

    def status(self) -> AnalyticsStatus:
        """The models in use, the runs, and the state of every series (``/api/status`` ->
        ``analytics``)."""
        slots = {
            kind: ModelSlotStatus(
                model=None if slot.active is None else slot.active.bundle.label,
                bundle=None if slot.active is None else str(slot.active.bundle.path),
                previous=None if slot.previous is None else slot.previous.bundle.label,
                swaps=slot.swaps,
                rollbacks=slot.rollbacks,
                invalid_outputs=slot.invalid_outputs,
            )
            for kind, slot in self.slots.items()
        }
        return AnalyticsStatus(
            models=slots,
            runs=self.stats.runs,
            last_run_at=self.stats.last_run_at,
            next_run_at=self.stats.next_run_at or None,
            forecasts=self.stats.forecasts,
            failures=self.stats.failures,
            bundles_refused=self.stats.bundles_refused,
            bundle_errors=tuple(self.stats.bundle_errors),
            model_runs=dict(self.stats.model_runs),
            model_seconds=dict(self.stats.model_seconds),
            demand={name: _demand_status(d) for name, d in self.demand.items()},
            meters={
                name: MeterStatus(status=m.status, score=m.score) for name, m in self.meters.items()
            },
            dwellings={name: _dwelling_status(d) for name, d in self.dwellings.items()},
        )


def _demand_status(state: DemandState) -> DemandStatus:
    last = state.last
    return DemandStatus(
        status=state.status,
        cv_rmse_7d=state.cv_rmse_7d,
        hours_compared_7d=state.pairs_7d,
        capacity_kwh=state.config.capacity_kwh,
        forecast=None
        if last is None
        else ForecastStatus(
            start=last.start, issued_at=last.issued_at, kwh=last.values, model=last.model
        ),
    )


def _dwelling_status(state: DwellingState) -> DwellingStatus:
    """A dwelling's state, and what each choice of ``respond`` costs it (from its own history):
    the alert threshold, the alarms a month its last 26 weeks would have raised at it, and the
    hours from a stop at a usually active hour to the alert (median; None: over 24 h)."""
    choices = (
        None
        if state.choices is None
        else {choice: RespondChoice.model_validate(c) for choice, c in state.choices.items()}
    )
    in_force = None if choices is None else choices[state.config.respond]
    return DwellingStatus(
        status=state.status,
        score=state.score,
        reason=state.reason,
        respond=state.config.respond,
        threshold=None if in_force is None else in_force.threshold,
        past_alarms_per_month=None if in_force is None else in_force.past_alarms_per_month,
        response_h=None if in_force is None else in_force.response_h,
        choices=choices,
        state=state.state,
        quiet_h=state.quiet_h,
        last_door_hour=state.last_door_hour,
    )


def _note_door_hours(state: DwellingState, start: int, opened: np.ndarray | None) -> None:
    """Keep the start of the latest hour in which a door opened, of the hours from ``start``."""
    if opened is None:
        return
    hours = np.flatnonzero(opened > 0)
    if len(hours):
        latest = float(start + int(hours[-1]) * HOUR_S)
        if state.last_door_hour is None or latest > state.last_door_hour:
            state.last_door_hour = latest


def _dwelling_state(config: GatewayConfig, dwelling: DwellingSection) -> DwellingState:
    """Each meter's kind (electricity, water) and unit factor, from its profile's unit."""
    from firmware_bridge.modbus.profiles import load_profile

    profiles = {d.name: load_profile(d.profile) for d in config.modbus.devices}
    kinds, scales = {}, {}
    for meter in dwelling.meters:
        device, point = meter.split(":")
        kinds[meter], scales[meter] = meter_kind(profiles[device].point(point).unit)
    return DwellingState(config=dwelling, kinds=kinds, scales=scales)
