"""Options shared by commands are defined once (segcli/cli/options.py): one name per idea everywhere."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from segcli.cli.main import cli
from segcli.cli.options import parse_size, parse_sizes


def _commands(group: click.Group, prefix: str = ""):
    context = click.Context(group)
    for name in group.list_commands(context):  # the CLI loads its commands lazily
        command = group.get_command(context, name)
        if isinstance(command, click.Group):
            yield from _commands(command, f"{prefix}{name} ")
        else:
            yield f"{prefix}{name}", command


def _options(name: str):
    return {param.name: param for param in dict(_commands(cli))[name].params if isinstance(param, click.Option)}


@pytest.mark.parametrize("idea, spelled", [
    ("batch_size", "--batch-size"), ("quiet", "--quiet"), ("model", "--model"), ("overwrite", "--overwrite"),
    ("download", "--download"), ("max_pixels", "--max-pixels"), ("weights", "--weights"), ("device", "--device"),
    ("precision", "--precision"), ("workers", "--workers"),
])
def test_each_shared_option_has_one_name_in_every_command(idea, spelled):
    seen = {name: (tuple(params[idea].opts), tuple(params[idea].secondary_opts), params[idea].metavar,
                   params[idea].type.name)
            for name, _ in _commands(cli) if idea in (params := _options(name))}
    assert seen, idea  # some command has it
    assert {opts[0] for opts, *_ in seen.values()} == {spelled}, seen
    assert len(set(seen.values())) == 1, seen  # the same declaration: names, metavar and type


@pytest.mark.parametrize("idea", ["model", "weights", "device", "precision"])
def test_every_command_that_loads_a_model_declares_the_shared_options(idea):
    for name in ("predict", "evaluate", "serve", "export", "compare-upsampling", "train"):
        if idea in ("device", "precision") and name == "export":
            continue  # export traces on the CPU in fp32
        assert idea in _options(name), (name, idea)


def test_sizes_are_parsed_once_for_every_command():
    assert parse_size("480x640") == (480, 640) and parse_size("96") == (96, 96)
    assert parse_sizes("256, 480x640,256") == ((256, 256), (480, 640))
    with pytest.raises(click.BadParameter, match="too small"):
        parse_size("16", min_side=32)
    runner = CliRunner()
    for args in (["data", "synth", "--out", "x", "--size", "4x4"], ["train", "--model", "fcn8s", "--data", ".",
                                                                      "--out", "x.safetensors", "--crop", "2x2"]):
        result = runner.invoke(cli, args)
        assert result.exit_code == 2 and "too small" in result.output, result.output
