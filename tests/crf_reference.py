"""The plain pydensecrf recipe (its README's DenseCRF2D usage), written out independently of segcli: the oracle
the CRF tests compare segcli's CRF against."""

from __future__ import annotations

import numpy as np

from segcli.crf import CRFParams


def pydensecrf_reference(probs: np.ndarray, image: np.ndarray, params: CRFParams) -> np.ndarray:
    """Mean field of pydensecrf's DenseCRF2D on `probs` [C, H, W] over the uint8 RGB `image` [H, W, 3]."""
    import pydensecrf.densecrf as densecrf

    n, h, w = probs.shape
    crf = densecrf.DenseCRF2D(w, h, n)
    crf.setUnaryEnergy(np.ascontiguousarray(-np.log(np.clip(probs, 1e-8, 1)).reshape(n, -1), dtype=np.float32))
    crf.addPairwiseGaussian(sxy=params.gaussian_xy, compat=params.gaussian_weight)
    crf.addPairwiseBilateral(sxy=params.bilateral_xy, srgb=params.bilateral_rgb,
                             rgbim=np.ascontiguousarray(image), compat=params.bilateral_weight)
    return np.array(crf.inference(params.iterations), dtype=np.float32).reshape(n, h, w)
