"""High-dimensional Gaussian filtering on a permutohedral lattice, in torch tensor ops.

Adams, Baek and Davis, "Fast High-Dimensional Filtering Using the Permutohedral Lattice"
(Eurographics 2010): each d-dimensional feature vector is embedded in the hyperplane of R^(d+1)
where the lattice lives, splatted onto the d+1 vertices of its enclosing simplex with barycentric
weights, blurred with a [1 2 1] kernel along each of the d+1 lattice directions, and sliced back
with the same weights. The arithmetic follows the implementation the dense CRF of Krahenbuhl and
Koltun ships (densecrf/src/permutohedral.cpp in github.com/lucasb-eyer/pydensecrf): the same
elevation and scaling of the features, the same rounding and ranking, blur weights
(1, 0.5, 0.5) (the [1 2 1] kernel halved), directions blurred in the order 0..d, and the result
scaled by alpha = 1 / (1 + 2^-d). The filter includes each point's own value (no self-exclusion).

The lattice depends on the features only: build it once (`Lattice.build`), then `filter` any
number of [N, C] value matrices; everything stays on the features' device (CPU or CUDA). Vertices
are found with integer keys -> torch.unique, neighbours with torch.searchsorted in the sorted keys:
no hash table and no compiled extension.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import torch

_KEY_LIMIT = 2 ** 62  # packed vertex keys must fit a signed 64-bit integer
INDEX_BATCH_BYTES = 2 ** 30  # index path (CUDA): splat / slice all simplex corners at once below this temporary size


@dataclass(frozen=True)
class Lattice:
    """A permutohedral lattice over N points with d-dimensional features.

    offsets: [N, d+1] int64, the vertex each point splats to (one per simplex corner);
    weights: [N, d+1] float32, the barycentric weights; neighbours: [d+1, 2, M] int64, the two
    neighbours of each vertex along each lattice direction (M where the neighbour does not exist:
    the zero row); vertices: M. splat / gather: the same splat as sparse CSR matrices [M+1, N] and
    [N, M+1] (None: splat with index_add_ and slice with index_select instead)."""

    offsets: torch.Tensor
    weights: torch.Tensor
    neighbours: torch.Tensor
    vertices: int
    splat: torch.Tensor | None = None
    gather: torch.Tensor | None = None

    @property
    def dimensions(self) -> int:
        return self.offsets.shape[1] - 1

    @classmethod
    def build(cls, features: torch.Tensor, sparse: bool | None = None) -> "Lattice":
        """The lattice for float32 features [N, d] (already divided by the kernel widths). `sparse`:
        splat and slice as CSR matrix products (default on the CPU, where index_add_ is slow)."""
        if features.ndim != 2 or features.shape[0] < 1 or features.shape[1] < 1:
            raise ValueError(f"features must be [N, d] with N, d >= 1, got {tuple(features.shape)}")
        features = features.to(torch.float32)
        rem0, rank, weights = _enclosing_simplex(features)
        keys = _simplex_keys(rem0, rank)  # [N, d+1, d]: the d+1 vertices of each point's simplex
        offsets, neighbours, vertices = _index_vertices(keys)
        if sparse is None:
            sparse = features.device.type == "cpu"
        matrices = _splat_matrices(offsets, weights, vertices) if sparse else (None, None)
        return cls(offsets, weights, neighbours, vertices, *matrices)

    def filter(self, values: torch.Tensor) -> torch.Tensor:
        """Gaussian-filtered [N, C] values: splat, blur along each direction, slice."""
        n_points, d_plus_1 = self.offsets.shape
        channels = values.shape[1]
        if self.splat is not None:
            grid = self.splat @ values  # the last row stays zero: missing neighbours point there
        else:
            grid = values.new_zeros((self.vertices + 1, channels))
            for corners in self._corner_groups(channels):  # all corners at once where memory allows: fewer kernels
                weighted = values[:, None, :] * self.weights[:, corners, None]
                grid.index_add_(0, self.offsets[:, corners].reshape(-1), weighted.reshape(-1, channels))
        grid = self._blur(grid)
        alpha = 1.0 / (1.0 + 2.0 ** -(d_plus_1 - 1))
        if self.gather is not None:
            return (self.gather @ grid) * alpha
        out = values.new_zeros((n_points, channels))
        for corners in self._corner_groups(channels):
            picked = grid.index_select(0, self.offsets[:, corners].reshape(-1)).reshape(n_points, -1, channels)
            out += (picked * self.weights[:, corners, None]).sum(1)
        return out * alpha

    def _corner_groups(self, channels: int) -> list[slice]:
        """Simplex corners handled together by the index path: all d+1 when an [N, d+1, C] temporary
        stays under INDEX_BATCH_BYTES, else one at a time."""
        n_points, d_plus_1 = self.offsets.shape
        if n_points * d_plus_1 * channels * 4 <= INDEX_BATCH_BYTES:
            return [slice(0, d_plus_1)]
        return [slice(corner, corner + 1) for corner in range(d_plus_1)]

    def _blur(self, grid: torch.Tensor) -> torch.Tensor:
        """[1 2 1] / 2 along each lattice direction in turn, 0..d; the last row (missing neighbours) stays zero.
        Overwrites `grid` (its buffer is reused): pass one the caller owns."""
        spare = torch.zeros_like(grid)
        first, second = torch.empty_like(grid[:-1]), torch.empty_like(grid[:-1])
        for before, after in self.neighbours:
            torch.index_select(grid, 0, before, out=first)
            torch.index_select(grid, 0, after, out=second)
            first += second
            torch.add(grid[:-1], first, alpha=0.5, out=spare[:-1])
            grid, spare = spare, grid
        return grid

    def nbytes(self) -> int:
        """Bytes the lattice itself holds."""
        tensors = [self.offsets, self.weights, self.neighbours]
        for matrix in (self.splat, self.gather):
            if matrix is not None:
                tensors += [matrix.crow_indices(), matrix.col_indices(), matrix.values()]
        return sum(t.element_size() * t.nelement() for t in tensors)


def _splat_matrices(offsets: torch.Tensor, weights: torch.Tensor, vertices: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Splat [M+1, N] and slice [N, M+1] as CSR matrices holding the barycentric weights."""
    n_points, corners = offsets.shape
    rows, values = offsets.reshape(-1), weights.reshape(-1)
    points = torch.arange(n_points, device=offsets.device).repeat_interleave(corners)
    order = torch.argsort(rows, stable=True)
    counts = torch.bincount(rows, minlength=vertices + 1)
    crow = torch.cat([counts.new_zeros(1), torch.cumsum(counts, 0)])
    with warnings.catch_warnings():  # "sparse CSR support is in beta": the products used here are plain SpMM
        warnings.simplefilter("ignore", UserWarning)
        splat = torch.sparse_csr_tensor(crow, points[order], values[order], (vertices + 1, n_points),
                                        check_invariants=False)
        gather = torch.sparse_csr_tensor(torch.arange(0, n_points * corners + 1, corners, device=offsets.device),
                                         rows, values, (n_points, vertices + 1), check_invariants=False)
    return splat, gather


def _elevate(features: torch.Tensor) -> torch.Tensor:
    """[N, d] -> [N, d+1] points on the lattice's hyperplane (coordinates summing to zero), scaled as
    the reference scales them (inv_std_dev = sqrt(2/3) (d+1))."""
    d = features.shape[1]
    inv_std_dev = math.sqrt(2.0 / 3.0) * (d + 1)
    scale = torch.tensor([inv_std_dev / math.sqrt((i + 2) * (i + 1)) for i in range(d)],
                         dtype=torch.float32, device=features.device)
    scaled = features * scale                                   # cf[i]
    tail = torch.flip(torch.cumsum(torch.flip(scaled, [1]), 1), [1])  # tail[i] = sum_{k >= i} cf[k]
    steps = torch.arange(1, d + 1, dtype=torch.float32, device=features.device)
    elevated = torch.empty((features.shape[0], d + 1), dtype=torch.float32, device=features.device)
    elevated[:, 0] = tail[:, 0]
    after = torch.cat([tail[:, 1:], torch.zeros_like(tail[:, :1])], 1)  # sum_{k > i} cf[k]
    elevated[:, 1:] = after - steps * scaled
    return elevated


def _enclosing_simplex(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The nearest remainder-0 lattice point (rem0, [N, d+1]), the rank of each coordinate's
    remainder ([N, d+1] int64) and the barycentric weights ([N, d+1])."""
    d = features.shape[1]
    elevated = _elevate(features)
    nearest = torch.round(elevated / (d + 1))
    rem0 = nearest * (d + 1)
    total = nearest.sum(1, keepdim=True).to(torch.int64)
    delta = elevated - rem0
    # rank[i] = how many coordinates have a larger remainder; ties go to the lower index (as the reference)
    index = torch.arange(d + 1, device=features.device)
    larger = delta[:, None, :] > delta[:, :, None]
    tie_before = (delta[:, None, :] == delta[:, :, None]) & (index[None, :] < index[:, None])[None]
    rank = (larger | tie_before).sum(2) + total
    low, high = rank < 0, rank > d
    rank = rank + (d + 1) * low - (d + 1) * high
    rem0 = rem0 + (d + 1) * low - (d + 1) * high
    share = (elevated - rem0) / (d + 1)
    bary = torch.zeros((features.shape[0], d + 2), dtype=torch.float32, device=features.device)
    bary.scatter_add_(1, d - rank, share)
    bary.scatter_add_(1, d - rank + 1, -share)
    bary[:, 0] += 1.0 + bary[:, d + 1]
    return rem0.to(torch.int64), rank, bary[:, :d + 1].contiguous()


def _simplex_keys(rem0: torch.Tensor, rank: torch.Tensor) -> torch.Tensor:
    """Integer keys [N, d+1 corners, d] of the simplex vertices: rem0 + canonical[corner][rank]
    (the last coordinate is implied: a lattice point's coordinates sum to zero)."""
    d = rank.shape[1] - 1
    corner = torch.arange(d + 1, device=rank.device)[None, :, None]          # [1, d+1, 1]
    ranks = rank[:, None, :d]                                                # [N, 1, d]
    shift = torch.where(ranks <= d - corner, corner, corner - (d + 1))
    return rem0[:, None, :d] + shift


def _neighbour_keys(keys: torch.Tensor) -> torch.Tensor:
    """[d+1 directions, 2, M, d] keys of each vertex's neighbours: along direction j the vertex
    minus 1 in every coordinate, plus d+1 in coordinate j (and the opposite)."""
    m, d = keys.shape
    step = torch.ones((d + 1, d), dtype=keys.dtype, device=keys.device)
    step[torch.arange(d), torch.arange(d)] = -d
    before = keys[None] - step[:, None, :]
    after = keys[None] + step[:, None, :]
    return torch.stack([before, after], 1)


def _index_vertices(keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Vertex index per (point, corner), neighbour indices per vertex and direction, vertex count."""
    n_points, corners, d = keys.shape
    flat = keys.reshape(-1, d)
    low = flat.amin(0) - (d + 1)  # neighbours reach d+1 further out in a coordinate
    span = flat.amax(0) + (d + 1) - low + 1
    if math.prod(int(s) for s in span) < _KEY_LIMIT:
        radix = torch.cumprod(torch.cat([span.new_ones(1), span[:-1]]), 0)
        packed = ((flat - low) * radix).sum(1)
        unique, offsets = torch.unique(packed, sorted=True, return_inverse=True)
        wanted = unique + (_neighbour_keys(torch.zeros_like(low)[None]) * radix).sum(-1)  # packing is linear
        found = torch.searchsorted(unique, wanted).clamp_(max=len(unique) - 1)
        neighbours = torch.where(unique[found] == wanted, found, len(unique))
    else:  # coordinates too spread to pack: unique rows (slower, exact)
        unique, offsets = torch.unique(flat, dim=0, return_inverse=True)
        wanted = _neighbour_keys(unique).reshape(-1, d)
        merged, inverse = torch.unique(torch.cat([unique, wanted]), dim=0, return_inverse=True)
        lookup = torch.full((len(merged),), len(unique), dtype=torch.int64, device=keys.device)
        lookup[inverse[:len(unique)]] = torch.arange(len(unique), device=keys.device)
        neighbours = lookup[inverse[len(unique):]].reshape(d + 1, 2, len(unique))
    return offsets.reshape(n_points, corners), neighbours, len(unique)
