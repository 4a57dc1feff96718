"""`InferenceOptions`: how the engine runs a model (precision, memory format, tiling, TTA, input scales,
CRF), in one frozen value.

The CLI builds one from its flags and hands it to `SegmentationEngine.load` / `from_checkpoint`; Python
users do the same. Torch-free, so commands can build it before deciding to load anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Union

if TYPE_CHECKING:
    from segcli.checkpoints.record import CheckpointRecord
    from segcli.crf import CRFParams, CRFSettings
    from segcli.tiling import TilingPolicy, TTAParams

__all__ = ["CRFChoice", "FROM_OPTIONS", "FromOptions", "InferenceOptions", "resolve_crf"]


class FromOptions:
    """The type of `FROM_OPTIONS`: `engine.predict(image)` without `crf=` runs the CRF the engine's
    options say (`options.crf`; None: no CRF)."""

    def __repr__(self) -> str:
        return "FROM_OPTIONS"


FROM_OPTIONS = FromOptions()

# predict's `crf=`: FROM_OPTIONS (the default: the options' CRF), None (no CRF for this call) or CRFSettings
CRFChoice = Union["CRFSettings", None, FromOptions]


@dataclass(frozen=True)
class InferenceOptions:
    """Everything about how images go through a loaded model; the checkpoint says the rest."""

    precision: str = "auto"                # auto, fp32, bf16, fp16: the execution plan made at load
    channels_last: bool | None = None      # None: the plan decides (on where it is faster)
    tiling: "TilingPolicy | None" = None   # sliding windows; None: TilingPolicy() (tiles above 4 MP)
    tta: "TTAParams | None" = None         # multi-scale + flip; None: off
    input_scales: "tuple[float, ...] | None" = None  # scales whose logits are max-fused; None: the checkpoint's
    crf: "CRFSettings | None" = None       # dense CRF (kernel settings the user gave, method); None: off
    # precision="auto": None, the execution policy (segcli.execution_policy) measures the fastest configuration
    # on CUDA (elsewhere the device's rule); True, on any device (tests force it on the CPU); False, never
    execution_policy: bool | None = None

    def __post_init__(self) -> None:
        if self.crf is not None:
            _require_crf_settings(self.crf, "InferenceOptions.crf")
        if self.input_scales is not None:
            from segcli.models import check_input_scales

            object.__setattr__(self, "input_scales", check_input_scales(self.input_scales))

    def tiling_policy(self) -> "TilingPolicy":
        from segcli.tiling import TilingPolicy

        return self.tiling or TilingPolicy()


def _require_crf_settings(crf, what: str) -> None:
    from segcli.crf import CRFSettings

    if not isinstance(crf, CRFSettings):
        raise TypeError(f"{what} must be CRFSettings or None, not {type(crf).__name__} "
                        f"(exact kernel settings: CRFSettings.from_params(params, method))")


def resolve_crf(crf: CRFChoice, options: InferenceOptions,
                record: "CheckpointRecord | None" = None) -> "tuple[CRFParams, CRFSettings] | None":
    """What `predict(crf=...)` means: FROM_OPTIONS, the options' CRF; None, none; `CRFSettings`, those
    (kernel settings not given come from the record's `crf_defaults`). Returns (kernel settings, settings)."""
    if crf is FROM_OPTIONS:
        crf = options.crf
    if crf is None:
        return None
    _require_crf_settings(crf, "crf")
    return crf.params(record), crf
