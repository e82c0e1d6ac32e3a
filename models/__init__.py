"""Features, training, ONNX export and runtime scoring of the anomaly and demand models.

Empty for now: the models land with their own issue. The package exists so that the layout and the
dependency direction (``edge -> models``) are fixed from the start.
"""
