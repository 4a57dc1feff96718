"""Layout knowledge lives in one table (segcli.models.LAYOUT_SPECS): names, detection markers, adapters."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

import segcli
from segcli.checkpoints.loading import adapt_layout, detect_layout
from segcli.checkpoints.manifest import read_manifest_file, shipped_manifest_path
from segcli.checkpoints.record import LAYOUTS
from segcli.models import LAYOUT_SPECS, layout_adapter

PACKAGE = Path(segcli.__file__).parent
TABLE = PACKAGE / "models" / "__init__.py"
# the published layouts' names, but "torchvision" (the library's name too, as in version reports)
PUBLISHED = [layout.name for layout in LAYOUT_SPECS if layout.name not in ("segcli", "torchvision")]


def test_no_module_but_the_table_names_a_published_layout():
    """Before, record.py, loading.py and resolve.py each spelled layout names out (and the table in
    models/ did not exist): a new layout meant three edits that could disagree."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path == TABLE:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and node.value in PUBLISHED:
                found.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {node.value}")
    assert found == []


def test_the_records_accept_exactly_the_tables_layouts():
    assert LAYOUTS == tuple(layout.name for layout in LAYOUT_SPECS)
    assert {record.layout for record in read_manifest_file(shipped_manifest_path())} == set(LAYOUTS)


# one key (or wrapper entry) of each project's published files, as they name it
SAMPLES = {
    "torchvision": {"backbone.conv1.weight": 0, "aux_classifier.0.weight": 0},  # torchvision.models.segmentation
    "deeplabv3plus-pytorch": {"model_state": {"backbone.conv1.weight": 0}, "optimizer_state": {}},  # VainF, main.py
    "pytorch-fcn": {"conv1_1.weight": 0, "score_fr.weight": 0},  # wkentaro/pytorch-fcn torchfcn/models/fcn32s.py
    "deeplab-pytorch": {"base.layer1.conv1.conv.weight": 0, "base.aspp.c0.weight": 0},  # kazuto1011, MSC(DeepLabV2)
    "pytorch-deeplab-resnet": {"Scale.conv1.weight": 0, "Scale.layer5.conv2d_list.0.weight": 0},  # isht7
    "deeplab-v1-pytorch": {"module.features.0.weight": 0, "module.features.38.weight": 0},  # wangleihitcs
}


@pytest.mark.parametrize("name", list(SAMPLES))
def test_every_published_layout_is_detected_by_its_marker(name):
    tensors = {key: (value if isinstance(value, dict) else torch.zeros(1)) for key, value in SAMPLES[name].items()}
    assert detect_layout(tensors) == name
    assert set(SAMPLES) == set(PUBLISHED) | {"torchvision"}


def test_adapters_are_found_and_used():
    adapted = [layout for layout in LAYOUT_SPECS if layout.adapter is not None]
    assert [layout.name for layout in adapted] == ["pytorch-deeplab-resnet"]
    for layout in adapted:
        assert callable(layout_adapter(layout)) and layout.adapter_note
    state = {"Scale.layer5.conv2d_list.0.weight": torch.zeros(2, 3, 3, 3)}
    result = adapt_layout(state, "pytorch-deeplab-resnet")
    assert list(result.state_dict) == ["base.aspp.c0.weight"] and result.notes == [adapted[0].adapter_note]
    assert adapt_layout(state, "deeplab-pytorch").state_dict.keys() == state.keys()  # no adapter: keys kept
