"""`segcli serve --engine ray`: its flags refused before anything starts (usage errors, exit 2), the install
hint without Ray Serve, the checkpoint checked before Ray starts, and the deployment options Serve is given.
No Ray instance starts here (tests/serve/test_serve_on_ray.py runs one)."""

from __future__ import annotations

import sys

import pytest
from click.testing import CliRunner

from robustness_support import CPU_FLAGS, save_tiny_checkpoint


def invoke(*args: str):
    from segcli.cli.main import cli

    return CliRunner().invoke(cli, ["serve", "--model", "lraspp", *args])


@pytest.fixture
def never_started(monkeypatch):
    """Fails the test if the command gets as far as starting Ray Serve."""
    import segcli.serve.on_ray as on_ray

    def refuse(*args, **kwargs):
        raise AssertionError("Ray Serve was started")

    monkeypatch.setattr(on_ray, "serve_on_ray", refuse)


@pytest.mark.parametrize("args, words", [
    (["--replicas", "2"], "--replicas need"),
    (["--autoscale", "1,3"], "--autoscale need"),
    (["--gpus-per-replica", "1"], "--gpus-per-replica need"),
    (["--ray-address", "auto"], "--ray-address need"),
    (["--engine", "ray", "--replicas", "0"], "--replicas"),
    (["--engine", "ray", "--autoscale", "0,2"], "MIN <= MAX"),
    (["--engine", "ray", "--autoscale", "3,2"], "MIN <= MAX"),
    (["--engine", "ray", "--autoscale", "2"], "MIN,MAX"),
    (["--engine", "ray", "--autoscale", "a,b"], "MIN,MAX"),
    (["--engine", "ray", "--replicas", "2", "--autoscale", "1,3"], "not both"),
    (["--engine", "ray", "--gpus-per-replica", "-1"], "--gpus-per-replica"),
    (["--engine", "ray", "--ray-address", "10.0.0.1"], "HOST:PORT"),
    (["--engine", "ray", "--device", "cuda"], "--gpus-per-replica"),
    (["--engine", "ray", "--ray-address", "http://10.0.0.1:6379"], "HOST:PORT"),
], ids=lambda value: " ".join(value) if isinstance(value, list) else None)
def test_bad_ray_flags_are_usage_errors_before_anything_loads(tmp_path, never_started, args, words):
    """A missing checkpoint file: had anything loaded, the exit would be 1 (Error: ...), not 2."""
    result = invoke("--weights", str(tmp_path / "nothing.safetensors"), *CPU_FLAGS, *args)
    assert result.exit_code == 2, result.output
    assert words in result.output, result.output
    assert "Traceback" not in result.output


def test_the_checkpoint_is_checked_before_ray_starts(tmp_path, never_started):
    pytest.importorskip("ray.serve")  # without it the install hint comes first
    result = invoke("--weights", str(tmp_path / "nothing.safetensors"), *CPU_FLAGS, "--engine", "ray",
                    "--replicas", "2")
    assert result.exit_code == 1, result.output
    assert result.output.startswith("Error: ") and "does not exist" in result.output


def test_without_ray_serve_the_error_says_what_to_install(tmp_path, never_started, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray.serve", None)  # `from ray import serve` raises ImportError
    weights = save_tiny_checkpoint(tmp_path / "tiny.safetensors")
    result = invoke("--weights", str(weights), *CPU_FLAGS, "--engine", "ray")
    assert result.exit_code == 1, result.output
    assert result.output.startswith("Error: ") and "pip install 'segcli[ray]'" in result.output


def test_the_replicas_get_the_engine_and_settings_the_command_was_given(tmp_path, monkeypatch):
    """What the command hands to Ray Serve: the replica count, GPU share, address, and a spec whose engine is the
    one `segcli serve` loads (weights made absolute: a replica may start in another directory)."""
    pytest.importorskip("ray.serve")
    import segcli.serve.on_ray as on_ray

    seen = {}
    monkeypatch.setattr(on_ray, "serve_on_ray", lambda *args: seen.update(args=args))
    save_tiny_checkpoint(tmp_path / "tiny.safetensors")
    monkeypatch.chdir(tmp_path)
    result = invoke("--weights", "./tiny.safetensors", *CPU_FLAGS, "--engine", "ray", "--autoscale", "1,3",
                    "--gpus-per-replica", "0.5", "--ray-address", "auto", "--token", "t0ken", "--max-pending", "5",
                    "--no-multiscale")
    assert result.exit_code == 0, result.output
    spec, replicas, gpus, address, host, port = seen["args"][:6]
    assert (replicas.minimum, replicas.maximum, replicas.autoscale, gpus, address) == (1, 3, True, 0.5, "auto")
    assert (host, port) == ("127.0.0.1", 8000)
    assert spec.weights == str((tmp_path / "tiny.safetensors").resolve())
    assert spec.settings.token == "t0ken" and spec.settings.max_pending == 5
    engine = spec.build_engine()
    assert engine.record.name == "tiny" and str(engine.plan.device) == "cpu"
    assert engine.options.input_scales == (1.0,) and engine.options.precision == "fp32"


def test_deployment_options_leave_the_refusals_to_the_app():
    """Serve lets in more requests than --max-pending (the app answers 503 itself, as the local server does) and
    waits past --timeout for a replica being removed to answer what it holds."""
    from segcli.serve.app import ServeSettings
    from segcli.serve.on_ray import Replicas, deployment_options

    settings = ServeSettings(max_pending=7, timeout_s=30.0, max_batch=3)
    fixed = deployment_options(Replicas(2, 2), 0.25, settings)
    assert fixed["num_replicas"] == 2 and "autoscaling_config" not in fixed
    assert fixed["ray_actor_options"]["num_gpus"] == 0.25
    assert fixed["max_ongoing_requests"] > settings.max_pending
    assert fixed["graceful_shutdown_timeout_s"] > settings.timeout_s
    scaled = deployment_options(Replicas.parse_range("1,4"), 0.0, settings)
    assert "num_replicas" not in scaled
    assert scaled["autoscaling_config"] == {"min_replicas": 1, "max_replicas": 4, "target_ongoing_requests": 3}


class FakeServe:
    """What `deploy` asks of ray.serve, recorded; `applications` already running, `fail` raised by run()."""

    def __init__(self, applications=(), fail: Exception | None = None) -> None:
        self.applications, self.fail, self.calls = {name: object() for name in applications}, fail, []

    def status(self):
        from types import SimpleNamespace

        return SimpleNamespace(applications=self.applications)

    def start(self, **options):
        self.calls.append(("start", options))

    def deployment(self, cls):
        from types import SimpleNamespace

        return SimpleNamespace(options=lambda **options: SimpleNamespace(bind=lambda spec: ("app", options)))

    def run(self, app, **options):
        self.calls.append(("run", options))
        if self.fail is not None:
            raise self.fail

    def delete(self, name):
        self.calls.append(("delete", name))


def deploy_with(monkeypatch, fake: FakeServe, proxy=("127.0.0.1", 8000)):
    from types import SimpleNamespace

    import ray.serve.context
    import segcli.serve.on_ray as on_ray
    from segcli.serve.app import ServeSettings

    monkeypatch.setattr(on_ray, "import_serve", lambda: fake)
    monkeypatch.setattr(on_ray, "replica_class", lambda: object)
    client = SimpleNamespace(http_config=SimpleNamespace(host=proxy[0], port=proxy[1]))
    monkeypatch.setattr(ray.serve.context, "_get_global_client", lambda *args, **kwargs: client)
    spec = on_ray.ReplicaSpec("lraspp", None, "cpu", None, ServeSettings())
    on_ray.deploy(spec, on_ray.Replicas(2, 2), 0.0, "127.0.0.1", 8000)


def test_a_second_segcli_on_a_shared_cluster_is_refused_and_left_alone(monkeypatch):
    pytest.importorskip("ray.serve")
    from segcli.serve.on_ray import ServeOnRayError

    fake = FakeServe(applications=["segcli"])
    with pytest.raises(ServeOnRayError, match="already runs an application named 'segcli'"):
        deploy_with(monkeypatch, fake)
    assert fake.calls == []  # not started, not replaced, not deleted


def test_serve_already_listening_elsewhere_is_refused_with_its_address(monkeypatch):
    """serve.start ignores new HTTP options when Serve already runs: the command would print a wrong address."""
    pytest.importorskip("ray.serve")
    from segcli.serve.on_ray import ServeOnRayError

    fake = FakeServe()
    with pytest.raises(ServeOnRayError, match="proxy on 0.0.0.0:8100, not 127.0.0.1:8000"):
        deploy_with(monkeypatch, fake, proxy=("0.0.0.0", 8100))
    assert [call[0] for call in fake.calls] == ["start", "delete"]


def test_a_failed_deployment_is_one_line_and_leaves_nothing_deployed(monkeypatch):
    pytest.importorskip("ray.serve")
    from segcli.serve.on_ray import ServeOnRayError

    fake = FakeServe(fail=RuntimeError("Deploying app 'segcli' failed:\n  replica constructor raised\nCUDA missing"))
    with pytest.raises(ServeOnRayError) as raised:
        deploy_with(monkeypatch, fake)
    assert str(raised.value) == "Ray Serve could not deploy segcli: CUDA missing"
    assert [call[0] for call in fake.calls] == ["start", "run", "delete"]
    assert fake.calls[0][1] == {"http_options": {"host": "127.0.0.1", "port": 8000}}
    assert fake.calls[1][1] == {"name": "segcli", "route_prefix": "/", "blocking": False}


def test_the_synthetic_scenes_warning_is_printed_as_the_local_server_prints_it(monkeypatch):
    """The shipped checkpoints learned synthetic scenes: `segcli serve` says so when it loads one; with --engine ray
    the replicas load it, so the command says it before they start."""
    pytest.importorskip("ray.serve")
    import segcli.cli.serve as command
    import segcli.serve.on_ray as on_ray

    monkeypatch.setattr(on_ray, "serve_on_ray", lambda *args: None)
    monkeypatch.setattr(command, "_run", lambda *args: None)
    local, ray = invoke(*CPU_FLAGS), invoke(*CPU_FLAGS, "--engine", "ray")
    assert local.exit_code == 0 and ray.exit_code == 0, (local.output, ray.output)
    warned = [[line for line in result.output.splitlines() if line.startswith("Warning: ")] for result in (local, ray)]
    assert warned[0] and warned[0] == warned[1], (local.output, ray.output)


@pytest.mark.parametrize("args, device", [([], "cpu"), (["--gpus-per-replica", "0.5"], "auto"),
                                          (["--gpus-per-replica", "1", "--device", "cuda:0"], "cuda:0"),
                                          (["--device", "cpu"], "cpu")])
def test_a_replica_runs_on_a_gpu_only_when_it_reserves_one(tmp_path, monkeypatch, args, device):
    """Ray (2.60) shows every GPU to an actor that reserved none: `--device auto` there would take a GPU other
    replicas or jobs hold, so replicas without --gpus-per-replica run on the CPU."""
    pytest.importorskip("ray.serve")
    from segcli.cli.main import cli
    import segcli.serve.on_ray as on_ray

    seen = {}
    monkeypatch.setattr(on_ray, "serve_on_ray", lambda *given: seen.update(spec=given[0]))
    weights = save_tiny_checkpoint(tmp_path / "tiny.safetensors")
    result = CliRunner().invoke(cli, ["serve", "--model", "lraspp", "--weights", str(weights), "--engine", "ray", *args])
    assert result.exit_code == 0, result.output
    assert seen["spec"].device == device
