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
forecast with no model.

Memory: the process's resident set (``VmRSS``) and its two parts, anonymous (``RssAnon``: heap
and other private memory) and file-backed (``RssFile``: mostly the pages of the libraries' code,
shared with other processes and dropped under pressure), with numpy only, after onnxruntime is
imported, after the first and the second session are open, once the baselines are ready (the
``onnx`` package builds the trivial models) and after the timed calls. Then one
session alone, each in a fresh process: the demand model and, as its baseline, the trivial ONNX
model, each imported, opened and called (model only, on the demand's 24 rows) the same way; the
first gives the budget lines. Budget (issue 5): well under 5 ms per call and under 40 MB for the
runtime with one session.

    .venv/bin/python bench/model_scoring.py [--calls 2000]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import astuple, dataclass
from pathlib import Path

import numpy as np

from models.calendar import Calendar

ARTIFACTS = Path(__file__).resolve().parents[1] / "models" / "artifacts"
BUDGET_MS = 5.0
BUDGET_MB = 40.0


@dataclass(frozen=True)
class Memory:
    """Resident memory in MB: all of it, and its anonymous and file-backed parts."""

    rss: float
    anon: float
    file: float

    def __sub__(self, other: Memory) -> Memory:
        return Memory(self.rss - other.rss, self.anon - other.anon, self.file - other.file)

    def row(self, sign: str = "") -> str:
        return "".join(f"{sign}{v:.1f}".rjust(10) for v in astuple(self))


def memory() -> Memory:
    fields: dict[str, float] = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "RssAnon", "RssFile"):
            fields[key] = int(value.split()[0]) / 1024
    nan = float("nan")
    return Memory(fields.get("VmRSS", nan), fields.get("RssAnon", nan), fields.get("RssFile", nan))


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


STEPS = ("import onnxruntime", "+ the session", "+ the timed calls")


def one_session_alone(subject: str, rows_file: Path, calls: int) -> None:
    """In a fresh process: import onnxruntime, open one session, call it; print the memory.

    ``subject`` is ``demand`` (the shipped bundle, through ``load_model``) or a file of ONNX
    bytes (through ``open_session``). Only what the main process has before its own import of
    onnxruntime is imported first (``models.demand`` imports onnxruntime itself), so the rows
    come from a file.
    """
    from models.bundle import load_bundle, trusted_keys
    from models.runtime import load_model, open_session

    rows = np.load(rows_file)
    onnx = None if subject == "demand" else Path(subject).read_bytes()
    before = memory()
    import onnxruntime  # noqa: F401 (imported here to measure what the import costs)

    imported = memory()
    if onnx is None:
        session = load_model(load_bundle(ARTIFACTS / "demand", keys=trusted_keys())).session
    else:
        session = open_session(onnx)
    opened = memory()
    timed(lambda: session.run(None, {"features": rows}), calls)
    called = memory()
    steps = [imported - before, opened - imported, called - opened]
    print(json.dumps({"before": astuple(before), "steps": [astuple(m) for m in steps]}))


def run_alone(subject: str, rows_file: Path, calls: int) -> tuple[Memory, list[Memory]]:
    out = subprocess.run(
        [sys.executable, __file__, "--calls", str(calls), "--alone", subject, str(rows_file)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    got = json.loads(out.splitlines()[-1])
    return Memory(*got["before"]), [Memory(*m) for m in got["steps"]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--alone", nargs=2, metavar=("SUBJECT", "ROWS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.alone:
        one_session_alone(args.alone[0], Path(args.alone[1]), args.calls)
        return

    # numpy, pydantic and cryptography (bundle checks): the gateway has them anyway
    from models.bundle import load_bundle, trusted_keys
    from models.runtime import load_model, open_session

    before = memory()
    import onnxruntime  # noqa: F401 (imported here to measure what the import costs)

    imported = memory()
    from models import anomaly, demand  # small; they import onnxruntime themselves

    keys = trusted_keys()
    demand_model = load_model(load_bundle(ARTIFACTS / "demand", keys=keys))
    one_session = memory()
    anomaly_model = load_model(load_bundle(ARTIFACTS / "anomaly", keys=keys))
    loaded = memory()

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
    trivial_demand_onnx = trivial_onnx(demand_rows[0].shape[1])
    trivial_demand = open_session(trivial_demand_onnx)
    trivial_anomaly = open_session(trivial_onnx(anomaly_rows.shape[1]))
    ready = memory()

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
    scored = memory()
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

    print(f"\n{'memory, MB':<44}{'resident':>10}{'anon':>10}{'file':>10}")
    print(f"{'with numpy, pydantic and cryptography':<44}{before.row()}")
    for name, now, then in (
        ("import onnxruntime", imported, before),
        ("first session (demand)", one_session, imported),
        ("second session (anomaly)", loaded, one_session),
        ("features, onnx (trivial models), 2 sessions", ready, loaded),
        ("the timed calls above", scored, ready),
    ):
        print(f"{'+ ' + name:<44}{(now - then).row('+')}")
    print(
        f"{'both models, after scoring':<44}{(scored - before).row('+')}"
        f"  (bundles {demand_model.bundle.card.size_bytes / 1e6:.2f} + "
        f"{anomaly_model.bundle.card.size_bytes / 1e6:.2f} MB)"
    )

    with tempfile.TemporaryDirectory() as folder:
        rows_file = Path(folder) / "rows.npy"
        np.save(rows_file, demand_rows[0])
        trivial_file = Path(folder) / "trivial.onnx"
        trivial_file.write_bytes(trivial_demand_onnx)
        _, model_steps = run_alone("demand", rows_file, args.calls)
        _, trivial_steps = run_alone(str(trivial_file), rows_file, args.calls)
    print(
        f"\none session alone, fresh process, {args.calls} calls on 24 rows: "
        "demand model | trivial onnx | model / trivial (resident)"
    )
    for name, model_step, trivial_step in zip(STEPS, model_steps, trivial_steps, strict=True):
        ratio = f"{model_step.rss / trivial_step.rss:.2f}" if trivial_step.rss >= 0.5 else "-"
        print(f"{name:<22}{model_step.row('+')} |{trivial_step.row('+')} | {ratio}")
    for label, n in (("import + one session", 2), ("import + one session + calls", 3)):
        model_total = sum(m.rss for m in model_steps[:n])
        trivial_total = sum(m.rss for m in trivial_steps[:n])
        anon = sum(m.anon for m in model_steps[:n])
        file = sum(m.file for m in model_steps[:n])
        verdict = "under" if model_total < BUDGET_MB else "OVER"
        print(
            f"{label}: {model_total:.1f} MB (anon {anon:.1f}, file {file:.1f}), {verdict} the "
            f"{BUDGET_MB:g} MB budget; trivial onnx {trivial_total:.1f} MB, "
            f"model / trivial {model_total / trivial_total:.2f}"
        )


if __name__ == "__main__":
    main()
