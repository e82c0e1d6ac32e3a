"""``nbedge models ...``: train, evaluate, and manage the keys and bundles of the models.

- ``nbedge models train --data DIR [--out DIR] [--key PEM]``: trains the shipped models from the
  public data (``../shared/data``) and writes their bundles (default: a new folder, so that the
  result can be compared with the shipped ones; ``--out models/artifacts`` replaces them). Needs
  the ``train`` extra (scikit-learn, skl2onnx), never installed on a gateway.
- ``nbedge models evaluate demand|anomaly --data PATH``: the shipped (or ``--bundle``) model on a
  CSV file or a folder of them in the documented format (:mod:`models.series`), or on a folder of
  the public data sets, with the naive baselines beside it; anomaly reads labelled files only.
- ``nbedge models evaluate cessation --data PATH``: the cessation detector on stops injected into
  each dwelling's own series (no bundle: each dwelling's model is fitted from its history).
- ``nbedge models keygen PRIVATE.pem``: a new signing key; prints the public key for
  ``[models] trusted_keys``.
- ``nbedge models sign BUNDLE --key PRIVATE.pem`` and ``nbedge models verify BUNDLE``.

Commands import what they need when they run (``nbedge --help`` stays quick on a Pi).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

EVALUATED = ("demand", "anomaly", "cessation")  # the models `nbedge models evaluate` evaluates


def register(commands: Any) -> None:
    """Add ``models`` and its subcommands to the ``nbedge`` parser's subparsers."""
    models = commands.add_parser("models", help="train, evaluate, sign and verify the models")
    sub = models.add_subparsers(title="models commands", metavar="COMMAND")

    keygen = sub.add_parser(
        "keygen",
        help="make a key pair for signing model bundles",
        description="Write a new Ed25519 private key (mode 0600; keep it off the gateways) and "
        "print its public key, to add to [models] trusted_keys of the gateways that should take "
        "bundles signed with it.",
    )
    keygen.add_argument("private_key", type=Path, help="file to create for the private key")
    keygen.set_defaults(handler=_keygen)

    sign = sub.add_parser("sign", help="sign a model bundle (its card, which holds the sha256)")
    sign.add_argument("bundle", type=Path, help="the bundle folder")
    sign.add_argument("--key", type=Path, required=True, help="private key (PEM)")
    sign.set_defaults(handler=_sign)

    verify = sub.add_parser(
        "verify",
        help="check a bundle as a gateway would: files, sha256, signature, load, check vector",
    )
    verify.add_argument("bundle", type=Path, help="the bundle folder")
    verify.add_argument(
        "--trusted-key",
        action="append",
        default=[],
        metavar="ed25519:...",
        help="a public key to trust besides the release key (repeatable)",
    )
    verify.set_defaults(handler=_verify)

    train = sub.add_parser(
        "train",
        help="train the shipped models from the public data and write their bundles",
        description="Needs the train extra (pip install 'nbedge[train]'). Writes one bundle per "
        "model into --out and says whether each reproduces the shipped one.",
    )
    train.add_argument("--data", type=Path, required=True, help="the public data folder")
    train.add_argument(
        "--out", type=Path, required=True, help="folder for the bundles (models/artifacts: replace)"
    )
    train.add_argument("--key", type=Path, help="private key to sign the bundles with")
    train.add_argument("--only", choices=("demand", "anomaly"), help="train one model")
    train.set_defaults(handler=_train)

    evaluate = sub.add_parser(
        "evaluate",
        help="a model on a CSV file or folder, beside the naive baselines",
        description="PATH is a CSV file or a folder of them (timestamp,value[,temperature]"
        "[,label][,doors][,water][,motion], or timestamp,water for a home with a water meter "
        "alone; one building per file: see docs/models.md), or a folder of a "
        "public data set (Cambridge estates, LEAD, the UCI household, the DAIAD water meters). "
        "demand forecasts each file; anomaly scores the files with labels against them; "
        "cessation injects stops into each file, a dwelling, and tells how soon they are alerted "
        "and how many false alarms its own series raises.",
    )
    evaluate.add_argument("model", choices=EVALUATED)
    evaluate.add_argument("--data", type=Path, required=True, metavar="PATH")
    evaluate.add_argument(
        "--bundle", type=Path, help="demand, anomaly: a bundle folder (default: the shipped one)"
    )
    evaluate.add_argument(
        "--trusted-key",
        action="append",
        default=[],
        metavar="ed25519:...",
        help="a public key to trust for --bundle besides the release key",
    )
    evaluate.add_argument("--start", help="demand: first day evaluated (default: the 8th day)")
    evaluate.add_argument("--end", help="demand: day after the last evaluated (default: the end)")
    evaluate.add_argument("--buildings", help="only these buildings (comma-separated names)")
    evaluate.add_argument(
        "--timezone", help="local time zone of CSV data (default UTC; the DAIAD files: CET)"
    )
    evaluate.add_argument("--country", help="public holidays of CSV data (ISO 3166 code)")
    evaluate.add_argument("--subdivision", help="regional holidays of CSV data")
    evaluate.add_argument("--seed", type=int, default=0, help="cessation: seed of injected stops")
    evaluate.set_defaults(handler=_evaluate)


def _keygen(args: argparse.Namespace) -> int:
    from models.bundle import generate_key

    try:
        public = generate_key(args.private_key)
    except FileExistsError:
        print(f"nbedge: {args.private_key} exists; not overwritten", file=sys.stderr)
        return 1
    print(f"private key written to {args.private_key} (mode 0600; keep it off the gateways)")
    print("add the public key to the gateways' configuration:\n")
    print(f'[models]\ntrusted_keys = ["{public}"]')
    return 0


def _sign(args: argparse.Namespace) -> int:
    from models.bundle import CARD_FILE, load_private_key, sign_bundle

    if not (args.bundle / CARD_FILE).is_file():
        print(f"nbedge: {args.bundle} has no {CARD_FILE}", file=sys.stderr)
        return 1
    sign_bundle(args.bundle, load_private_key(args.key))
    print(f"signed {args.bundle}")
    return 0


def _verify(args: argparse.Namespace) -> int:
    from models.bundle import load_bundle, trusted_keys
    from models.runtime import load_model
    from nbedge.errors import ModelRejected

    try:
        keys = trusted_keys(args.trusted_key)
    except ValueError as exc:
        print(f"nbedge: --trusted-key: {exc}", file=sys.stderr)
        return 2
    try:
        model = load_model(load_bundle(args.bundle, keys=keys))
    except ModelRejected as exc:
        print(f"nbedge: {exc}", file=sys.stderr)
        return 1
    card = model.bundle.card
    print(f"{args.bundle}: ok")
    print(f"  {card.name} ({card.kind}) version {card.version}, features {card.feature_version}")
    print(f"  sha256 {card.sha256}, {card.size_bytes} bytes, signed by key {model.bundle.key_id}")
    print(f"  {len(card.inputs)} inputs; check vector of {len(card.check.output)} rows matches")
    return 0


def _train(args: argparse.Namespace) -> int:
    try:
        from models import train
    except ImportError as exc:
        print(f"nbedge: training needs the train extra ({exc})", file=sys.stderr)
        return 1
    from models.bundle import CARD_FILE, ModelCard

    kinds = (args.only,) if args.only else train.KINDS
    for folder in train.train(args.data, args.out, kinds=kinds, key=args.key):
        card = ModelCard.model_validate_json((folder / CARD_FILE).read_bytes())
        print(f"{folder}: {card.name} {card.version} ({card.size_bytes} bytes)")
        shipped = train.ARTIFACTS / folder.name / CARD_FILE
        if shipped.is_file() and shipped.resolve() != (folder / CARD_FILE).resolve():
            result = train.compare(card, ModelCard.model_validate_json(shipped.read_bytes()))
            if result.same_model:
                print("  reproduces the shipped model: the same ONNX bytes (sha256)")
            else:
                print(
                    "  differs from the shipped model; check outputs differ by up to "
                    f"{result.max_check_difference:.3g}"
                )
    return 0


def load_data(path: Path, args: argparse.Namespace) -> tuple[list[Any], dict[str, Any]]:
    """The series at ``path`` and each one's calendar: a public data set's own, or the options'."""
    from models import daiad
    from models.calendar import Calendar
    from models.series import load_cambridge_estates, load_lead, load_path, load_uci_household

    given = Calendar(args.timezone or "UTC", args.country, args.subdivision)
    if (path / "electricity").is_dir() and (path / "weather_bedford").is_dir():
        series = load_cambridge_estates(path)
        calendar = Calendar("Europe/London", "GB", "ENG")
    elif path.is_dir() and any(path.glob("filtered_data_*.csv")):
        series, calendar = load_lead(path), Calendar()  # local timestamps; holidays unknown
    elif path.is_dir() and (path / "household_power_consumption_hourly.csv").is_file():
        csv = path / "household_power_consumption_hourly.csv"
        series, calendar = [load_uci_household(csv)], Calendar("UTC", "FR")
    elif daiad.is_daiad(path):  # the files' own clock; holidays unknown
        zone = args.timezone or daiad.TIMEZONE
        series = daiad.load_daiad(path, timezone=zone)
        calendar = Calendar(zone, args.country, args.subdivision)
    else:
        series, calendar = load_path(path), given
    if args.buildings:
        wanted = set(args.buildings.split(","))
        series = [s for s in series if s.name in wanted]
    return series, {s.name: calendar for s in series}


def _session(args: argparse.Namespace, kind: str) -> Any:
    """The bundle (given or shipped) checked as a gateway would, as a session-like object."""
    import importlib

    from models.bundle import trusted_keys
    from models.runtime import ModelSlot
    from models.train import ARTIFACTS

    module = importlib.import_module(f"models.{kind}")
    slot = ModelSlot(kind, module.FEATURE_VERSION, trusted_keys(args.trusted_key))
    model = slot.offer(args.bundle or ARTIFACTS / kind)
    print(f"model: {model.bundle.label} from {model.bundle.path}")
    return slot.as_session()


def _evaluate(args: argparse.Namespace) -> int:
    import numpy as np

    from models.series import SeriesFormatError
    from nbedge.errors import ModelRejected

    if args.model == "cessation" and args.bundle is not None:
        print(
            "nbedge: cessation has no bundle: each dwelling's model is fitted from its own series",
            file=sys.stderr,
        )
        return 2
    try:
        series, calendars = load_data(args.data, args)
    except SeriesFormatError as exc:
        print(f"nbedge: {exc}", file=sys.stderr)
        return 1
    if not series:
        print("nbedge: no series to evaluate", file=sys.stderr)
        return 1
    if args.model == "cessation":
        from models import cessation

        one = calendars[series[0].name]
        print(cessation.format_report(cessation.evaluate(series, one, seed=args.seed)))
        return 0
    # demand and anomaly read a file's value (energy): a water-only file is for cessation
    water_only = [s.name for s in series if s.meter == "water"]
    series = [s for s in series if s.meter != "water"]
    left_out = [f"not evaluated, water only: {', '.join(water_only)}"] if water_only else []
    if not series:
        print(
            f"nbedge: {args.data}: water-only files (timestamp,water): {args.model} reads a "
            "value column; nbedge models evaluate cessation reads them",
            file=sys.stderr,
        )
        return 1
    if args.model == "anomaly":
        # scored against their labels: a file without a labelled hour has nothing to score
        labelled = [s for s in series if s.labels is not None and np.any(s.labels)]
        unlabelled = [s.name for s in series if s.labels is None or not np.any(s.labels)]
        if not labelled:
            print(
                f"nbedge: {args.data}: no file has a labelled anomalous hour (a label "
                "column with 1 for such hours): evaluate anomaly scores flags against labels. "
                "For the stopped use of dwellings: nbedge models evaluate cessation",
                file=sys.stderr,
            )
            return 1
        if unlabelled:
            left_out.append(
                f"not evaluated, no labelled anomalous hour: {', '.join(unlabelled)} "
                "(for the stopped use of dwellings: nbedge models evaluate cessation)"
            )
        series = labelled
    try:
        session = _session(args, args.model)
    except ModelRejected as exc:
        print(f"nbedge: {exc}", file=sys.stderr)
        return 1
    if args.model == "demand":
        from models import demand

        first = min(s.timestamps[0] for s in series).astype("datetime64[D]") + 7
        last = max(s.timestamps[-1] for s in series).astype("datetime64[D]")
        start = args.start or str(first)
        end = args.end or str(last)
        report = demand.evaluate(series, session, start, end, calendars)
        print(demand.format_report(report))
    else:
        from models import anomaly

        one = calendars[series[0].name]
        print(anomaly.format_report(anomaly.evaluate(series, session, one)))
    for line in left_out:
        print(line)
    return 0
