"""The permutohedral lattice filter (segcli/permutohedral.py) against independent oracles: brute-force
O(N^2) Gaussian filtering, and pydensecrf's own normalised filtering isolated as one mean-field step."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import segcli.permutohedral as permutohedral
from segcli.crf import CRFParams
from segcli.crf_torch import Kernel, image_features
from segcli.data.synth import make_scene
from segcli.permutohedral import Lattice

# (kernel settings, which features, max and mean relative error allowed). Measured on 12x17 synthetic
# scenes, seeds 0-3, values in [0.2, 1]: worst max / mean 0.072 / 0.0098 (smoothness, sxy 1),
# 0.024 / 0.0039 (sxy 3), 0.048 / 0.0058 (appearance 4 / 20), 0.122 / 0.0093 (appearance 3 / 13).
# The lattice approximates the Gaussian (Adams et al. 2010): the tolerances allow that, with a margin.
CASES = [
    (CRFParams(gaussian_xy=1.0), 0, 0.10, 0.013),
    (CRFParams(gaussian_xy=3.0), 0, 0.035, 0.006),
    (CRFParams(bilateral_xy=4.0, bilateral_rgb=20.0), 1, 0.07, 0.008),
    (CRFParams(bilateral_xy=3.0, bilateral_rgb=13.0), 1, 0.16, 0.013),
]


def scene_features(params: CRFParams, which: int, seed: int) -> torch.Tensor:
    image = torch.tensor(make_scene(5, seed, (12, 17)).image)
    return image_features(image, params)[which]


def brute_force(features: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """sum_j exp(-|f_i - f_j|^2 / 2) v_j / sum_j exp(-|f_i - f_j|^2 / 2), in float64."""
    f = features.double()
    kernel = torch.exp(-((f[:, None] - f[None]) ** 2).sum(-1) / 2)
    return (kernel @ values.double()) / kernel.sum(1, keepdim=True)


@pytest.mark.parametrize("seed", [0, 3])
@pytest.mark.parametrize("params, which, max_error, mean_error", CASES)
def test_normalised_filter_matches_brute_force_gaussian(params, which, max_error, mean_error, seed):
    features = scene_features(params, which, seed)
    values = torch.tensor(np.random.default_rng(seed).uniform(0.2, 1.0, (features.shape[0], 3)), dtype=torch.float32)
    lattice = Lattice.build(features)
    filtered = lattice.filter(values) / lattice.filter(torch.ones(features.shape[0], 1))
    exact = brute_force(features, values)
    error = ((filtered.double() - exact).abs() / exact).numpy()
    assert features.shape[1] == (2 if which == 0 else 5)
    assert error.max() < max_error and error.mean() < mean_error, (error.max(), error.mean())


def test_splat_weights_are_barycentric_coordinates_of_the_enclosing_simplex():
    """Each point's weights are >= 0, sum to 1, and combine its simplex's vertices into its elevated
    position (Adams et al. 2010, section 3.1)."""
    features = torch.tensor(np.random.default_rng(1).normal(0, 3, (300, 5)), dtype=torch.float32)
    rem0, rank, weights = permutohedral._enclosing_simplex(features)
    vertices = permutohedral._simplex_keys(rem0, rank).to(torch.float32)  # [N, d+1, d]
    assert torch.allclose(weights.sum(1), torch.ones(300), atol=1e-5) and bool((weights >= -1e-6).all())
    position = (weights[:, :, None] * vertices).sum(1)
    assert torch.allclose(position, permutohedral._elevate(features)[:, :5], atol=1e-3)


def test_unique_rows_fallback_builds_the_same_filter(monkeypatch):
    """Coordinates too spread for packed 64-bit keys take the torch.unique(dim=0) path: same filter."""
    features = scene_features(CRFParams(bilateral_xy=3.0, bilateral_rgb=13.0), 1, 2)
    values = torch.rand(features.shape[0], 4, generator=torch.Generator().manual_seed(0))
    packed = Lattice.build(features)
    monkeypatch.setattr(permutohedral, "_KEY_LIMIT", 0)
    rows = Lattice.build(features)
    assert rows.vertices == packed.vertices
    assert torch.allclose(rows.filter(values), packed.filter(values), atol=1e-6)


@pytest.mark.parametrize("batch_bytes", [2 ** 30, 0])  # all corners at once; one corner at a time
def test_splat_and_slice_by_index_match_the_sparse_matrices(monkeypatch, batch_bytes):
    """The index path (index_add_/index_select, used on CUDA) and the CSR path (the CPU) agree."""
    monkeypatch.setattr(permutohedral, "INDEX_BATCH_BYTES", batch_bytes)
    features = scene_features(CRFParams(), 1, 1)
    values = torch.rand(features.shape[0], 5, generator=torch.Generator().manual_seed(1))
    sparse, indexed = Lattice.build(features, sparse=True), Lattice.build(features, sparse=False)
    assert torch.allclose(sparse.filter(values), indexed.filter(values), atol=1e-5)


@pytest.mark.parametrize("which", [0, 1])
def test_normalised_message_matches_pydensecrf_one_step(which):
    """pydensecrf's filter, isolated: one mean-field step from Q0 = p with one kernel of weight 1 gives
    log Q1 = log p + n K(n p) + const per pixel (NORMALIZE_SYMMETRIC); our message must match it."""
    densecrf = pytest.importorskip("pydensecrf.densecrf")
    params = CRFParams(gaussian_xy=2.0, bilateral_xy=5.0, bilateral_rgb=10.0)
    features = scene_features(params, which, 0)
    n_points, n_labels = features.shape[0], 4
    p = np.random.default_rng(2).dirichlet(np.ones(n_labels), n_points).astype(np.float32)  # [N, C]
    crf = densecrf.DenseCRF(n_points, n_labels)
    crf.setUnaryEnergy(np.ascontiguousarray(-np.log(p.T), dtype=np.float32))
    crf.addPairwiseEnergy(np.ascontiguousarray(features.numpy().T), compat=1.0)
    theirs = np.log(np.asarray(crf.inference(1)).T) - np.log(p)
    ours = Kernel.build(features, 1.0).message(torch.tensor(p)).numpy()
    centred = [m - m.mean(1, keepdims=True) for m in (theirs, ours)]
    assert np.abs(centred[0] - centred[1]).max() < 1e-4 * max(1.0, np.abs(centred[0]).max())
    assert np.abs(centred[0]).max() > 0.05  # the message is not trivially zero
