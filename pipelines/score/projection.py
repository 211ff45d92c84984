"""A seeded random projection that every worker derives from the seed alone, chunk by chunk.

The matrix is Rademacher: entry (i, j) of the D x d matrix is +1 or -1, read from bit k mod
64 of word k div 64, where k = i * d + j (bit set: +1) and word w is the w-th output (from 0)
of the SplitMix64 generator seeded with `seed`: mix(seed + (w + 1) x 0x9E3779B97F4A7C15)
modulo 2^64. Each word is a pure function of its index, so any block of rows is generated
directly from its position (no state to carry, no matrix to ship): two workers, or one worker
with another chunk size, get the same numbers. The words are computed with 64-bit integer
tensor arithmetic on the projection's own device (a GPU generates its chunks itself, which
is what makes a projection of a 7B model's LoRA gradient affordable); integer arithmetic is
exact and wraps modulo 2^64 on every device, so CPU and GPU give the same matrix by construction.

Vectors are projected as sum over row chunks of x[:, chunk] @ P[chunk], scaled by 1/sqrt(d)
(inner products are preserved in expectation); only one chunk exists at a time beyond the
`cache_bytes` of chunks kept between calls.
"""

from __future__ import annotations

import math

import numpy as np

GOLDEN, MIX1, MIX2 = 0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB  # SplitMix64's constants
_MASK = (1 << 64) - 1


def _int64(value: int) -> int:
    """An unsigned 64-bit constant as the int64 with the same bits (tensor arithmetic wraps modulo 2^64)."""
    value &= _MASK
    return value - (1 << 64) if value >= 1 << 63 else value


def _shift_right(z, bits: int):
    return (z >> bits) & ((1 << (64 - bits)) - 1)  # logical: int64 `>>` copies the sign bit


def splitmix64_words(seed: int, first_word: int, n_words: int, device="cpu"):
    """Words [first_word, first_word + n_words) of the seed's SplitMix64 stream, as an int64 tensor."""
    import torch

    z = torch.arange(first_word + 1, first_word + n_words + 1, dtype=torch.int64, device=device)
    z = z * _int64(GOLDEN) + _int64(seed)
    z = (z ^ _shift_right(z, 30)) * _int64(MIX1)
    z = (z ^ _shift_right(z, 27)) * _int64(MIX2)
    return z ^ _shift_right(z, 31)


def rademacher_bits(seed: int, first_row: int, n_rows: int, dim: int, device="cpu"):
    """Rows [first_row, first_row + n_rows) of the seed's matrix as a uint8 tensor of bits (1: +1), (n_rows, dim)."""
    import torch

    first_bit, n_bits = first_row * dim, n_rows * dim
    first_word, skip = divmod(first_bit, 64)
    words = splitmix64_words(seed, first_word, math.ceil((skip + n_bits) / 64), device)
    octets = words.view(torch.uint8)  # little-endian (x86, ARM, GPUs): bits 0-7 of a word come first
    bits = unpack_numpy(octets) if octets.device.type == "cpu" else unpack_torch(octets)
    return bits[skip : skip + n_bits].reshape(n_rows, dim)


def unpack_numpy(octets):
    """uint8 tensor -> its bits, least significant first (NumPy's unpackbits: the fastest on CPU)."""
    import torch

    return torch.from_numpy(np.unpackbits(octets.numpy(), bitorder="little"))


def unpack_torch(octets):
    """The same on any device, in tensor operations."""
    import torch

    shifts = torch.arange(8, dtype=torch.uint8, device=octets.device)
    return ((octets.unsqueeze(1) >> shifts) & 1).reshape(-1)


def rademacher_rows(seed: int, first_row: int, n_rows: int, dim: int, device="cpu"):
    """The same rows as a float32 tensor of +1/-1."""
    import torch

    return rademacher_bits(seed, first_row, n_rows, dim, device).to(torch.float32).mul_(2).sub_(1)


class Projector:
    """Projects (n, D) torch tensors to (n, dim) with the seed's matrix, in chunks of rows."""

    def __init__(self, seed: int, n_features: int, dim: int, rows_per_chunk: int, cache_bytes: int, device="cpu"):
        self.seed, self.n_features, self.dim = seed, n_features, dim
        self.rows_per_chunk, self.cache_bytes, self.device = rows_per_chunk, cache_bytes, device
        self._cache: dict[int, object] = {}
        self._cached_bytes = 0

    def _chunk(self, start: int):
        if start in self._cache:
            return self._cache[start]
        rows = min(self.rows_per_chunk, self.n_features - start)
        chunk = rademacher_rows(self.seed, start, rows, self.dim, self.device)
        size = chunk.numel() * chunk.element_size()
        if self._cached_bytes + size <= self.cache_bytes:
            self._cache[start] = chunk
            self._cached_bytes += size
        return chunk

    def project(self, vectors):
        """(n, D) float tensor -> (n, dim) float32: vectors @ P / sqrt(dim)."""
        import torch

        if vectors.shape[1] != self.n_features:
            raise ValueError(f"vectors have {vectors.shape[1]} features; the projection expects {self.n_features}")
        vectors = vectors.to(device=self.device, dtype=torch.float32)
        out = torch.zeros((vectors.shape[0], self.dim), dtype=torch.float32, device=self.device)
        for start in range(0, self.n_features, self.rows_per_chunk):
            chunk = self._chunk(start)
            out.addmm_(vectors[:, start : start + chunk.shape[0]], chunk)
        return out / math.sqrt(self.dim)
