"""What the training modules share to export scikit-learn models to ONNX (the ``train`` extra).

``TARGET_OPSET``: the opsets every shipped model is written with (ai.onnx.ml 3 for the tree
ensembles). ``integer_missing_flags``: skl2onnx 1.20 passes each histogram-tree node's
``missing_go_to_left`` (a Python bool) into the integer attribute
``nodes_missing_value_tracks_true``, which onnx 1.2x with protobuf 7 refuses ("Expected an int,
got a boolean"); for the duration of one conversion it is passed on as an ``int``. The routing of
missing values is unchanged: the parity tests compare scikit-learn and onnxruntime on rows with
NaN. Remove it once skl2onnx casts the flag itself.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

TARGET_OPSET = {"": 17, "ai.onnx.ml": 3}


@contextmanager
def integer_missing_flags() -> Iterator[None]:
    from skl2onnx.common import tree_ensemble

    original = tree_ensemble.add_node

    def add_node(*args: Any, nodes_missing_value_tracks_true: Any = 0, **kwargs: Any) -> Any:
        flag = int(nodes_missing_value_tracks_true)
        return original(*args, nodes_missing_value_tracks_true=flag, **kwargs)

    tree_ensemble.add_node = add_node
    try:
        yield
    finally:
        tree_ensemble.add_node = original
