"""`medseg models`' parameter counts: built with meta parameters, equal to a normal build's, without torch._dynamo."""

from __future__ import annotations

import subprocess
import sys

import pytest

from medseg.models.params import count_parameters, thop_style_count
from medseg.models.registry import create_model, model_info
from medseg.models.summary import model_rows


@pytest.mark.parametrize("name", ["swin_unet", "vmunet", "asc_seg", "resunetpp"])
def test_meta_counts_equal_a_normal_build(name: str) -> None:
    row = next(row for row in model_rows() if row["name"] == name)
    model = create_model(name, **(model_info(name).default_kwargs or {}))
    assert row["params"] == count_parameters(model)
    assert row["thop_params"] == thop_style_count(model)


def test_model_rows_leaves_torch_dynamo_unimported() -> None:
    code = (
        "import sys; from medseg.models.summary import model_rows; model_rows(); print('torch._dynamo' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
