"""What a new user ran into after the redesign: the library's two calls without a model, an empty image array,
`benchmark --batches` with `--batch-size`, and the wording of the Ray flags' usage error."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from robustness_support import tiny_model, tiny_record
from segcli.cli.main import cli
from segcli.engine import SegmentationEngine
from segcli.errors import SegcliError, SyntheticScenesWarning
from segcli.inference_options import InferenceOptions
from segcli.loaded_model import LoadedModel


@pytest.mark.parametrize("call", ["predict", "load"])
def test_the_library_without_a_model_or_checkpoint_is_one_segcli_error(call):
    """`segcli.predict('missing.jpg')` was a TypeError about a keyword-only argument; now the library's own error,
    in its own terms (no command-line flag)."""
    import segcli

    with pytest.raises(SegcliError) as raised:
        segcli.predict("missing.jpg") if call == "predict" else segcli.load()
    message = str(raised.value)
    assert "no model given" in message and "--" not in message, message


def test_the_library_takes_the_model_from_a_named_checkpoint():
    """`resolve_checkpoint` reads the model from a manifest record; `segcli.load(weights=NAME)` now reaches it."""
    import segcli

    with pytest.warns(SyntheticScenesWarning):
        engine = segcli.load(weights="lraspp-mobilenet-synth", device="cpu")
    assert engine.record.model == "lraspp" and engine.checkpoint.record.name == "lraspp-mobilenet-synth"


@pytest.mark.parametrize("shape", [(0, 5, 3), (5, 0, 3), (0, 0, 3)])
def test_an_image_array_without_pixels_is_one_segcli_error(shape):
    """An empty array reached the model and came back as torch's RuntimeError about tensor sizes."""
    engine = SegmentationEngine.from_checkpoint(LoadedModel(tiny_model(), tiny_record()), device="cpu",
                                                options=InferenceOptions(precision="fp32"))
    with pytest.raises(SegcliError, match=r"RGB image with pixels, got shape \(" + ", ".join(map(str, shape))):
        engine.predict(np.zeros(shape, np.uint8))
    assert engine.predict(np.zeros((1, 1, 3), np.uint8)).labels.shape == (1, 1)  # one pixel still works


def test_benchmark_refuses_batches_with_batch_size_before_any_model_loads(monkeypatch):
    """`--batches 2 --batch-size 4` dropped --batch-size without a word (the help says --batches replaces it)."""
    import segcli.benchmarking.subjects as subjects

    def _no_planning(*args, **kwargs):
        raise AssertionError("models were planned before the flags were checked")

    monkeypatch.setattr(subjects, "plan_subjects", _no_planning)
    result = CliRunner().invoke(cli, ["benchmark", "--models", "lraspp", "--batches", "2", "--batch-size", "4"])
    assert result.exit_code == 2, result.output
    assert "--batches" in result.output and "--batch-size" in result.output and "not both" in result.output


@pytest.mark.parametrize("args, needle", [
    (["--ray-workers", "2"], "Error: --ray-workers needs --engine ray"),
    (["--gpus-per-worker", "1"], "Error: --gpus-per-worker needs --engine ray"),
    (["--ray-workers", "2", "--gpus-per-worker", "1"], "Error: --ray-workers, --gpus-per-worker need --engine ray"),
])
def test_the_ray_flags_without_the_ray_engine_say_so_in_english(tmp_path, args, needle):
    result = CliRunner().invoke(cli, ["predict", str(tmp_path / "img.png"), *args])
    assert result.exit_code == 2 and needle in result.output, result.output


@pytest.mark.parametrize("extra", [[], ["--cog", "--outputs", "polygons"]])
def test_a_tiff_without_georeferencing_gives_one_line_not_rasterios_warning(tmp_path, tiny_checkpoint, extra):
    """A .tif that is not a GeoTIFF, sent down the raster path: segcli says 'no georeferencing' itself, and
    rasterio's NotGeoreferencedWarning (file:line of rasterio, then its source line) came out as well."""
    import warnings

    pytest.importorskip("rasterio")
    from raster_support import scene, write_raster
    from robustness_support import run_predict

    path = write_raster(tmp_path / "plain.tif", scene(40, 50), crs=None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = run_predict([path], tmp_path / "out", tiny_checkpoint, "--bands", "1,2,3", *extra)
    assert result.exit_code == 0, result.output
    assert "no georeferencing" in result.stderr and (tmp_path / "out" / "plain.tif").is_file()
    leaked = [f"{item.category.__name__}: {item.message}" for item in caught if "rasterio" in item.filename]
    assert leaked == [], leaked


@pytest.mark.parametrize("args, env, needle", [
    ([], {"SEGCLI_SERVE_TOKEN": ""}, "$SEGCLI_SERVE_TOKEN is set but empty"),
    ([], {"SEGCLI_SERVE_TOKEN": "  "}, "$SEGCLI_SERVE_TOKEN is set but empty"),
    (["--token", "two\nlines"], {}, "control character"),
    (["--token", "tab\there"], {}, "control character"),
    (["--token", " padded "], {}, "starts or ends with a space"),
])
def test_serve_refuses_a_token_no_client_could_send_before_the_model_loads(monkeypatch, args, env, needle):
    """SEGCLI_SERVE_TOKEN='' (a deploy script's unset secret) served every route without a token, and said so only
    in a start-up line that -q hides; a token with a newline or edge spaces was taken, then no HTTP header could
    carry it (every request 401)."""
    import segcli.cli.serve as command

    def _never(*args, **kwargs):
        raise AssertionError("the server was built before the token was checked")

    monkeypatch.setattr(command, "_run", _never)
    monkeypatch.setattr(command, "_require_server", _never)
    result = CliRunner().invoke(cli, ["serve", "--device", "cpu", "-q", *args], env=env)
    assert result.exit_code == 2, result.output
    assert needle in result.output and "Traceback" not in result.output, result.output


def test_serve_takes_a_plain_token_from_the_environment_as_before(monkeypatch):
    import segcli.cli.serve as command

    seen = {}

    def _stop(*args, **kwargs):
        seen["checked"] = True
        raise SystemExit(0)

    monkeypatch.setattr(command, "_require_server", _stop)
    result = CliRunner().invoke(cli, ["serve", "--device", "cpu", "-q"], env={"SEGCLI_SERVE_TOKEN": "s3cret token"})
    assert result.exit_code == 0 and seen == {"checked": True}, result.output


def _commands(group, path=()):
    import click

    context = click.Context(group)
    for name in group.list_commands(context):  # the root group imports its commands on demand
        command = group.get_command(context, name)
        yield (*path, name)
        if isinstance(command, click.Group):
            yield from _commands(command, (*path, name))


def test_every_help_fits_80_columns():
    """`segcli COMMAND --help` at 80 columns: click wraps the options but not the `\\b` example blocks, whose longest
    lines (92 characters) ran past a standard terminal."""
    runner = CliRunner()
    too_long = {}
    for path in [(), *_commands(cli)]:
        result = runner.invoke(cli, [*path, "--help"], terminal_width=80)
        assert result.exit_code == 0, (path, result.output)
        lines = [line for line in result.output.splitlines() if len(line) > 80]
        if lines:
            too_long[" ".join(path)] = lines
    assert too_long == {}, too_long


@pytest.mark.parametrize("address", ["ray://:10001", "ray://head:1 ; rm", "ray://head:x", "head:0", "head:65536",
                                     "ray://head:99999", "he ad:6379"])
def test_ray_addresses_no_cluster_can_have_are_refused_before_ray_starts(tmp_path, address):
    """`ray://` took anything after it and HOST:PORT any digits: the address reached ray.init (after the plan,
    with Ray's own error) instead of a usage error."""
    result = CliRunner().invoke(cli, ["predict", str(tmp_path), "--out", str(tmp_path / "o"), "--engine", "ray",
                                      "--ray-address", address])
    assert result.exit_code == 2 and "HOST:PORT" in result.output, result.output


@pytest.mark.parametrize("address", ["ray://head", "ray://head:10001", "[::1]:6379", "ray://[::1]:10001"])
def test_ray_client_and_ipv6_addresses_are_still_taken(address):
    from segcli.distributed.settings import parse_ray_address

    assert parse_ray_address(address) == address
