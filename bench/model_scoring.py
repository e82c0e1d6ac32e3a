"""Scoring time per call and memory of the models on the gateway, against trivial baselines.

What the gateway does each hour, timed call by call on the shipped bundles (``models/artifacts``),
each in one onnxruntime session with one thread, as ``models.runtime`` opens them:

- ``demand``: the features of a 24-hour forecast from 168 hours of history and temperature
  (``models.demand.demand_features``), then the model on its 24 rows;
- ``anomaly``: the features of the newest hour from its 673 hours of context
  (``models.anomaly.anomaly_features(..., last=1)``), then the model on that one row.

Baselines in the same run: ``trivial onnx`` is a one-operator ONNX model (the mean of each row) on
the same number of rows through a session opened the same way, the cost of calling onnxruntime at
all; ``naive numpy`` is the previous-week forecast (a slice of the history), the cost of a
forecast with no model. Memory: the process's resident set (``VmRSS``) with numpy only, after
onnxruntime is imported, after the first and the second session are open, and after the timed
calls. Budget (issue 5): well under 5 ms per call and under 40 MB for the runtime with one session.

    .venv/bin/python bench/model_scoring.py [--calls 2000]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from models.calendar import Calendar

ARTIFACTS = Path(__file__).resolve().parents[1] / "models" / "artifacts"
BUDGET_MS = 5.0
BUDGET_MB = 40.0


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def timed(fn: Callable[[], object], calls: int) -> tuple[float, float]:
    """Median and 99th percentile of one call, in microseconds (after 50 warm-up calls)."""
    for _ in range(50):
        fn()
    samples = []
    for _ in range(calls):
        t0 = time.perf_counter_ns()
        fn()
        samples.append((time.perf_counter_ns() - t0) / 1000)
    samples.sort()
    return statistics.median(samples), samples[int(0.99 * (len(samples) - 1))]


def trivial_onnx(n_features: int) -> bytes:
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("ReduceMean", ["features"], ["mean"], axes=[1], keepdims=0)],
        "trivial",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, [None, n_features])],
        [helper.make_tensor_value_info("mean", TensorProto.FLOAT, [None])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    return bytes(model.SerializeToString())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()

    # numpy, pydantic and cryptography (bundle checks): the gateway has them anyway
    from models.bundle import load_bundle, trusted_keys
    from models.runtime import load_model, open_session

    before = rss_mb()
    import onnxruntime  # noqa: F401 (imported here to measure what the import costs)

    imported = rss_mb()
    from models import anomaly, demand

    keys = trusted_keys()
    demand_model = load_model(load_bundle(ARTIFACTS / "demand", keys=keys))
    one_session = rss_mb()
    anomaly_model = load_model(load_bundle(ARTIFACTS / "anomaly", keys=keys))
    loaded = rss_mb()

    rng = np.random.default_rng(1)
    calendar = Calendar("Europe/London", "GB", "ENG")
    hours = anomaly.CONTEXT_H + 1
    stamps = np.arange(
        np.datetime64("2024-01-01T00", "h"), np.datetime64("2024-01-01T00", "h") + hours
    )
    load = 40 + 20 * np.sin(np.arange(hours) / 24 * 2 * np.pi) + rng.normal(0, 2, hours)
    temperature = 8 + rng.normal(0, 3, demand.HISTORY_H)
    history = load[-demand.HISTORY_H :]
    origin = stamps[-1] + 1

    def demand_call() -> object:
        made = demand.demand_features(history, temperature, origin, calendar)
        assert made is not None
        return demand_model.run(made[0]) * made[1]

    demand_rows = demand.demand_features(history, temperature, origin, calendar)
    assert demand_rows is not None

    def anomaly_call() -> object:
        rows = anomaly.anomaly_features(load, stamps, calendar, last=1)
        return anomaly_model.run(rows)

    anomaly_rows = anomaly.anomaly_features(load, stamps, calendar, last=1)
    trivial_demand = open_session(trivial_onnx(demand_rows[0].shape[1]))
    trivial_anomaly = open_session(trivial_onnx(anomaly_rows.shape[1]))

    results = {
        "demand: features + model (24 rows)": timed(demand_call, args.calls),
        "demand: model only": timed(lambda: demand_model.run(demand_rows[0]), args.calls),
        "demand: trivial onnx (24 rows)": timed(
            lambda: trivial_demand.run(None, {"features": demand_rows[0]}), args.calls
        ),
        "demand: naive numpy (previous week)": timed(
            lambda: history[: demand.HORIZON_H].copy(), args.calls
        ),
        "anomaly: features + model (1 row)": timed(anomaly_call, args.calls),
        "anomaly: model only": timed(lambda: anomaly_model.run(anomaly_rows), args.calls),
        "anomaly: trivial onnx (1 row)": timed(
            lambda: trivial_anomaly.run(None, {"features": anomaly_rows}), args.calls
        ),
    }
    print(f"{'call':<40}{'median us':>12}{'p99 us':>10}")
    for name, (median, p99) in results.items():
        print(f"{name:<40}{median:>12.1f}{p99:>10.1f}")
    for kind in ("demand", "anomaly"):
        model = results[f"{kind}: model only"][0]
        trivial = next(v[0] for k, v in results.items() if k.startswith(f"{kind}: trivial"))
        full = next(v for k, v in results.items() if k.startswith(f"{kind}: features"))
        print(
            f"{kind}: model / trivial onnx = {model / trivial:.2f}; full call p99 "
            f"{full[1] / 1000:.3f} ms of the {BUDGET_MS:g} ms budget"
        )
    scored = rss_mb()
    print(
        f"RSS: {before:.1f} MB with numpy, pydantic and cryptography; "
        f"onnxruntime import +{imported - before:.1f} MB; "
        f"first session (demand) +{one_session - imported:.1f} MB; "
        f"second session (anomaly) +{loaded - one_session:.1f} MB; "
        f"after the calls above +{scored - loaded:.1f} MB"
    )
    print(
        f"runtime with one session: {one_session - before:.1f} MB of the {BUDGET_MB:g} MB budget; "
        f"with both models, after scoring: {scored - before:.1f} MB "
        f"(bundles {demand_model.bundle.card.size_bytes / 1e6:.2f} + "
        f"{anomaly_model.bundle.card.size_bytes / 1e6:.2f} MB)"
    )


if __name__ == "__main__":
    main()
