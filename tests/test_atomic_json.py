import json
import math

import numpy as np

from pixelgroup._atomic import write_json


def test_write_json_writes_undefined_scores_as_null(tmp_path):
    path = tmp_path / "metrics.json"
    data = {"acc50": math.nan, "f1_50": 0.5, "nested": [np.float64("inf"), (1, -math.inf)], "n": 3}
    write_json(data, path)
    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"acc50": None, "f1_50": 0.5, "nested": [None, [1, None]], "n": 3}
