"""`--precision auto` on CUDA: the engine applies the execution policy (segcli.execution_policy) on the first batch of
each (input size, batch) it runs, whichever command built it. The policy is forced on the CPU here
(tests/policy_support.py): two candidates, channels_last timed faster."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from engine_support import engine_of
from policy_support import CL, force_policy
from robustness_support import tiny_model, tiny_record
from segcli.execution_policy import BARE, ran_in

TESTS = Path(__file__).resolve().parent


def _image(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)


def _auto_engine():
    return engine_of(tiny_model(), tiny_record(), precision="auto", channels_last=None)


def test_the_policy_is_consulted_once_per_size_and_batch_per_engine(tmp_path, monkeypatch):
    trials = force_policy(monkeypatch, tmp_path / "home")
    engine = _auto_engine()
    assert engine.policy is not None and engine.execution_text().startswith("auto")
    first = engine.predict(_image(40, 48))
    engine.predict(_image(40, 48, seed=1))                     # same size and batch: no second trial
    engine.predict_batch([_image(40, 48, 2), _image(40, 48, 3)])  # batch of 2: a trial
    engine.predict(_image(36, 36))                             # another size: a trial
    engine.predict(_image(40, 48, seed=4))                     # back to the first: its choice, no trial
    assert trials.shapes == [(1, 3, 40, 48), (2, 3, 40, 48), (1, 3, 36, 36)]
    assert trials.timed == [BARE, CL] * 3
    assert [choice.from_cache for choice in engine.policy.choices] == [False] * 3  # consulted once per shape
    assert (engine.plan.precision, engine.plan.channels_last) == ("fp32", True)
    assert first.plan is not None and first.plan.text == "fp32 CL" and engine.execution_text() == "fp32 CL"
    cache = json.loads((tmp_path / "home" / "execution-policy.json").read_text())
    assert sorted((json.loads(k)["height"], json.loads(k)["batch"]) for k in cache["entries"]) == \
        [(36, 1), (40, 1), (40, 2)]


def test_the_chosen_plan_gives_the_labels_of_an_independent_fp32_engine(tmp_path, monkeypatch):
    force_policy(monkeypatch, tmp_path / "home")
    network = tiny_model()
    image = _image(40, 48)
    expected = engine_of(network, tiny_record(), precision="fp32", channels_last=False).predict(image).labels
    engine = engine_of(network, tiny_record(), precision="auto", channels_last=None)
    np.testing.assert_array_equal(engine.predict(image).labels, expected)
    assert engine.plan.text == "fp32 CL"


def test_the_bare_configuration_is_kept_when_nothing_is_clearly_faster(tmp_path, monkeypatch):
    trials = force_policy(monkeypatch, tmp_path / "home", times={BARE: 1.0, CL: 0.99})  # 1 %: noise
    engine = _auto_engine()
    prediction = engine.predict(_image(40, 40))
    assert trials.timed == [BARE, CL] and prediction.plan.text == "fp32"
    assert ran_in(engine.plan, engine.policy) == ("fp32", "contiguous")


def test_an_explicit_precision_skips_the_policy(tmp_path, monkeypatch):
    trials = force_policy(monkeypatch, tmp_path / "home")
    for precision in ("fp32", "bf16"):
        engine = engine_of(tiny_model(), tiny_record(), precision=precision, channels_last=None, execution_policy=True)
        prediction = engine.predict(_image(40, 40))
        assert engine.policy is None and prediction.plan.precision == precision
    off = engine_of(tiny_model(), tiny_record(), precision="auto", channels_last=None, execution_policy=False)
    off.predict(_image(40, 40))
    assert off.policy is None and trials.shapes == []
    assert not (tmp_path / "home" / "execution-policy.json").exists()


def test_auto_on_the_cpu_keeps_its_rule_without_a_trial(tmp_path, monkeypatch):
    monkeypatch.setenv("SEGCLI_HOME", str(tmp_path / "home"))
    engine = engine_of(tiny_model(), tiny_record(), precision="auto", channels_last=None)
    engine.predict(_image(40, 40))
    assert engine.policy is None and not (tmp_path / "home").exists()


def test_a_given_memory_format_limits_the_trial_to_it(tmp_path, monkeypatch):
    trials = force_policy(monkeypatch, tmp_path / "home")
    engine = engine_of(tiny_model(), tiny_record(), precision="auto", channels_last=False)
    engine.predict(_image(40, 40))
    assert trials.timed == [BARE] and engine.plan.text == "fp32"


SECOND_PROCESS = """
import json, sys
import numpy as np
from robustness_support import tiny_model, tiny_record
from segcli.engine import SegmentationEngine
from segcli.inference_options import InferenceOptions
from segcli.loaded_model import LoadedModel

def no_trial(candidate, call, plan):
    raise AssertionError("a second process measured again instead of reading the cache")

engine = SegmentationEngine.from_checkpoint(LoadedModel(tiny_model(), tiny_record()), device="cpu",
                                            options=InferenceOptions(execution_policy=True))
engine.policy.timer = no_trial
prediction = engine.predict(np.zeros((40, 48, 3), np.uint8))
print(json.dumps({"plan": prediction.plan.text, "cached": [c.from_cache for c in engine.policy.choices]}))
"""


def test_a_second_process_reads_the_cached_choice(tmp_path, monkeypatch):
    # the choice the first engine measured: fp32 channels_last (the CPU's own auto rule would be bf16 or fp32 CL)
    force_policy(monkeypatch, tmp_path / "home")
    first = _auto_engine()
    first.predict(_image(40, 48))
    assert [choice.from_cache for choice in first.policy.choices] == [False]
    env = {**os.environ, "SEGCLI_HOME": str(tmp_path / "home"), "PYTHONPATH": str(TESTS)}
    done = subprocess.run([sys.executable, "-c", SECOND_PROCESS], capture_output=True, text=True, env=env,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"plan": "fp32 CL", "cached": [True]}
