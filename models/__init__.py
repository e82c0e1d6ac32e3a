"""Features, training, ONNX export and runtime scoring of the anomaly and demand models.

So far: the evaluation harness, plain numpy. ``series`` loads hourly series of buildings (a
documented CSV format, and the shipped public data sets); ``metrics`` scores demand forecasts
(ASHRAE Guideline 14 CV(RMSE), NMBE) and anomaly flags (point, LEAD tolerance and event F1);
``baselines`` gives the naive day-ahead forecasts every model is reported beside.
"""
