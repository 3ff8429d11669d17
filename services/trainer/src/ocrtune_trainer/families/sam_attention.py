"""SAM attention with its relative-position bias folded into the query and key (DeepSeek-OCR-2's vision tower).

Upstream behaviour this works around: transformers' ``DeepseekOcr2SamVisionSdpaAttention`` (and the
eager class) adds SAM's decomposed relative-position bias as a dense ``attn_mask`` of shape
(images, heads, N, N), N = 4096 patches of a 1024 px view in the global-attention layers. SDPA has
no flash kernel for an arbitrary mask, so each view costs ~0.4 GB of bias plus the unfused kernel's
work space: training micro-batches of 8 lines peaked 4.8 GiB above micro-batches of 2 (H200,
2026-12-06; ``docs/gpu-machine.md``). The original SAM code (segment-anything's ``add_decomposed_rel_pos``)
materialises the same tensor; vLLM's DeepEncoder too.

The bias is a sum of two low-rank terms, ``rel_h[q, row(k)] + rel_w[q, col(k)]``, so it is exactly
one more dot product: append ``rel_h`` and ``rel_w`` to each query and the one-hot row and column
of each key to the key, and ``q'·k' = scale·q·k + rel_h + rel_w``. The attention then has no mask
(head dim 64 + 64 + 64 = 192 in the global layers, within FlashAttention's 256) and runs fused,
in memory linear in N. Same result (tested against transformers' own forward); autograd works
through it, though the trainer runs the frozen tower without (``frozen_vision``).
"""

from __future__ import annotations

import types
from typing import Any

import torch
import torch.nn.functional as F

SAM_ATTENTION_CLASSES = ("DeepseekOcr2SamVisionAttention", "DeepseekOcr2SamVisionSdpaAttention")


def fold_relative_position_bias(model: Any) -> int:
    """Replace the forward of every SAM attention with relative positions in ``model``; returns how many."""
    count = 0
    for module in model.modules():
        if type(module).__name__ in SAM_ATTENTION_CLASSES and getattr(module, "use_rel_pos", False):
            module.forward = types.MethodType(folded_forward, module)
            count += 1
    return count


def folded_forward(self: Any, hidden_states: torch.Tensor, output_attentions: bool = False) -> tuple[torch.Tensor, None]:
    """transformers' SAM attention forward (same inputs and outputs), without a materialised bias."""
    batch, height, width, _ = hidden_states.shape
    heads, tokens = self.num_attention_heads, height * width
    qkv = self.qkv(hidden_states).reshape(batch, tokens, 3, heads, -1).permute(2, 0, 3, 1, 4)
    query, key, value = qkv.unbind(0)  # (batch, heads, tokens, head_dim)
    head_dim = query.shape[-1]

    grid = query.reshape(batch, heads, height, width, head_dim)
    rel_h = torch.einsum("bnhwc,hkc->bnhwk", grid, self.get_rel_pos(height, height, self.rel_pos_h))
    rel_w = torch.einsum("bnhwc,wkc->bnhwk", grid, self.get_rel_pos(width, width, self.rel_pos_w))
    rows = torch.arange(height, device=query.device).repeat_interleave(width)
    cols = torch.arange(width, device=query.device).repeat(height)
    key_rows = F.one_hot(rows, height).to(query.dtype).expand(batch, heads, tokens, height)
    key_cols = F.one_hot(cols, width).to(query.dtype).expand(batch, heads, tokens, width)

    extra = height + width
    # Fused kernels want one head dim for q, k and v, a multiple of 8: zeros change no dot product.
    pad = -(head_dim + extra) % 8
    query = torch.cat([query * self.scale, rel_h.reshape(batch, heads, tokens, height),
                       rel_w.reshape(batch, heads, tokens, width)], dim=-1)
    key = torch.cat([key, key_rows, key_cols], dim=-1)
    query, key = F.pad(query, (0, pad)), F.pad(key, (0, pad))
    value = F.pad(value, (0, extra + pad))
    dropout = self.dropout if self.training else 0.0
    out = F.scaled_dot_product_attention(query, key, value, dropout_p=dropout, scale=1.0)[..., :head_dim]
    out = out.reshape(batch, heads, height, width, head_dim).permute(0, 2, 3, 1, 4).reshape(batch, height, width, -1)
    return self.proj(out), None
