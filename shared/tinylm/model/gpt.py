"""The GPT: a decoder-only transformer whose every architectural switch is a `GPTConfig` field.

Read top to bottom: config, norms, positional encodings, attention, MLP, block, model (the KV
cache is tinylm.model.cache, the named architectures tinylm.model.presets). Shapes use B (batch), T (new tokens), S (keys visible: cached + new), C (n_embd),
nh (query heads), nkv (key/value heads), hs (head_dim), V (vocab_size).

Positions. Without a cache, token t sits at position t. With a cache, token slot s of row b sits
at position s - pad[b] (rows are left-padded to a common length) and keys at slots < pad[b] are
invisible. Absolute encodings ("learned", "sinusoidal") add an embedding of that position to the
token embedding; "rope" rotates queries and keys by it; the relative encodings only see
differences of slots, which equal differences of positions; "none" (NoPE) has only the causal mask
to go on. Given `positions` (B, T), token t sits at positions[b, t] instead, whatever its slot
(a compacted sequence whose dropped tokens left gaps, see tinylm.studies.forget): absolute encodings and
RoPE use those positions, the relative ones their differences, and the causal mask stays the
slots' order (kept tokens keep their order). The relative encodings, by what they add to the
attention logit of query i and key j (distance d = i - j >= 0):

- "alibi": -m_h * d, a fixed slope per head (Press et al.);
- "t5": b[bucket(d), h], one table of log-spaced distance buckets shared by all layers (Raffel et al.);
- "distance_bias": b_l[h, d], a learned scalar per layer, head and distance, no buckets;
- "relative": q_i . Er_l[d] (scaled by 1/sqrt(hs) with q_i . k_j), Music Transformer relative
  attention (Huang et al. 2018), one learned embedding per layer and distance, shared by the heads;
- "relative_heads": q_i . Er_l[h, d], the same with one table per head.

The tables of the last three cover distances 0..block_size-1; a longer distance (a context longer
than block_size, or a rolling window wider than it) uses the last entry, as the reference
framework's distance bias did (the clipping of Shaw et al.): like T5's last bucket, it means "as far
as block_size - 1 or farther".
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, NamedTuple

import torch
import torch.nn as nn
from torch.nn import functional as F

from tinylm.base.errors import ConfigError
from tinylm.data.batches import IGNORE
from tinylm.model.cache import KVCache
from tinylm.model.optim import adamw

ABSOLUTE_POSITIONS = ("learned", "sinusoidal")
"""Encodings that know only positions < block_size (no rolling window past it)."""
POS_ENCODINGS = ("learned", "sinusoidal", "rope", "alibi", "t5", "distance_bias", "relative", "relative_heads",
                 "none")
LAYER_DISTANCES = ("distance_bias", "relative", "relative_heads")  # each layer applies its own table
NORMS = ("rmsnorm", "layernorm")
FINAL_NORMS = ("rmsnorm", "layernorm", "layernorm_nobias", "none")
MLPS = ("gelu", "silu", "swiglu")


# -----------------------------------------------------------------------------
# Config


@dataclass
class GPTConfig:
    """Architecture of a GPT. The defaults are the reference demo model (1,218,253 parameters)."""

    vocab_size: int = 77
    """Number of token ids (the tokenizer's vocab_size, possibly rounded up)."""
    block_size: int = 128
    """Context length trained on; the largest absolute position for learned/sinusoidal encodings + 1."""
    n_layer: int = 6
    """Number of transformer blocks."""
    n_head: int = 8
    """Number of query heads."""
    n_embd: int = 128
    """Width of the residual stream."""
    n_kv_heads: int | None = None
    """Key/value heads: None = n_head (multi-head), 1 = multi-query, in between = grouped-query."""
    head_dim: int | None = None
    """Width of one head: None = n_embd // n_head; otherwise independent of n_embd."""
    dropout: float = 0.0
    """Dropout on embeddings, attention weights and residual branches (train mode only)."""
    bias: bool = False
    """Biases in the QKV and MLP linear layers and in block LayerNorms."""
    attn_proj_bias: bool | None = None
    """Bias in the attention output projection: None = same as `bias` (the demo model has one)."""
    lm_head_bias: bool = True
    """Bias in the output layer."""
    tie_embeddings: bool = False
    """Share the token embedding matrix with the output layer."""
    pos_encoding: Literal["learned", "sinusoidal", "rope", "alibi", "t5", "distance_bias", "relative",
                          "relative_heads", "none"] = "learned"
    """How the model knows where a token is: absolute "learned" or "sinusoidal" embeddings, "rope",
    relative "alibi", "t5", "distance_bias" (a learned bias per layer, head and distance),
    "relative" (Music Transformer embeddings per layer and distance), "relative_heads" (the same
    per head), or "none". See the module docstring."""
    rope_theta: float = 10000.0
    """RoPE base frequency."""
    t5_num_buckets: int = 32
    """T5 relative bias: number of distance buckets (half exact, half log-spaced)."""
    t5_max_distance: int = 128
    """T5 relative bias: distances beyond this share the last bucket."""
    norm: Literal["rmsnorm", "layernorm"] = "rmsnorm"
    """Norm in front of attention and MLP (pre-norm blocks)."""
    post_attn_norm: bool = False
    """Extra norm on the attention branch's output, before it joins the residual stream."""
    post_mlp_norm: bool = False
    """Extra norm on the MLP branch's output, before it joins the residual stream."""
    final_norm: Literal["rmsnorm", "layernorm", "layernorm_nobias", "none"] = "layernorm_nobias"
    """Norm after the last block."""
    norm_eps: float = 1e-5
    """Epsilon of every norm."""
    mlp: Literal["gelu", "silu", "swiglu"] = "silu"
    """MLP non-linearity; swiglu has a gate and an up projection."""
    mlp_ratio: float = 4.0
    """MLP hidden width = round(mlp_ratio * n_embd)."""

    def validate(self) -> None:
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        choices = {"pos_encoding": POS_ENCODINGS, "norm": NORMS, "final_norm": FINAL_NORMS, "mlp": MLPS}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ConfigError(f"{name} must be one of {list(allowed)}, got {getattr(self, name)!r}")
        if self.head_dim is None and self.n_embd % self.n_head:
            raise ConfigError(
                f"n_head ({self.n_head}) must divide n_embd ({self.n_embd}), or set head_dim explicitly"
            )
        if self.head_dim is not None and self.head_dim < 1:
            raise ConfigError(f"head_dim must be at least 1, got {self.head_dim}")
        kv = self.kv_heads
        if kv < 1 or self.n_head % kv:
            raise ConfigError(f"n_kv_heads ({kv}) must divide n_head ({self.n_head})")
        if self.pos_encoding == "rope" and self.hs % 2:
            raise ConfigError(f"rope needs an even head_dim, got {self.hs}")
        if self.pos_encoding == "sinusoidal" and self.n_embd % 2:
            raise ConfigError(f"sinusoidal positions need an even n_embd, got {self.n_embd}")
        if self.pos_encoding == "t5" and not (2 <= self.t5_num_buckets and
                                               self.t5_max_distance > self.t5_num_buckets // 2):
            raise ConfigError("t5 needs t5_num_buckets >= 2 and t5_max_distance > t5_num_buckets // 2")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")
        if round(self.mlp_ratio * self.n_embd) < 1:
            raise ConfigError(f"mlp_ratio must be positive, got {self.mlp_ratio}")
        if self.norm_eps <= 0:
            raise ConfigError(f"norm_eps must be positive, got {self.norm_eps}")

    @property
    def kv_heads(self) -> int:
        return self.n_head if self.n_kv_heads is None else self.n_kv_heads

    @property
    def hs(self) -> int:
        return self.n_embd // self.n_head if self.head_dim is None else self.head_dim


# -----------------------------------------------------------------------------
# Norms


def make_norm(kind: str, dim: int, eps: float, bias: bool) -> nn.Module:
    if kind == "rmsnorm":
        return nn.RMSNorm(dim, eps=eps)
    if kind == "layernorm":
        return nn.LayerNorm(dim, eps=eps, bias=bias)
    if kind == "layernorm_nobias":
        return nn.LayerNorm(dim, eps=eps, bias=False)
    return nn.Identity()


# -----------------------------------------------------------------------------
# Positional encodings: functions of positions (absolute) or of slot differences (relative)


def sinusoidal_embedding(pos: torch.Tensor, dim: int) -> torch.Tensor:
    """Vaswani et al.: pos (...,) -> (..., dim), sines on even channels, cosines on odd ones."""
    inv_freq = torch.exp(torch.arange(0, dim, 2, device=pos.device) * (-math.log(10000.0) / dim))
    angles = pos.float()[..., None] * inv_freq  # (..., dim/2)
    return torch.stack((angles.sin(), angles.cos()), dim=-1).flatten(-2)


def rope_angles(pos: torch.Tensor, hs: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin of the rotation angles, shaped to broadcast over (B, nh, T, hs/2)."""
    inv_freq = 1.0 / theta ** (torch.arange(0, hs, 2, device=pos.device).float() / hs)
    angles = pos.float()[..., None] * inv_freq  # (T, hs/2) or (B, T, hs/2)
    angles = angles[None, None] if angles.dim() == 2 else angles[:, None]  # (1|B, 1, T, hs/2)
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """Rotate channel pairs (i, i + hs/2) of x (B, n, T, hs) by the position's angles."""
    cos, sin = rope
    x1, x2 = x.float().chunk(2, dim=-1)
    return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1).type_as(x)


def alibi_slopes(n_head: int) -> torch.Tensor:
    """Press et al.: the geometric slopes 2^(-8/n), 2^(-16/n), ...; interleaved when n is not a power of 2."""
    def power_of_2(n):
        return [2 ** (-8 * (i + 1) / n) for i in range(n)]

    closest = 2 ** math.floor(math.log2(n_head))
    slopes = power_of_2(closest) + power_of_2(2 * closest)[0::2][: n_head - closest]
    return torch.tensor(slopes)


def t5_buckets(dist: torch.Tensor, num_buckets: int, max_distance: int) -> torch.Tensor:
    """Raffel et al., causal variant: distance query - key (>= 0) -> bucket id, exact below num_buckets/2."""
    n = dist.clamp(min=0)
    exact = num_buckets // 2
    log_ratio = torch.log(n.clamp(min=exact).float() / exact) / math.log(max_distance / exact)
    large = (exact + (log_ratio * (num_buckets - exact)).long()).clamp(max=num_buckets - 1)
    return torch.where(n < exact, n, large)


class AttnInputs(NamedTuple):
    """What every attention layer needs besides x, computed once per forward."""

    mask: torch.Tensor | None  # None: plain causal; bool (1|B, 1, T, S); or float additive (1|B, nh, T, S)
    rope: tuple[torch.Tensor, torch.Tensor] | None  # cos, sin (1|B, 1, T, hs/2)
    dist: torch.Tensor | None  # (T, S) query slot - key slot, or (B, T, S) position differences, for LAYER_DISTANCES
    skew: bool  # relative embeddings may use the skewing trick (no cache: S == T, dist = i - j)
    key_bias: torch.Tensor | None = None  # (B, 1, 1, S) added to every query's logit of each key


def add_key_bias(mask: torch.Tensor | None, ctx: AttnInputs, T: int, S: int, device) -> torch.Tensor | None:
    """The attention mask with ctx.key_bias added: float (B|1, nh|1, T, S), -inf where not visible."""
    if ctx.key_bias is None:
        return mask
    if mask is None or not mask.is_floating_point():
        visible = CausalSelfAttention.visible(ctx._replace(mask=mask), T, S, device)
        mask = torch.zeros(visible.shape, device=device).masked_fill(~visible, float("-inf"))
    return mask + ctx.key_bias.to(mask.dtype)


# -----------------------------------------------------------------------------
# Attention


class CausalSelfAttention(nn.Module):
    """Multi-head, grouped-query (nkv < nh) or multi-query (nkv = 1) attention with one fused QKV matmul."""

    def __init__(self, config: GPTConfig, layer: int):
        super().__init__()
        self.layer = layer
        self.nh, self.nkv, self.hs = config.n_head, config.kv_heads, config.hs
        proj_bias = config.bias if config.attn_proj_bias is None else config.attn_proj_bias
        # output features: nh query heads, then nkv key heads, then nkv value heads
        self.qkv = nn.Linear(config.n_embd, (self.nh + 2 * self.nkv) * self.hs, bias=config.bias)
        self.proj = nn.Linear(self.nh * self.hs, config.n_embd, bias=proj_bias)
        self.proj.residual = True  # scaled init
        self.dropout = config.dropout
        self.resid_dropout = nn.Dropout(config.dropout)
        self.probs: torch.Tensor | None = None  # (B, nh, T, S) of the last forward, while recording
        self.recording = False                  # see GPT.forward_with_attention
        if config.pos_encoding == "relative":
            # Music Transformer: one learned embedding per distance 0..block_size-1, shared by the heads
            self.Er = nn.Parameter(torch.zeros(config.block_size, self.hs))  # (L, hs)
        elif config.pos_encoding == "relative_heads":  # the same, one table per query head
            self.Er = nn.Parameter(torch.zeros(self.nh, config.block_size, self.hs))  # (nh, L, hs)
        elif config.pos_encoding == "distance_bias":
            # one learned logit bias per head and distance 0..block_size-1; zeros at first, as in the reference
            self.dist_bias = nn.Parameter(torch.zeros(self.nh, config.block_size))  # (nh, L)

    def forward(self, x: torch.Tensor, ctx: AttnInputs, cache: KVCache | None = None,
                last: bool = False) -> torch.Tensor:
        """(B, T, C) -> (B, T, C); with `last`, only the last query: (B, 1, C)."""
        B, T, _ = x.size()
        q, k, v = self.qkv(x).split([self.nh * self.hs, self.nkv * self.hs, self.nkv * self.hs], dim=-1)
        q = q.view(B, T, self.nh, self.hs).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, self.nkv, self.hs).transpose(1, 2)  # (B, nkv, T, hs)
        v = v.view(B, T, self.nkv, self.hs).transpose(1, 2)  # (B, nkv, T, hs)
        if ctx.rope is not None:
            q, k = apply_rope(q, ctx.rope), apply_rope(k, ctx.rope)
        if cache is not None:
            k, v = cache.update(self.layer, k, v)  # (B, nkv, S, hs)
        if last:  # the last query alone, with the last row of the mask
            q, T = q[:, :, -1:], 1
            mask = None if ctx.mask is None else ctx.mask[..., -1:, :]
            dist = None if ctx.dist is None else ctx.dist[..., -1:, :]
            if mask is None and dist is None:  # it sees every key (is_causal would show it only the first)
                mask = torch.ones(1, 1, 1, k.size(2), dtype=torch.bool, device=q.device)
            ctx = AttnInputs(mask, None, dist, skew=False, key_bias=ctx.key_bias)
        if self.nkv != self.nh:  # each key/value head serves nh // nkv query heads
            k = k.repeat_interleave(self.nh // self.nkv, dim=1)  # (B, nh, S, hs)
            v = v.repeat_interleave(self.nh // self.nkv, dim=1)
        dropout_p = self.dropout if self.training else 0.0
        if hasattr(self, "Er"):
            y = self.relative_attention(q, k, v, ctx, dropout_p)
        else:
            mask = ctx.mask if ctx.dist is None else self.distance_mask(ctx, T, k.size(2))
            mask = add_key_bias(mask, ctx, T, k.size(2), q.device)
            if mask is not None and mask.is_floating_point():
                mask = mask.to(q.dtype)
            if self.recording:
                y = self.explicit_attention(q, k, v, mask)
            else:
                y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p,
                                                   is_causal=mask is None)  # (B, nh, T, hs)
        y = y.transpose(1, 2).reshape(B, T, self.nh * self.hs)
        return self.resid_dropout(self.proj(y))

    def explicit_attention(self, q, k, v, mask: torch.Tensor | None) -> torch.Tensor:
        """What scaled_dot_product_attention computes (no dropout: recording is for inference), with
        the probabilities kept in self.probs: a boolean mask says which keys are seen, a float one
        is added to the scores, None is causal from the first key (SDPA's is_causal)."""
        T, S = q.size(2), k.size(2)
        att = (q @ k.transpose(-2, -1)).float() * (1.0 / math.sqrt(self.hs))  # (B, nh, T, S)
        if mask is None:
            mask = torch.ones(T, S, dtype=torch.bool, device=q.device).tril()
        att = att.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else att + mask.float()
        self.probs = F.softmax(att, dim=-1)
        return self.probs.to(v.dtype) @ v  # (B, nh, T, hs)

    @staticmethod
    def visible(ctx: AttnInputs, T: int, S: int, device) -> torch.Tensor:
        """Which keys each query sees: ctx.mask, or the causal mask of the last T of S slots (T, S)."""
        if ctx.mask is not None:
            return ctx.mask
        return torch.ones(T, S, dtype=torch.bool, device=device).tril(S - T)

    def distance_mask(self, ctx: AttnInputs, T: int, S: int) -> torch.Tensor:
        """Additive mask (1|B, nh, T, S): each head's bias for the distance, -inf where a key is not visible."""
        L = self.dist_bias.size(1)
        bias = self.dist_bias[:, ctx.dist.clamp(0, L - 1)]  # (nh, [B,] T, S); far distances take the last entry
        bias = bias[None] if ctx.dist.dim() == 2 else bias.transpose(0, 1)  # (1|B, nh, T, S)
        return bias.masked_fill(~self.visible(ctx, T, S, bias.device), float("-inf"))

    def relative_attention(self, q, k, v, ctx: AttnInputs, dropout_p: float) -> torch.Tensor:
        """softmax((q k^T + S_rel) / sqrt(hs)) v, with S_rel[i, j] = q_i . Er[i - j] (Huang et al. 2018);
        Er is (L, hs), shared by the heads, or (nh, L, hs), one table per head."""
        T, S, L = q.size(2), k.size(2), self.Er.size(-2)
        if ctx.skew:
            # skewing: q against Er for distances T-1..0, pad one column left, fold, drop the first row
            Er = self.Er[..., (T - 1 - torch.arange(T, device=q.device)).clamp(max=L - 1), :]  # ([nh,] T, hs)
            qe = q @ Er.transpose(-2, -1).to(q.dtype)  # (B, nh, T, T); column c <-> distance T-1-c
            srel = F.pad(qe, (1, 0)).view(*qe.shape[:2], T + 1, T)[:, :, 1:]  # (B, nh, T, T)
        else:
            qe = q @ self.Er.transpose(-2, -1).to(q.dtype)  # (B, nh, T, L); column d <-> distance d
            dist = ctx.dist if ctx.dist.dim() == 2 else ctx.dist[:, None]  # (T, S) or (B, 1, T, S)
            idx = dist.clamp(0, L - 1).expand(*qe.shape[:2], T, S)  # (B, nh, T, S)
            srel = qe.gather(-1, idx)
        att = (q @ k.transpose(-2, -1) + srel) * (1.0 / math.sqrt(self.hs))  # (B, nh, T, S)
        if ctx.key_bias is not None:
            att = att + ctx.key_bias.to(att.dtype)
        att = att.masked_fill(~self.visible(ctx, T, S, q.device), float("-inf"))
        att = F.dropout(F.softmax(att, dim=-1), p=dropout_p, training=dropout_p > 0)
        if self.recording:
            self.probs = att
        return att @ v  # (B, nh, T, hs)


# -----------------------------------------------------------------------------
# MLP and block


class MLP(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        hidden = round(config.mlp_ratio * config.n_embd)
        self.kind = config.mlp
        n_in = 2 * hidden if config.mlp == "swiglu" else hidden  # swiglu: gate and up, fused
        self.fc = nn.Linear(config.n_embd, n_in, bias=config.bias)
        self.proj = nn.Linear(hidden, config.n_embd, bias=config.bias)
        self.proj.residual = True
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc(x)  # (B, T, hidden) or (B, T, 2 * hidden)
        if self.kind == "swiglu":
            gate, up = h.chunk(2, dim=-1)
            h = F.silu(gate) * up
        elif self.kind == "silu":
            h = F.silu(h)
        else:
            h = F.gelu(h)
        return self.dropout(self.proj(h))


class Block(nn.Module):
    """Pre-norm block: x + attn(norm(x)), then x + mlp(norm(x)); optional norms on each branch's output."""

    def __init__(self, config: GPTConfig, layer: int):
        super().__init__()

        def norm():
            return make_norm(config.norm, config.n_embd, config.norm_eps, config.bias)

        self.norm1 = norm()
        self.attn = CausalSelfAttention(config, layer)
        self.norm2 = norm()
        self.mlp = MLP(config)
        self.post_attn_norm = norm() if config.post_attn_norm else nn.Identity()
        self.post_mlp_norm = norm() if config.post_mlp_norm else nn.Identity()

    def forward(self, x: torch.Tensor, ctx: AttnInputs, cache: KVCache | None = None,
                last: bool = False) -> torch.Tensor:
        h = self.attn(self.norm1(x), ctx, cache, last)
        x = x[:, -1:] + self.post_attn_norm(h) if last else x + self.post_attn_norm(h)
        x = x + self.post_mlp_norm(self.mlp(self.norm2(x)))
        return x


# -----------------------------------------------------------------------------
# The model


def lm_loss(logits: torch.Tensor, targets: torch.Tensor, reduction: str = "sum") -> torch.Tensor:
    """The language-model loss, the one place it is computed: cross-entropy of logits (B, T, V), in
    float32, against targets (B, T), skipping targets equal to IGNORE. reduction "sum" or "mean" over
    the counted targets, or "none": (B, T) with 0 where a target is skipped."""
    losses = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), ignore_index=IGNORE,
                             reduction=reduction)
    return losses.view(targets.shape) if reduction == "none" else losses


class GPT(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        config.validate()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        if config.pos_encoding == "learned":
            self.wpe = nn.Embedding(config.block_size, config.n_embd)
        if config.pos_encoding == "t5":  # one bucketed bias table shared by all layers, as in T5
            self.rel_bias = nn.Embedding(config.t5_num_buckets, config.n_head)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config, i) for i in range(config.n_layer))
        self.ln_f = make_norm(config.final_norm, config.n_embd, config.norm_eps, bias=True)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=config.lm_head_bias)
        if config.tie_embeddings:
            self.lm_head.weight = self.wte.weight
        self.apply(self._init_weights)

    def _init_weights(self, module: nn.Module) -> None:
        # nanoGPT: N(0, 0.02) everywhere, residual projections scaled by 1/sqrt(2 * n_layer)
        if isinstance(module, nn.Linear):
            std = 0.02 / math.sqrt(2 * self.config.n_layer) if getattr(module, "residual", False) else 0.02
            nn.init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        elif isinstance(module, CausalSelfAttention) and hasattr(module, "Er"):
            nn.init.normal_(module.Er, mean=0.0, std=0.02)

    def num_params(self, non_embedding: bool = False) -> int:
        """Parameter count (tied weights once); non_embedding drops the position embedding table."""
        n = sum(p.numel() for p in self.parameters())
        if non_embedding and hasattr(self, "wpe"):
            n -= self.wpe.weight.numel()
        return n

    def new_cache(self, batch_size: int, max_len: int, device=None, dtype=None) -> KVCache:
        """An empty KVCache for `batch_size` rows of up to `max_len` slots, on the model's device/dtype."""
        p = self.wte.weight
        c = self.config
        return KVCache(c.n_layer, batch_size, c.kv_heads, max_len, c.hs,
                       device=p.device if device is None else device, dtype=p.dtype if dtype is None else dtype)

    @torch.no_grad()
    def forward_with_attention(self, idx: torch.Tensor, **kwargs) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """logits (B, T, V) of `forward(idx, **kwargs)` and every layer's attention probabilities
        (B, nh, T, S), each row summing to 1 over the keys it sees. The layers compute attention
        explicitly for this call (the same outputs as the fused kernel, to float rounding); the
        usual forward stays on scaled_dot_product_attention."""
        layers = [block.attn for block in self.blocks]
        for attn in layers:
            attn.recording = True
        try:
            logits = self(idx, **kwargs)[0]
            return logits, [attn.probs for attn in layers]
        finally:
            for attn in layers:
                attn.recording, attn.probs = False, None

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None,
                loss_mask: torch.Tensor | None = None, *, cache: KVCache | None = None, last: bool = False,
                window: int | None = None, positions: torch.Tensor | None = None,
                key_bias: torch.Tensor | None = None):
        """idx (B, T) -> logits (B, T, V) and the mean cross-entropy over the kept targets (or None).

        A target is kept unless it is -100 or loss_mask (B, T) is false there. With a cache, idx
        fills slots [cache.length, cache.length + T) and cache.length advances by T. `last`
        (decoding): logits (B, 1, V) of the last position only; the final block computes keys and
        values for every position (and caches them) but queries, MLP and output layer for the last.
        `window`: sliding-window attention, every query sees only the last `window` slots (itself
        included), in every layer. `positions` (B, T): each token's position (see the module
        docstring), kept in the cache for later forwards. `key_bias` (B, S): added to the
        attention logit of every query for each key, in every layer (S: cached + new slots).
        """
        B, T = idx.size()
        start = 0 if cache is None else cache.length
        if cache is not None and start + T > cache.max_len:
            raise ValueError(f"KV cache holds {cache.max_len} slots; {start} filled, {T} more requested")
        slots = torch.arange(start, start + T, device=idx.device)  # (T,)
        if positions is not None:
            pos = positions  # (B, T)
            if cache is not None:
                cache.pos[:, start:start + T] = positions
        else:
            pos = slots if cache is None else (slots[None] - cache.pad[:, None]).clamp(min=0)  # (T,) or (B, T)
        self._check_positions(start + T if positions is None else None, pos)

        x = self.wte(idx)  # (B, T, C)
        if self.config.pos_encoding == "learned":
            x = x + self.wpe(pos)
        elif self.config.pos_encoding == "sinusoidal":
            x = x + sinusoidal_embedding(pos, self.config.n_embd).to(x.dtype)
        x = self.drop(x)

        ctx = self.attention_inputs(slots, start + T, pos, cache, window, positions is not None)
        if key_bias is not None:
            ctx = ctx._replace(key_bias=key_bias[:, None, None, :])  # (B, 1, 1, S)
        for i, block in enumerate(self.blocks):
            x = block(x, ctx, cache, last=last and i == len(self.blocks) - 1)
        if cache is not None:
            cache.length = start + T
        logits = self.lm_head(self.ln_f(x))  # (B, T, V)

        loss = None
        if targets is not None:
            if loss_mask is not None:
                targets = targets.masked_fill(~loss_mask.bool(), IGNORE)
            loss = lm_loss(logits, targets, reduction="mean")
        return logits, loss

    def _check_positions(self, end: int | None, pos: torch.Tensor) -> None:
        """Absolute encodings only know positions < block_size (checked without a sync when the
        last slot `end` bounds them; None: explicit positions, always checked)."""
        if self.config.pos_encoding not in ABSOLUTE_POSITIONS or (end is not None and end <= self.config.block_size):
            return
        if int(pos.max()) >= self.config.block_size:
            raise ValueError(
                f"position {int(pos.max())} is beyond block_size {self.config.block_size} "
                f"({self.config.pos_encoding} positions)"
            )

    def attention_inputs(self, slots: torch.Tensor, S: int, pos: torch.Tensor, cache: KVCache | None,
                         window: int | None = None, explicit: bool = False) -> AttnInputs:
        """Mask, RoPE angles and distances for this forward (S keys), shared by all layers; with
        `explicit` positions pos (B, T), distances are position differences (B, T, S)."""
        c = self.config
        keys = torch.arange(S, device=slots.device)  # (S,)
        slot_dist = slots[:, None] - keys[None, :]  # (T, S) query slot - key slot
        dist = slot_dist
        if explicit:
            key_pos = pos if cache is None else cache.pos[:, :S]  # (B, S)
            dist = pos[:, :, None] - key_pos[:, None, :]  # (B, T, S)
        mask = None
        causal = slot_dist >= 0 if window is None else (slot_dist >= 0) & (slot_dist < window)  # (T, S)
        if cache is not None:
            # visible: not in the future, and not padding (a padding slot sees itself, to keep softmax finite)
            not_pad = keys[None, :] >= cache.pad[:, None]  # (B, S)
            mask = causal[None] & (not_pad[:, None, :] | (slot_dist == 0)[None])  # (B, T, S)
            mask = mask[:, None]  # (B, 1, T, S)
        elif window is not None:
            mask = causal[None, None]  # (1, 1, T, S)
        rope = rope_angles(pos, c.hs, c.rope_theta) if c.pos_encoding == "rope" else None
        if c.pos_encoding in ("alibi", "t5"):
            if c.pos_encoding == "alibi":
                slopes = alibi_slopes(c.n_head).to(dist.device)  # (nh,)
                bias = -slopes[:, None, None] * dist.clamp(min=0).unsqueeze(-3)  # ([B,] nh, T, S)
            else:
                buckets = t5_buckets(dist, c.t5_num_buckets, c.t5_max_distance)  # ([B,] T, S)
                bias = self.rel_bias(buckets).movedim(-1, -3)  # ([B,] nh, T, S)
            visible = causal[None, None] if mask is None else mask
            mask = (bias if explicit else bias[None]).masked_fill(~visible, float("-inf"))  # (1|B, nh, T, S)
        if c.pos_encoding in LAYER_DISTANCES:
            return AttnInputs(mask, None, dist, skew=cache is None and not explicit)
        return AttnInputs(mask, rope, None, skew=False)

    # -------------------------------------------------------------------------
    # Training helpers

    def configure_optimizer(self, weight_decay: float, lr: float, betas: tuple[float, float],
                            device_type: str) -> torch.optim.AdamW:
        """AdamW; weight decay on matrices and embeddings (>= 2-D) only; fused kernel on CUDA."""
        return adamw([p for p in self.parameters() if p.requires_grad], lr, weight_decay, betas, device_type)

    def estimate_flops_per_token(self, seq_len: int | None = None) -> float:
        """Training FLOPs per token (forward + backward), PaLM appendix B: 6N + 12 L nh hs T."""
        c = self.config
        T = c.block_size if seq_len is None else seq_len
        return 6 * self.num_params(non_embedding=True) + 12 * c.n_layer * c.n_head * c.hs * T
