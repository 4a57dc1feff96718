"""`fit` on its own: any model and batch source (a decoder on cached features), deadlines, stops, schedule."""

from __future__ import annotations

import signal
import time

import pytest
import torch
from torch import nn

from segcli.device import plan_execution
from segcli.errors import SegcliError
from segcli.training.loop import FitSettings, fit
from segcli.training.schedule import PolySchedule, poly_factor

PLAN = plan_execution("cpu", "fp32", channels_last=False)


class CachedFeatures:
    """A frozen encoder's features, computed once: what an upsampling decoder trains on."""

    def __init__(self, count: int = 16, seed: int = 0, delay: float = 0.0, on_batch=None) -> None:
        generator = torch.Generator().manual_seed(seed)
        encoder = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        images = torch.rand(count, 3, 16, 16, generator=generator)
        with torch.no_grad():
            self.features = encoder(images)
        # a rule the decoder can learn from the features: the sign of one channel, at the image's size
        self.masks = (self.features[:, :1] > self.features[:, :1].median()).float()
        self.masks = nn.functional.interpolate(self.masks, scale_factor=2)[:, 0].long()
        self.delay, self.on_batch = delay, on_batch

    def batches(self, start: int):
        iteration = start
        while True:
            if self.on_batch is not None:
                self.on_batch(iteration)
            time.sleep(self.delay)
            rows = torch.arange(iteration * 4, iteration * 4 + 4) % len(self.masks)
            yield self.features[rows], self.masks[rows]
            iteration += 1


def decoder() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(8, 16, 1), nn.ReLU(), nn.Conv2d(16, 2, 1), nn.Upsample(scale_factor=2))


def test_fit_trains_a_decoder_on_cached_features_and_saves_on_schedule():
    model = decoder()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-2)
    schedule = PolySchedule(optimizer, total=60)
    saves, lrs = [], []
    outcome = fit(model, CachedFeatures(), optimizer, schedule, PLAN, nn.functional.cross_entropy,
                  FitSettings(total=60, save_every=25, log_every=10), on_save=lambda done, total: saves.append(done),
                  on_progress=lambda done, total, lr, loss: lrs.append(lr))
    assert outcome.iteration == outcome.total == 60 and not outcome.stopped
    assert len(outcome.losses) == 60
    assert sum(outcome.losses[-10:]) / 10 < 0.6 * sum(outcome.losses[:10]) / 10
    assert saves == [25, 50, 60]
    assert lrs[0] == pytest.approx(3e-2) and lrs[59] == pytest.approx(3e-2 * poly_factor(59, 60))


def test_warmup_ramps_linearly_then_poly_decays():
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.5)
    schedule = PolySchedule(optimizer, total=100, warmup=10)
    assert schedule.apply(0) == pytest.approx(0.5 * 0.1 * poly_factor(0, 100))
    assert schedule.apply(4) == pytest.approx(0.5 * 0.5 * poly_factor(4, 100))
    assert schedule.apply(50) == pytest.approx(0.5 * poly_factor(50, 100))
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.5 * poly_factor(50, 100))


@pytest.mark.slow
def test_a_deadline_fixes_the_iteration_count_so_the_schedule_ends_on_time():
    model = decoder()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    schedule = PolySchedule(optimizer, total=10**6)
    lrs = {}
    started = time.monotonic()
    outcome = fit(model, CachedFeatures(delay=0.02), optimizer, schedule, PLAN, nn.functional.cross_entropy,
                  FitSettings(total=10**6, deadline=started + 4.0),
                  on_progress=lambda done, total, lr, loss: lrs.update({done: (lr, total)}))
    elapsed = time.monotonic() - started
    assert 3.0 < elapsed < 5.0
    assert 30 < outcome.iteration == outcome.total < 10**6  # about 4 s / 20 ms, never the cap
    last_lr, last_total = lrs[outcome.iteration]
    assert last_total == outcome.total
    assert last_lr < 0.05 * 0.1  # the poly schedule ran (almost) to its end, not cut off at a high rate


def test_a_deadline_already_past_runs_nothing():
    model = decoder()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    outcome = fit(model, CachedFeatures(), optimizer, PolySchedule(optimizer, total=50), PLAN,
                  nn.functional.cross_entropy, FitSettings(total=50, deadline=time.monotonic() - 1))
    assert outcome.iteration == outcome.total == 0 and outcome.losses == []


def test_ctrl_c_stops_at_the_end_of_the_running_iteration_and_saves():
    def interrupt_at_third(iteration: int) -> None:
        if iteration == 2:
            signal.raise_signal(signal.SIGINT)

    model = decoder()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    saves = []
    previous = signal.getsignal(signal.SIGINT)
    outcome = fit(model, CachedFeatures(on_batch=interrupt_at_third), optimizer, PolySchedule(optimizer, total=50),
                  PLAN, nn.functional.cross_entropy, FitSettings(total=50, save_every=100),
                  on_save=lambda done, total: saves.append((done, total)))
    assert outcome.stopped and outcome.iteration == 3 and len(outcome.losses) == 3
    assert saves == [(3, 50)]
    assert signal.getsignal(signal.SIGINT) is previous  # the handler is put back


def test_a_non_finite_loss_is_reported_with_its_iteration():
    def exploding(outputs, targets):
        return nn.functional.cross_entropy(outputs, targets) * float("inf")

    model = decoder()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(SegcliError, match="at iteration 0: lower the learning rate$") as caught:
        fit(model, CachedFeatures(), optimizer, PolySchedule(optimizer, total=5), PLAN, exploding,
            FitSettings(total=5))
    assert caught.value.hint == "lower --lr"
