"""Transformer denoiser (DP-T, Chi et al. 2023, Sec. III-B).

Noisy actions become T tokens; a decoder runs causal self-attention over them and
cross-attention to the condition tokens: one diffusion-step token followed by To observation
tokens. Masks keep action i from attending to later actions or to observations after step i,
as in the paper's time-causal variant; the authors report it works better for tasks whose
actions change fast.

Shapes: B batch, T horizon, Da action dim, To obs steps, F obs feature per step, E n_emb.
"""

from __future__ import annotations

import torch
from torch import nn

from dp_ros.policy.config import TransformerConfig
from dp_ros.policy.unet import SinusoidalEmbedding


def causal_mask(T: int, device: torch.device | None = None) -> torch.Tensor:
    """(T, T) additive mask: token i sees tokens j <= i."""
    allowed = torch.ones(T, T, dtype=torch.bool, device=device).tril()
    return torch.zeros(T, T, device=device).masked_fill(~allowed, float("-inf"))


def memory_mask(T: int, To: int, device: torch.device | None = None) -> torch.Tensor:
    """(T, 1 + To) additive mask: action i sees the step token and obs steps j <= i."""
    action = torch.arange(T, device=device)[:, None]
    cond = torch.arange(1 + To, device=device)[None, :]
    allowed = action >= cond - 1  # cond token 0 is the step token, token j+1 is obs step j
    return torch.zeros(T, 1 + To, device=device).masked_fill(~allowed, float("-inf"))


class TransformerDenoiser(nn.Module):
    """Noisy actions (B, T, Da), step (B,), obs tokens (B, To, F) -> noise estimate (B, T, Da)."""

    def __init__(
        self, action_dim: int, obs_feature_dim: int, horizon: int, n_obs_steps: int,
        cfg: TransformerConfig,
    ) -> None:  # fmt: skip
        super().__init__()
        E = cfg.n_emb
        self.horizon, self.n_obs_steps, self.causal = horizon, n_obs_steps, cfg.causal_attn
        self.action_embedding = nn.Linear(action_dim, E)
        self.action_position = nn.Parameter(torch.zeros(1, horizon, E))
        self.step_embedding = SinusoidalEmbedding(E)
        self.obs_embedding = nn.Linear(obs_feature_dim, E)
        self.cond_position = nn.Parameter(torch.zeros(1, 1 + n_obs_steps, E))
        self.dropout = nn.Dropout(cfg.p_drop_emb)
        self.cond_encoder = self._cond_encoder(cfg)
        layer = nn.TransformerDecoderLayer(
            d_model=E,
            nhead=cfg.n_head,
            dim_feedforward=4 * E,
            dropout=cfg.p_drop_attn,
            activation="gelu",
            batch_first=True,
            norm_first=True,  # pre-norm trains stably without warm-up tricks
        )
        self.decoder = nn.TransformerDecoder(layer, num_layers=cfg.n_layer)
        self.final_norm = nn.LayerNorm(E)
        self.head = nn.Linear(E, action_dim)
        self.apply(_init_weights)
        nn.init.normal_(self.action_position, std=0.02)
        nn.init.normal_(self.cond_position, std=0.02)

    @staticmethod
    def _cond_encoder(cfg: TransformerConfig) -> nn.Module:
        E = cfg.n_emb
        if cfg.n_cond_layers == 0:
            return nn.Sequential(nn.Linear(E, 4 * E), nn.Mish(), nn.Linear(4 * E, E))
        layer = nn.TransformerEncoderLayer(
            d_model=E, nhead=cfg.n_head, dim_feedforward=4 * E, dropout=cfg.p_drop_attn,
            activation="gelu", batch_first=True, norm_first=True,
        )  # fmt: skip
        return nn.TransformerEncoder(
            layer, num_layers=cfg.n_cond_layers, enable_nested_tensor=False
        )

    def forward(
        self, sample: torch.Tensor, timestep: torch.Tensor, obs_tokens: torch.Tensor
    ) -> torch.Tensor:
        B, T, _ = sample.shape
        dtype = self.final_norm.weight.dtype  # a LayerNorm's: matmul_layers keeps those
        steps = torch.as_tensor(timestep, device=sample.device).reshape(-1).expand(B)
        step_token = self.step_embedding(steps).to(dtype)[:, None, :]  # (B, 1, E)
        cond = torch.cat([step_token, self.obs_embedding(obs_tokens.to(dtype))], dim=1)
        memory = self.cond_encoder(self.dropout(cond + self.cond_position))
        x = self.dropout(self.action_embedding(sample.to(dtype)) + self.action_position[:, :T])
        tgt_mask = mem_mask = None
        if self.causal:
            tgt_mask = causal_mask(T, sample.device).to(dtype)
            mem_mask = memory_mask(T, cond.shape[1] - 1, sample.device).to(dtype)
        x = self.decoder(x, memory, tgt_mask=tgt_mask, memory_mask=mem_mask)
        return self.head(self.final_norm(x)).to(sample.dtype)

    def weight_decay_split(self) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
        """(decayed, not decayed) parameters, as the reference implementation groups them:
        weight matrices of linear and attention layers decay; biases, LayerNorms and the
        position embeddings do not."""
        decayed, kept = [], []
        for module in self.modules():
            for name, parameter in module.named_parameters(recurse=False):
                matrix = name.endswith("weight") and isinstance(
                    module, (nn.Linear, nn.MultiheadAttention)
                )
                (decayed if matrix else kept).append(parameter)
        return decayed, kept


def _init_weights(module: nn.Module) -> None:
    # Small normal init for projections, as GPT-style models use; LayerNorm keeps its defaults.
    if isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
