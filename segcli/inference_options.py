"""`InferenceOptions`: how the engine runs a model (precision, tiling, TTA, CRF), in one frozen value.

The CLI builds one from its flags and hands it to `SegmentationEngine.load`; Python users do the
same. Torch-free, so commands can build it before deciding to load anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from segcli.checkpoints.record import CheckpointRecord
    from segcli.crf import CRFParams, CRFSettings
    from segcli.tiling import TilingPolicy, TTAParams


class _FromOptions:
    """`engine.predict(image)` without `crf=`: the CRF the engine's options say (None: no CRF)."""

    def __repr__(self) -> str:
        return "FROM_OPTIONS"


FROM_OPTIONS = _FromOptions()


@dataclass(frozen=True)
class InferenceOptions:
    """Everything about how images go through a loaded model; the checkpoint says the rest."""

    precision: str = "auto"                # auto, fp32, bf16, fp16: the execution plan made at load
    channels_last: bool | None = None      # None: the plan decides (on where it is faster)
    tiling: "TilingPolicy | None" = None   # sliding windows; None: TilingPolicy() (tiles above 4 MP)
    tta: "TTAParams | None" = None         # multi-scale + flip; None: off
    crf: "CRFSettings | None" = None       # dense CRF (kernel settings the user gave, method); None: off

    def tiling_policy(self) -> "TilingPolicy":
        from segcli.tiling import TilingPolicy

        return self.tiling or TilingPolicy()


def resolve_crf(crf, options: InferenceOptions,
                record: "CheckpointRecord | None" = None) -> "tuple[CRFParams, CRFSettings] | None":
    """What `predict(crf=...)` means: FROM_OPTIONS, the options' CRF; None, none; `CRFSettings`, those
    (kernel settings not given come from the record's `crf_defaults`); `CRFParams`, exactly those,
    with the options' method. Returns (kernel settings, settings) or None."""
    from segcli.crf import CRFParams, CRFSettings

    if crf is FROM_OPTIONS:
        crf = options.crf
    if crf is None:
        return None
    if isinstance(crf, CRFParams):
        method = options.crf.method if isinstance(options.crf, CRFSettings) else "fast"
        crf = CRFSettings.from_params(crf, method)
    if not isinstance(crf, CRFSettings):
        raise TypeError(f"crf must be CRFSettings, CRFParams or None, not {type(crf).__name__}")
    return crf.params(record), crf
