"""Option groups reach a command as one typed value each (CRF, Ray cluster, tiling, TTA); old flag
spellings are usage errors that name the flag replacing them; the output kinds are listed once."""

from __future__ import annotations

import inspect
import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from robustness_support import random_rgb, run_predict
from segcli.cli.main import cli


@pytest.fixture
def image(tmp_path):
    from PIL import Image

    path = tmp_path / "in" / "a.png"
    path.parent.mkdir()
    Image.fromarray(random_rgb(16, 16)).save(path)
    return path


def _received(decorator, args):
    """What a command decorated with `decorator` receives for `args`: (exit code, output, keyword arguments)."""
    seen = {}

    @click.command()
    @decorator
    def command(**kwargs):
        seen.update(kwargs)

    result = CliRunner().invoke(command, args)
    return result.exit_code, result.output, seen


@pytest.mark.parametrize("args, expected", [
    ([], None),
    (["--crf"], ((), "fast")),
    (["--crf", "--crf-iters", "3", "--crf-bilateral-xy", "50"], ((("iterations", 3), ("bilateral_xy", 50.0)), "fast")),
    (["--crf", "--crf-method", "torch", "--crf-gaussian-weight", "2"], ((("gaussian_weight", 2.0),), "torch")),
])
def test_the_crf_options_arrive_as_one_crf_settings(args, expected):
    from segcli.cli.crf_options import crf_options
    from segcli.crf import CRFSettings

    code, output, seen = _received(crf_options, args)
    assert code == 0, output
    assert seen == {"crf": None if expected is None else CRFSettings(given=expected[0], method=expected[1])}


@pytest.mark.parametrize("args, needle", [
    (["--crf-iters", "3"], "--crf-* options need --crf"),
    (["--crf", "--crf-full", "--crf-method", "torch"], "disagree"),
])
def test_bad_crf_combinations_are_usage_errors(args, needle):
    from segcli.cli.crf_options import crf_options

    code, output, _ = _received(crf_options, args)
    assert code == 2 and needle in output, output


def test_the_ray_options_arrive_as_one_cluster_value_without_importing_ray():
    from segcli.cli.cluster_options import cluster_options
    from segcli.distributed.settings import ClusterOptions, WorkerRange

    code, output, seen = _received(cluster_options, ["--engine", "ray", "--ray-workers", "1,4", "--gpus-per-worker",
                                                     "0.5", "--ray-address", "auto"])
    assert code == 0, output
    assert seen == {"cluster": ClusterOptions(address="auto", workers=WorkerRange(1, 4), gpus_per_worker=0.5)}
    assert _received(cluster_options, [])[2] == {"cluster": None}
    code, output, _ = _received(cluster_options, ["--ray-workers", "2"])
    assert code == 2 and "--ray-workers needs --engine ray" in output, output
    code, output, _ = _received(cluster_options, ["--engine", "ray", "--ray-workers", "3,1"])
    assert code == 2 and "'--ray-workers'" in output and "MIN <= MAX" in output, output


def test_predict_takes_typed_values_not_a_dict_of_raw_options():
    from segcli.cli.predict import predict

    parameters = inspect.signature(predict.callback).parameters
    assert not [p for p in parameters.values() if p.kind is inspect.Parameter.VAR_KEYWORD]
    assert {"crf", "cluster", "tiling", "tta", "raster"} <= set(parameters)
    raw = {"crf_iters", "crf_full", "engine_kind", "ray_address", "tile", "tile_overlap", "bands", "scale"}
    assert not raw & set(parameters)


def test_tiling_and_tta_arrive_typed():
    from segcli.cli.predict_options import tiling_options
    from segcli.tiling import TilingPolicy, TTAParams

    code, output, seen = _received(tiling_options, ["--tile", "64", "--tile-overlap", "0.5", "--tta"])
    assert code == 0, output
    assert seen == {"tiling": TilingPolicy.parse("64", overlap=0.5), "tta": TTAParams()}
    assert _received(tiling_options, [])[2] == {"tiling": TilingPolicy.parse("auto", overlap=0.25), "tta": None}
    code, output, _ = _received(tiling_options, ["--tile", "abc"])
    assert code == 2 and "'--tile'" in output, output


def test_the_raster_options_arrive_parsed():
    from segcli.cli.raster_predict import RasterFlags, raster_options

    code, output, seen = _received(raster_options, ["--bands", "3,2,1", "--scale", "0,10000", "--cog"])
    assert code == 0, output
    assert seen == {"raster": RasterFlags(bands=(3, 2, 1), scale=(0.0, 10000.0), cog=True)}
    assert seen["raster"].given and not _received(raster_options, [])[2]["raster"].given
    code, output, _ = _received(raster_options, ["--scale", "5,1"])
    assert code == 2 and "MIN must be below MAX" in output, output


@pytest.mark.parametrize("old, extra, new", [
    ("--save-probs", [], "--outputs label,overlay,json,probs"),
    ("--no-overlay", [], "--outputs label,json"),
    ("--batch", ["2"], "--batch-size"),
    ("--workers", ["2"], "--ray-workers"),
])
def test_predict_names_the_flag_that_replaced_an_old_one(tmp_path, tiny_checkpoint, image, old, extra, new):
    result = run_predict([image], tmp_path / "out", tiny_checkpoint, old, *extra)
    assert result.exit_code == 2, result.output
    assert f"{old} was replaced by {new}" in result.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("args", [
    ["train", "--model", "fcn8s", "--data", ".", "--out", "x.safetensors", "--iters", "1", "--batch", "2"],
    ["benchmark", "--models", "fcn8s", "--batch", "2"],
])
def test_train_and_benchmark_name_batch_size_for_batch(tmp_path, args):
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2, result.output
    assert "--batch was replaced by --batch-size" in result.output


def test_workers_means_processes_on_this_machine_in_every_command():
    context = click.Context(cli)
    commands = {name: cli.get_command(context, name) for name in cli.list_commands(context)}
    commands.update({f"data {name}": command for name, command in commands.pop("data").commands.items()})
    commands.update({f"weights {name}": command for name, command in commands.pop("weights").commands.items()})
    for name, command in commands.items():
        for param in command.params:
            if isinstance(param, click.Option) and "--workers" in param.opts and not param.hidden:
                assert name in ("data synth", "train"), name
                assert param.help.startswith("Processes on this machine"), (name, param.help)


def test_the_output_kinds_are_listed_once():
    from segcli.output_names import KIND_NAMES as OUTPUT_KINDS
    from segcli.output_names import KIND_NAMES
    from segcli.outputs import kinds

    assert OUTPUT_KINDS == tuple(kinds.KINDS) == KIND_NAMES
    assert set(kinds._ENTRIES) == set(KIND_NAMES)  # no writer left out of the list
    result = CliRunner().invoke(cli, ["predict", "--help"], terminal_width=400)
    assert f"from {', '.join(KIND_NAMES)}" in " ".join(result.output.split())


def test_the_output_kind_names_load_without_numpy():
    code = "import sys, segcli.output_names, segcli.cli.output_choice; print('numpy' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.split() == ["False"]
