"""VAE decoding in bounded memory: chunks in time and, for large frames, tiles in space.

Both VAEs decode a clip as a stream of pieces (`decode_chunks`: a few latent frames' worth of
video at a time, continuing causally), so the decoder's working memory follows the chunk, not the
clip. For large frames, `decode_pieces` also cuts the latents into overlapping square tiles, runs
one stream per tile and blends every piece's tiles with linear ramps across the overlaps (the
weights are normalised, so any overlap pattern sums to one). A tile's stream keeps only its
causal state between pieces, so peak memory is one tile's activations plus one piece of video,
whatever the clip's length and size. The blend is an approximation at the seams (each tile sees
only its own neighbourhood); `overlap` latent pixels of shared context keep the difference
small (tests/test_wan_speed_cache.py measures it).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

DEFAULT_OVERLAP = 4  # latent pixels shared by neighbouring tiles


def tile_starts(size: int, tile: int, overlap: int) -> list[int]:
    """Starts of tiles of `tile` covering [0, size) with at least `overlap` shared between
    neighbours; the last tile ends at size."""
    if size <= tile:
        return [0]
    stride = tile - overlap
    starts = list(range(0, size - tile + 1, stride))
    if starts[-1] + tile < size:
        starts.append(size - tile)
    return starts


def _ramp(length: int, start: int, tile: int, starts: list[int], scale: int) -> torch.Tensor:
    """Blend weight along one axis of one tile, in pixels: rising over the overlap with the tile
    before, falling over the overlap with the tile after, 1 elsewhere (and at the clip's edges)."""
    w = torch.ones(tile * scale)
    i = starts.index(start)
    if i > 0:
        shared = (starts[i - 1] + tile - start) * scale
        w[:shared] = torch.minimum(w[:shared], (torch.arange(shared) + 0.5) / shared)
    if i < len(starts) - 1:
        shared = (start + tile - starts[i + 1]) * scale
        w[-shared:] = torch.minimum(w[-shared:], (shared - torch.arange(shared) - 0.5) / shared)
    return w


def decode_pieces(
    vae, z: torch.Tensor, tile: int | None = None, overlap: int = DEFAULT_OVERLAP
) -> Iterator[torch.Tensor]:
    """Latents (B, C, T', h, w) in the VAE's own scale -> decoded video (B, 3, t, H, W) piece by
    piece, in order (their concatenation is the clip). tile: side of the spatial tiles in latent
    pixels; None, or frames that fit in one tile: whole frames (equal to vae.decode_chunked)."""
    _, _, _, h, w = z.shape
    if tile is None or (h <= tile and w <= tile):
        yield from vae.decode_chunks(z)
        return
    if not 0 <= overlap < tile / 2:
        raise ValueError(f"tile overlap must be 0 or more and under half the tile, got {overlap}")
    sf = vae.cfg.spatial_factor
    ys, xs = tile_starts(h, tile, overlap), tile_starts(w, tile, overlap)
    th, tw = min(tile, h), min(tile, w)
    tiles = []
    total = torch.zeros(h * sf, w * sf, device=z.device)
    for y in ys:
        for x in xs:
            weight = _ramp(h, y, th, ys, sf)[:, None] * _ramp(w, x, tw, xs, sf)[None, :]
            weight = weight.to(z.device)
            total[y * sf : (y + th) * sf, x * sf : (x + tw) * sf] += weight
            stream = vae.decode_chunks(z[:, :, :, y : y + th, x : x + tw])
            tiles.append((y * sf, x * sf, weight, stream))
    while True:
        out = None
        for y, x, weight, stream in tiles:
            piece = next(stream, None)  # (B, 3, t, th * sf, tw * sf)
            if piece is None:
                return
            if out is None:
                out = piece.new_zeros(*piece.shape[:3], h * sf, w * sf)
            out[..., y : y + piece.shape[3], x : x + piece.shape[4]] += piece * weight
        yield out / total
