"""Every output kind is covered by the plan's up-front checks, by construction: the cases below are
derived from the kind table (segcli/outputs/kinds.py `KINDS`), so a new kind is tested the day it is added.

For each kind, alone and with every other kind, two inputs are refused before any model loads:
- two inputs with one stem (cat.jpg, cat.png) would both write that kind's file;
- an in-place run where one input's name equals another input's output of that kind would replace an input.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from segcli.errors import OutputError
from segcli.inputs import ImageSource
from segcli.outputs.plan import OutputOptions, OutputPlan
from segcli.outputs.kinds import KINDS

CATEGORIES = ("background", "cat", "dog")


def options(out_dir: Path, outputs: tuple[str, ...]) -> OutputOptions:
    return OutputOptions(out_dir, outputs=outputs, categories=CATEGORIES)


def output_names(kind_name: str, stem: str) -> list[str]:
    """The file names of one kind for `stem`, from the kind's own filename template (every class for a per-class kind)."""
    kind = KINDS[kind_name]
    classes = CATEGORIES if kind.per_class else ("",)
    return [kind.filename.format(stem=stem, cls=cls) for cls in classes]


def kind_sets():
    for name in KINDS:
        yield pytest.param(name, (name,), id=f"{name}-alone")
        yield pytest.param(name, tuple(KINDS), id=f"{name}-with-all")


def test_the_cases_cover_every_kind_in_the_table():
    assert {param.values[0] for param in kind_sets()} == set(KINDS) and len(KINDS) >= 7


@pytest.mark.parametrize("kind, outputs", list(kind_sets()))
def test_two_inputs_writing_one_file_of_a_kind_are_refused(tmp_path, kind, outputs):
    first, second = ImageSource(tmp_path / "cat.jpg", Path("cat.jpg")), ImageSource(tmp_path / "cat.png", Path("cat.png"))
    plan = OutputPlan(options(tmp_path / "out", outputs))
    with pytest.raises(OutputError, match=r"cat\.jpg and .*cat\.png would both write .*: rename one") as error:
        plan.prepare([first, second])
    shared = Path(re.search(r"would both write (.*): rename", str(error.value)).group(1)).name
    written = {name for each in outputs for name in output_names(each, "cat")}
    assert shared in written
    # alone, the kind itself is the one that collides
    if outputs == (kind,):
        assert shared in output_names(kind, "cat")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@pytest.mark.parametrize("kind, outputs", list(kind_sets()))
def test_an_input_named_like_another_inputs_output_of_the_kind_is_refused(tmp_path, kind, outputs):
    for victim in output_names(kind, "dog"):
        (tmp_path / victim).write_bytes(b"the user's own file")
        sources = [ImageSource(tmp_path / "dog.jpg", Path("dog.jpg")), ImageSource(tmp_path / victim, Path(victim))]
        plan = OutputPlan(options(tmp_path, outputs))  # in place: the outputs go beside the inputs
        with pytest.raises(OutputError) as error:
            plan.prepare(sources)
        # dog.png, dog.json share dog.jpg's stem, so the shared-name check may see it first: either refusal names it
        assert re.search(rf"{re.escape(victim)} is an input of this run, and the {kind}(:\d+)? output of dog\.jpg "
                         rf"would replace it|dog\.jpg and .*{re.escape(victim)} would both write .*: rename one", str(error.value)), str(error.value)
        assert (tmp_path / victim).read_bytes() == b"the user's own file"
