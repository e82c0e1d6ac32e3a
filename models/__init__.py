"""The models on the gateway: features, scoring, bundles, training and evaluation (docs/models.md).

Runtime (the gateway imports these; no scikit-learn): ``calendar`` (local hour, weekday, public
holidays), ``demand`` (24-hour forecasts), ``anomaly`` (unusual hours of a meter), ``cessation``
(a home whose use stops; plain numpy), ``bundle`` (signed model bundles), ``runtime`` (one
onnxruntime session per model, swapped in and rolled back), ``series`` (hourly series, the
documented CSV format and the public data sets), ``metrics`` and ``baselines`` (ASHRAE Guideline
14, F1 measures, naive forecasts).

Training (the ``train`` extra, never on a gateway): ``train_demand``, ``train_anomaly``,
``onnx_export`` and ``train`` (writes the bundles); ``commands`` is ``nbedge models ...``.
"""
