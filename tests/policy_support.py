"""The execution policy forced on the CPU: every engine built with `precision="auto"` gets it (as CUDA engines do),
with two candidates (fp32 contiguous, fp32 channels_last) and a timer that says channels_last is faster."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import segcli.execution_policy
from segcli.execution_policy import BARE, Candidate, EnginePolicy

CL = Candidate("fp32", channels_last=True)
TIMES = {BARE: 5.0, CL: 1.0}  # ms per batch: channels_last wins (the CPU's default for auto would be bf16)


@dataclass
class Trials:
    """What the forced policy measured: the batch shape (N, 3, H, W) of each trial, the candidates it timed."""

    shapes: list[tuple[int, ...]] = field(default_factory=list)
    timed: list[Candidate] = field(default_factory=list)


def force_policy(monkeypatch, home: Path, times: dict[Candidate, float] | None = None) -> Trials:
    """SEGCLI_HOME at `home`; `InferenceOptions(precision="auto")` engines get the policy on the CPU."""
    monkeypatch.setenv("SEGCLI_HOME", str(home))
    trials = Trials()
    original = EnginePolicy.for_options.__func__

    def forced(cls, record, device, options, runs_on=None):
        if options.execution_policy is None:
            options = replace(options, execution_policy=True)
        return original(cls, record, device, options, runs_on)

    def timer(candidate, call, plan):
        call()  # the candidate's configuration really runs
        trials.timed.append(candidate)
        return (times or TIMES)[candidate]

    trial = segcli.execution_policy.run_trial

    def recorded_trial(model, example, *args, **kwargs):
        trials.shapes.append(tuple(example.shape))
        return trial(model, example, *args, **kwargs)

    monkeypatch.setattr(EnginePolicy, "for_options", classmethod(forced))
    monkeypatch.setattr(segcli.execution_policy, "candidates_for", lambda device: [BARE, CL])
    monkeypatch.setattr(segcli.execution_policy, "median_timer", timer)
    monkeypatch.setattr(segcli.execution_policy, "run_trial", recorded_trial)
    return trials
