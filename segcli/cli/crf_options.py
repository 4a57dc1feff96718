"""The --crf* options as one decorator: the command receives `crf`, a segcli.crf.CRFSettings or None."""

from __future__ import annotations

import click

from segcli.cli.options import bundle


def build_crf_settings(use_crf: bool, crf_full: bool, crf_method: str | None, **overrides: float | int | None):
    """CRFSettings from the --crf* options (None when --crf is off); checks pydensecrf early.

    Only the kernel settings the user gave are recorded: the engine fills the rest from the
    checkpoint record (`crf_defaults`), else DeepLab v2's.
    """
    given = {name: value for name, value in overrides.items() if value is not None}
    if not use_crf:
        if given or crf_full or crf_method:
            named = sorted(given) + (["full"] if crf_full else []) + (["method"] if crf_method else [])
            raise click.UsageError(f"--crf-* options need --crf (given: {', '.join(named)})")
        return None
    if crf_full and crf_method not in (None, "full"):
        raise click.UsageError(f"--crf-full and --crf-method {crf_method} disagree: give one")
    method = "full" if crf_full else (crf_method or "fast")
    from segcli.crf import INSTALL_HINT, CRFSettings, crf_available
    from segcli.errors import MissingDependencyError

    if method == "full" and not crf_available():  # "fast" runs the torch CRF without pydensecrf
        raise MissingDependencyError(INSTALL_HINT)
    return CRFSettings(given=tuple(given.items()), method=method)


# the kernel options' parameter names are CRFParams field names: `build_crf_settings` records them as given
crf_options = bundle("crf", [
    click.option("--crf/--no-crf", "use_crf", default=False, show_default=True,
                 help="Refine with a fully connected CRF (pydensecrf: pip install 'segcli[crf]'; without "
                      "it, or on a CUDA device, the same CRF in torch). Fast by default: mean field at half "
                      "size, then full-size updates on the uncertain pixels only (README, section \"CPU and GPU\")."),
    click.option("--crf-full", is_flag=True,
                 help="With --crf: the reference CRF instead (every label, every iteration, full size)."),
    click.option("--crf-method", type=click.Choice(["fast", "full", "torch"]), default=None,
                 help="With --crf: fast [default; on a CUDA device, or without pydensecrf, the torch CRF], "
                      "full (= --crf-full), or torch (the reference CRF in torch on the model's device)."),
    click.option("--crf-iters", "iterations", type=click.IntRange(1, 100), default=None,
                 help="Mean-field iterations, honoured as given [default: the checkpoint's, else 10 "
                      "(DeepLab v2); the fast CRF stops at 5 when this is not given]."),
    click.option("--crf-bilateral-weight", "bilateral_weight", type=click.FloatRange(min=0), default=None,
                 help="Appearance kernel weight w1 [default: the checkpoint's, else 4 (DeepLab v2)]."),
    click.option("--crf-bilateral-xy", "bilateral_xy", type=click.FloatRange(min=0, min_open=True), default=None,
                 help="Appearance kernel spatial sigma [default: the checkpoint's, else 67]."),
    click.option("--crf-bilateral-rgb", "bilateral_rgb", type=click.FloatRange(min=0, min_open=True), default=None,
                 help="Appearance kernel colour sigma [default: the checkpoint's, else 3]."),
    click.option("--crf-gaussian-weight", "gaussian_weight", type=click.FloatRange(min=0), default=None,
                 help="Smoothness kernel weight w2 [default: the checkpoint's, else 3]."),
    click.option("--crf-gaussian-xy", "gaussian_xy", type=click.FloatRange(min=0, min_open=True), default=None,
                 help="Smoothness kernel spatial sigma [default: the checkpoint's, else 1]."),
], build_crf_settings)
