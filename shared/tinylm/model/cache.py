"""The KV cache: the decoding state a caller owns and `GPT.forward` fills, with the slot moves a
decoder makes on it (tinylm.decode.decoder)."""

from __future__ import annotations

import torch


class KVCache:
    """Per-layer key/value buffers for incremental decoding.

    k[l], v[l]: (B, nkv, max_len, hs). Slots [0, length) are filled. Row b is left-padded by
    pad[b] slots: the token in slot s has position s - pad[b], and slots < pad[b] are never
    attended to. Keys are stored after RoPE, so a slot's key never changes. pos (B, max_len): the
    positions the forwards gave explicitly (`positions`), which the relative encodings then read.
    """

    def __init__(self, n_layer: int, batch_size: int, n_kv_heads: int, max_len: int, head_dim: int,
                 device=None, dtype=None):
        shape = (batch_size, n_kv_heads, max_len, head_dim)
        self.k = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(n_layer)]
        self.v = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(n_layer)]
        self.length = 0
        self.pad = torch.zeros(batch_size, dtype=torch.long, device=device)  # (B,)
        self.pos = torch.zeros(batch_size, max_len, dtype=torch.long, device=device)  # (B, max_len)

    @property
    def batch_size(self) -> int:
        return self.k[0].size(0)

    @property
    def max_len(self) -> int:
        return self.k[0].size(2)

    def reorder(self, index: torch.Tensor) -> None:
        """Keep rows `index` (B',) in that order, e.g. the surviving beams; B' may differ from B."""
        self.k = [k.index_select(0, index) for k in self.k]
        self.v = [v.index_select(0, index) for v in self.v]
        self.pad = self.pad.index_select(0, index)
        self.pos = self.pos.index_select(0, index)

    def _buffers(self) -> list[torch.Tensor]:
        """Every per-slot buffer, slots along dim 2 (pos: (B, 1, max_len) view)."""
        return [*self.k, *self.v, self.pos[:, None]]

    def shift_rows(self, by: torch.Tensor) -> None:
        """Move each row b's filled slots right by by[b] (B,), dropping its last by[b] slots; the kept
        slots' positions (slot - pad) do not change. (A rolling window's row may have pad < 0: its
        first by[b] slots then keep stale keys, more than a window before any later query.)"""
        for n in by[by > 0].unique().tolist():
            rows = (by == n).nonzero().flatten()
            lo, end = max(int(self.pad[rows].min()), 0), self.length
            for buf in self._buffers():
                buf[rows, :, lo + n:end] = buf[rows, :, lo:end - n]
        self.pad = self.pad + by

    def drop_leading(self, m: int) -> None:
        """Drop the first m slots of every row, moving the rest to the front (positions unchanged;
        a row's pad may become negative)."""
        n = self.length - m
        for buf in self._buffers():
            buf[:, :, :n] = buf[:, :, m:self.length].clone()
        self.pad = self.pad - m
        self.length = n

    def grow_left(self, length: int) -> None:
        """Fill `length` slots, moving every row's slots right to make room (positions unchanged)."""
        d = length - self.length
        for buf in self._buffers():
            buf[:, :, d:d + self.length] = buf[:, :, :self.length].clone()
        self.pad = self.pad + d
        self.length = length

    def copy_rows(self, rows: torch.Tensor, src: KVCache, lo: int, hi: int) -> None:
        """Rows `rows` take src's slots [lo, hi) of its rows (in order), ending at slot `length`."""
        end = self.length
        for dst, s in zip(self._buffers(), src._buffers()):
            dst[rows, :, end - (hi - lo):end] = s[:, :, lo:hi]

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Write k, v (B, nkv, T, hs) at slots [length, length+T); return all filled slots (B, nkv, S, hs)."""
        end = self.length + k.size(2)
        self.k[layer][:, :, self.length:end] = k
        self.v[layer][:, :, self.length:end] = v
        return self.k[layer][:, :, :end], self.v[layer][:, :, :end]
