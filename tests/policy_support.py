"""The execution policy forced on the CPU: every engine built with `precision="auto"` gets it (as CUDA engines do),
with two candidates (fp32 contiguous, fp32 channels_last) and a timer that says channels_last is faster."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import segcli.execution_policy
from segcli.device import ExecutionPlan
from segcli.execution_policy import BARE, Candidate, EnginePolicy

CL = Candidate("fp32", channels_last=True)
TIMES = {BARE: 5.0, CL: 1.0}  # ms per batch: channels_last wins (the CPU's default for auto would be bf16)


@dataclass
class Trials:
    """What the forced policy measured: the batch shape (N, 3, H, W) of each trial, the candidates it timed; and
    the plan (`fp32 CL`) of every forward pass the engine ran outside the trials."""

    shapes: list[tuple[int, ...]] = field(default_factory=list)
    timed: list[Candidate] = field(default_factory=list)
    forwards: list[str] = field(default_factory=list)
    in_trial: bool = False


def force_policy(monkeypatch, home: Path, times: dict[Candidate, float] | None = None) -> Trials:
    """SEGCLI_HOME at `home`; `InferenceOptions(precision="auto")` engines get the policy on the CPU."""
    monkeypatch.setenv("SEGCLI_HOME", str(home))
    trials = Trials()
    original = EnginePolicy.wanted

    def forced(device, options):
        if options.execution_policy is None:
            options = replace(options, execution_policy=True)
        return original(device, options)

    def timer(candidate, call, plan):
        trials.in_trial = True
        try:
            call()  # the candidate's configuration really runs
        finally:
            trials.in_trial = False
        trials.timed.append(candidate)
        return (times or TIMES)[candidate]

    trial = segcli.execution_policy.run_trial

    def recorded_trial(model, example, *args, **kwargs):
        trials.shapes.append(tuple(example.shape))
        return trial(model, example, *args, **kwargs)

    autocast = ExecutionPlan.autocast

    def recorded_autocast(plan):
        if not trials.in_trial:
            trials.forwards.append(plan.text)
        return autocast(plan)

    monkeypatch.setattr(ExecutionPlan, "autocast", recorded_autocast)
    monkeypatch.setattr(EnginePolicy, "wanted", staticmethod(forced))
    monkeypatch.setattr(segcli.execution_policy, "candidates_for", lambda device: [BARE, CL])
    monkeypatch.setattr(segcli.execution_policy, "median_timer", timer)
    monkeypatch.setattr(segcli.execution_policy, "run_trial", recorded_trial)
    return trials
