"""The execution policy: a trial that always times the bare fp32 model, the fastest kept, the choice cached."""

from __future__ import annotations

import json
import warnings

import pytest
import torch

from robustness_support import tiny_model
from segcli.execution_policy import (
    BARE, CACHE_FORMAT, Candidate, ExecutionPolicyWarning, PolicyCache, PolicyKey, candidates_for, choose,
    choose_execution, run_trial,
)

CPU = torch.device("cpu")
CL = Candidate("fp32", channels_last=True)
BF16 = Candidate("bf16", channels_last=True)


def _key(**changes) -> PolicyKey:
    fields = dict(model="tiny", checkpoint="abc123", height=32, width=32, batch=1, device_name="cpu",
                  torch_version=torch.__version__)
    fields.update(changes)
    return PolicyKey(**fields)


def _fake_timer(times: dict[Candidate, float], seen: list[Candidate] | None = None):
    def timer(candidate, call, plan):
        call()  # the candidate's configuration really runs
        if seen is not None:
            seen.append(candidate)
        return times[candidate]
    return timer


def test_the_bare_configuration_is_always_a_candidate_and_first():
    assert candidates_for(CPU)[0] == BARE
    assert BARE.precision == "fp32" and not BARE.channels_last and not BARE.cudnn_benchmark
    assert len(set(candidates_for(CPU))) == len(candidates_for(CPU))


@pytest.mark.parametrize("times, expected", [
    ({BARE: 10.0, CL: 5.0, BF16: 7.0}, CL),        # clearly faster: chosen
    ({BARE: 10.0, CL: 12.0, BF16: 11.0}, BARE),    # every other slower: the bare model
    ({BARE: 10.0, CL: 9.9, BF16: 11.0}, BARE),     # 1 % faster is noise: the bare model
])
def test_choice_is_never_slower_than_the_bare_model(times, expected):
    chosen = choose(times)
    assert chosen == expected
    assert times[chosen] <= times[BARE]


def test_a_trial_without_the_bare_configuration_is_refused():
    with pytest.raises(ValueError, match="bare"):
        choose({CL: 1.0})


def test_trial_runs_every_candidate_and_leaves_the_model_in_the_chosen_format(tmp_path):
    model = tiny_model()
    example = torch.rand(1, 3, 32, 32)
    with torch.inference_mode():
        expected = model(example)
    seen: list[Candidate] = []
    choice = choose_execution(model, example, CPU, _key(), PolicyCache(tmp_path / "policy.json"),
                              timer=_fake_timer({BARE: 10.0, CL: 4.0}, seen), candidates=[BARE, CL])
    assert seen == [BARE, CL]
    assert choice.candidate == CL and not choice.from_cache
    assert choice.timings_ms == {BARE.label: 10.0, CL.label: 4.0}
    conv_weight = next(p for p in model.parameters() if p.dim() == 4 and p.shape[-1] > 1)
    assert conv_weight.is_contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        torch.testing.assert_close(model(example.contiguous(memory_format=torch.channels_last)), expected)


def test_the_real_timer_on_a_tiny_model_picks_a_timed_candidate():
    timings = run_trial(tiny_model(), torch.rand(1, 3, 32, 32), CPU, [BARE, CL])
    assert set(timings) == {BARE, CL} and all(ms > 0 for ms in timings.values())


def test_a_cached_choice_skips_the_trial_and_survives_a_new_cache_object(tmp_path):
    path = tmp_path / "home" / "execution-policy.json"
    choose_execution(tiny_model(), torch.rand(1, 3, 32, 32), CPU, _key(), PolicyCache(path),
                     timer=_fake_timer({BARE: 10.0, CL: 4.0}), candidates=[BARE, CL])
    data = json.loads(path.read_text())
    assert data["format"] == CACHE_FORMAT and len(data["entries"]) == 1
    seen: list[Candidate] = []
    again = choose_execution(tiny_model(), torch.rand(1, 3, 32, 32), CPU, _key(), PolicyCache(path),
                             timer=_fake_timer({BARE: 1.0, CL: 4.0}, seen), candidates=[BARE, CL])
    assert again.from_cache and again.candidate == CL and seen == []


@pytest.mark.parametrize("change", [dict(height=64), dict(batch=8), dict(torch_version="0.0.1"),
                                    dict(device_name="NVIDIA H100 80GB HBM3"), dict(checkpoint="other"),
                                    dict(model="other")])
def test_any_change_of_the_key_measures_again(tmp_path, change):
    cache = PolicyCache(tmp_path / "policy.json")
    cache.put(_key(), CL, {BARE: 10.0, CL: 4.0})
    assert cache.get(_key()) == CL
    assert cache.get(_key(**change)) is None


def test_a_cache_of_another_version_is_measured_again(tmp_path):
    path = tmp_path / "policy.json"
    cache = PolicyCache(path)
    cache.put(_key(), CL, {BARE: 10.0, CL: 4.0})
    data = json.loads(path.read_text())
    data["version"] = 999
    path.write_text(json.dumps(data))
    assert cache.get(_key()) is None


@pytest.mark.parametrize("content", [b"{not json", b"\xff\xfe\x00", b"[1, 2]", b'{"format": "other"}',
                                     b'{"format": "segcli-execution-policy", "version": 1, "entries": '
                                     b'{"KEY": {"precision": "fp64", "channels_last": true, "cudnn_benchmark": 0}}}'])
def test_a_corrupt_cache_is_ignored_with_a_warning_and_rewritten(tmp_path, content):
    path = tmp_path / "policy.json"
    path.write_bytes(content.replace(b"KEY", _key().text().replace('"', '\\"').encode()))
    with pytest.warns(ExecutionPolicyWarning, match="ignored"):
        choice = choose_execution(tiny_model(), torch.rand(1, 3, 32, 32), CPU, _key(), PolicyCache(path),
                                  timer=_fake_timer({BARE: 10.0, CL: 4.0}), candidates=[BARE, CL])
    assert choice.candidate == CL and not choice.from_cache
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert PolicyCache(path).get(_key()) == CL  # a valid file again


def test_a_cache_that_cannot_be_written_is_a_warning_not_a_crash(tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder would be")
    with pytest.warns(ExecutionPolicyWarning, match="could not write"):
        choice = choose_execution(tiny_model(), torch.rand(1, 3, 32, 32), CPU, _key(),
                                  PolicyCache(blocker / "policy.json"),
                                  timer=_fake_timer({BARE: 10.0, CL: 4.0}), candidates=[BARE, CL])
    assert choice.candidate == CL
    assert blocker.read_text() == "a file where the cache folder would be"


def test_the_cache_is_written_atomically(tmp_path, monkeypatch):
    """A write that fails half-way leaves the previous cache as it was (segcli.atomic)."""
    import segcli.atomic

    path = tmp_path / "policy.json"
    cache = PolicyCache(path)
    cache.put(_key(), CL, {BARE: 10.0, CL: 4.0})
    before = path.read_bytes()

    def broken(obj):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(segcli.atomic, "json_bytes", broken)
    with pytest.warns(ExecutionPolicyWarning, match="could not write"):
        cache.put(_key(height=64), BARE, {BARE: 1.0})
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["policy.json"]
