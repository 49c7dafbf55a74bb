"""The transformer: nanoGPT's decoder (the paper's ChessFormer), with a KV-cached path for export.

Parameter names match nanoGPT's, so a released ``ckpt.pt`` state dict loads without renaming.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn as nn
from torch.nn import functional as F

from transcend.engine.features import NO_POSITION, ROWS, WIDTHS, text_features
from transcend.engine.transcript import VOCAB_SIZE


@dataclass
class ModelConfig:
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 256
    block_size: int = 1023
    vocab_size: int = VOCAB_SIZE
    bias: bool = False
    dropout: float = 0.0
    # A feature set of engine/features.py whose embedding each character adds (its position),
    # or "" for none: the paper's model.
    board_input: str = ""

    def to_dict(self) -> dict:
        """The config as a checkpoint's ``model_args``; without a board input exactly the
        paper's keys, so such a model's checkpoint and file are as before."""
        out = asdict(self)
        if not self.board_input:
            del out["board_input"]
        return out


CONFIGS: dict[str, ModelConfig] = {
    "tiny": ModelConfig(n_layer=2, n_head=2, n_embd=32),
    "mini": ModelConfig(n_layer=4, n_head=4, n_embd=128),
    "small": ModelConfig(n_layer=6, n_head=6, n_embd=192),
    "karvonen-25m": ModelConfig(n_layer=8, n_head=8, n_embd=512),
    "paper-50m": ModelConfig(n_layer=16, n_head=8, n_embd=512),
    "paper-300m": ModelConfig(n_layer=24, n_head=16, n_embd=1024),
    "paper-700m": ModelConfig(n_layer=36, n_head=20, n_embd=1280),
}


def next_char_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of next-character logits (B, T, vocab) against targets (B, T),
    computed in float32 whatever the logits' precision."""
    return F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), targets.reshape(-1))


def board_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of board logits (N, 64, classes) against targets (N, 64), in
    float32; 0 when there is no target."""
    if targets.numel() == 0:
        return logits.sum() * 0.0
    return F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), targets.reshape(-1))


class LayerNorm(nn.Module):
    """LayerNorm with an optional bias, as in nanoGPT (parameter names must match)."""

    def __init__(self, ndim: int, bias: bool) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(ndim))
        self.bias = nn.Parameter(torch.zeros(ndim)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, self.weight.shape, self.weight, self.bias, 1e-5)


class CausalSelfAttention(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        assert config.n_embd % config.n_head == 0
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.n_head = config.n_head
        self.n_embd = config.n_embd
        self.dropout = config.dropout
        self.scale = 1.0 / math.sqrt(config.n_embd // config.n_head)

    def _heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        b, t, c = x.shape
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
        shape = (b, t, self.n_head, c // self.n_head)
        return (
            q.view(shape).transpose(1, 2),
            k.view(shape).transpose(1, 2),
            v.view(shape).transpose(1, 2),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = self._heads(x)
        drop = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=drop, is_causal=True)
        return self.c_proj(y.transpose(1, 2).contiguous().view(b, t, c))

    def forward_cached(
        self, x: torch.Tensor, past_k: torch.Tensor, past_v: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Attention of new tokens over the cache and each other; ``mask`` is additive over the
        cache's positions then the new tokens'. Returns the output and the new keys and values.

        The cache and the new tokens are attended in two parts, never concatenated: a
        concatenation would copy the whole cache in every layer of every call.
        """
        b, t, c = x.shape
        q, k, v = self._heads(x)
        # Written out rather than with scaled_dot_product_attention so the exported graph has
        # plain ops that every onnxruntime provider runs.
        scores = torch.cat([q @ past_k.transpose(-2, -1), q @ k.transpose(-2, -1)], dim=-1)
        att = torch.softmax(scores * self.scale + mask, dim=-1)
        cached = past_k.shape[2]
        y = att[..., :cached] @ past_v + att[..., cached:] @ v
        return self.c_proj(y.transpose(1, 2).contiguous().view(b, t, c)), k, v


class MLP(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.gelu = nn.GELU()
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(self.gelu(self.c_fc(x)))


class Block(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.ln_1 = LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.transformer = nn.ModuleDict(
            dict(
                wte=nn.Embedding(config.vocab_size, config.n_embd),
                wpe=nn.Embedding(config.block_size, config.n_embd),
                drop=nn.Dropout(config.dropout),
                h=nn.ModuleList([Block(config) for _ in range(config.n_layer)]),
                ln_f=LayerNorm(config.n_embd, bias=config.bias),
            )
        )
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.transformer.wte.weight = self.lm_head.weight  # tied embeddings
        if config.board_input:
            self.transformer.bte = nn.Embedding(ROWS[config.board_input], config.n_embd,
                                                padding_idx=NO_POSITION)
        self.apply(self._init_weights)
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))
        if config.board_input:
            # A position is the sum of WIDTHS rows, each moved by about the learning rate at
            # every step (AdamW): unscaled, the sum moved that many times faster than a
            # character's embedding and training diverged early. Scaled by 1/sqrt(WIDTHS), it
            # starts as large as a character's embedding (rows at N(0, 0.02)) and learns fast;
            # 1/WIDTHS learned slower (docs/board.md).
            self.board_scale = WIDTHS[config.board_input] ** -0.5
            with torch.no_grad():
                self.transformer.bte.weight[NO_POSITION].zero_()

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def num_params(self) -> int:
        """Parameters, counting the tied embedding once (position embeddings included)."""
        return sum(p.numel() for p in self.parameters())

    def board_embedding(self, features: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """Each token's position embedding (B, T, n_embd): ``features`` (B, P, width) are the
        ids of P positions, ``index`` (B, T) says which position each token is at.

        A position's rows are summed once, however many tokens share it (a move's characters,
        every node of the engine's move tree), then gathered per token.
        """
        b, p, width = features.shape
        flat = features.reshape(b * p, width)
        table = self.transformer.bte.weight
        if torch.onnx.is_in_onnx_export():  # plain Gather and ReduceSum in the graph
            rows = table[flat].sum(1)
        else:  # the same sum, without a (B * P, width, n_embd) intermediate
            rows = F.embedding_bag(flat, table, mode="sum", padding_idx=NO_POSITION)
        offset = torch.arange(b, device=index.device).unsqueeze(1) * p
        return rows[index + offset] * self.board_scale

    def board_of_text(self, text: str, extra: int = 0
                      ) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The board input of a game's text from the standard start, as a batch of one, with
        ``extra`` more tokens at the text's last position (the next move's characters); None
        for a model without one. ValueError when the text does not replay."""
        if not self.config.board_input:
            return None
        rows, index = text_features(text, self.config.board_input)
        index = np.concatenate([index, np.full(extra, index[-1])])
        device = self.transformer.wte.weight.device
        return (torch.from_numpy(rows)[None].to(device),
                torch.from_numpy(index)[None].to(device))

    def _embed(self, idx: torch.Tensor, pos: torch.Tensor,
               board: tuple[torch.Tensor, torch.Tensor] | None) -> torch.Tensor:
        x = self.transformer.wte(idx) + self.transformer.wpe(pos)
        if self.config.board_input:
            if board is None:
                raise ValueError("this model reads the board: pass its features")
            x = x + self.board_embedding(*board).to(x.dtype)
        return x

    def hidden_states(self, idx: torch.Tensor,
                      board: tuple[torch.Tensor, torch.Tensor] | None = None
                      ) -> list[torch.Tensor]:
        """The residual stream (B, T, n_embd) of a batch of windows starting at position 0:
        after the embeddings (index 0), then after each block (index i for block i).
        ``board``: the board input's (features, index), see :meth:`board_embedding`."""
        _, t = idx.shape
        if t > self.config.block_size:
            raise ValueError(f"sequence of {t} tokens exceeds block size {self.config.block_size}")
        pos = torch.arange(t, dtype=torch.long, device=idx.device)
        states = [self.transformer.drop(self._embed(idx, pos, board))]
        for block in self.transformer.h:
            states.append(block(states[-1]))
        return states

    def logits(self, last_state: torch.Tensor) -> torch.Tensor:
        return self.lm_head(self.transformer.ln_f(last_state))

    def forward(self, idx: torch.Tensor,
                board: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """Logits (B, T, vocab) for a batch of windows starting at position 0."""
        return self.logits(self.hidden_states(idx, board)[-1])

    def forward_cached(
        self,
        input_ids: torch.Tensor,
        position_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        past: list[torch.Tensor],
        board: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Incremental decoding, the graph that ``transcend export`` writes.

        input_ids, position_ids: (B, T) int64. attention_mask: (B, T, P+T) bool, True where a new
        token may attend (cached tokens, and new ones: itself and those before it, or for a tree
        of continuations its own ancestors). past: per layer its keys then its values, each
        (B, n_head, P, head_dim); positions that no token may attend are ignored, so P may be a
        buffer's capacity. ``board``: with a board input, its (features, index) as in
        :meth:`board_embedding`. Returns logits (B, T, vocab) and the new tokens' keys and
        values, (n_layer, 2, B, n_head, T, head_dim).
        """
        x = self._embed(input_ids, position_ids, board)
        neg = torch.finfo(x.dtype).min
        mask = torch.where(attention_mask, 0.0, neg).to(x.dtype).unsqueeze(1)
        new = []
        for i, block in enumerate(self.transformer.h):
            a, k, v = block.attn.forward_cached(block.ln_1(x), past[2 * i], past[2 * i + 1], mask)
            x = x + a
            x = x + block.mlp(block.ln_2(x))
            new.append(torch.stack([k, v]))
        return self.logits(x), torch.stack(new)

    def configure_optimizer(
        self, lr: float, weight_decay: float, betas: tuple[float, float], device_type: str
    ) -> torch.optim.Optimizer:
        return configure_optimizer(self, lr, weight_decay, betas, device_type)

    def flops_per_token(self) -> float:
        """Training FLOPs per token (forward and backward), as in the PaLM appendix."""
        c = self.config
        # Embedding rows are looked up, not multiplied: position and board tables add no FLOPs.
        n = self.num_params() - self.transformer.wpe.weight.numel()
        if c.board_input:
            n -= self.transformer.bte.weight.numel()
        return 6 * n + 12 * c.n_layer * c.n_embd * c.block_size


def configure_optimizer(module: nn.Module, lr: float, weight_decay: float,
                        betas: tuple[float, float], device_type: str) -> torch.optim.Optimizer:
    """AdamW with weight decay on the matrices (2-D parameters) and none on gains and biases."""
    params = [p for p in module.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=lr, betas=betas, fused=device_type == "cuda")


def default_board_layer(n_layer: int) -> int:
    """Two thirds of the way up the stack: the blocks above it can use the board."""
    return max(1, round(2 * n_layer / 3))


class BoardSupervised(nn.Module):
    """A GPT with a linear board head on the residual stream after block ``layer`` (0: the
    embeddings), for training alone: export writes the GPT without it.

    ``forward`` returns the next-character logits (B, T, vocab) and the head's logits
    (N, 64, classes) at the N positions where ``where`` (B, T) is true.
    """

    def __init__(self, gpt: GPT, layer: int, squares: int = 64, classes: int = 13) -> None:
        super().__init__()
        if not 0 <= layer <= gpt.config.n_layer:
            raise ValueError(f"board layer {layer}: the model has layers 0-{gpt.config.n_layer}")
        self.gpt = gpt
        self.layer = layer
        self.squares, self.classes = squares, classes
        self.head = nn.Linear(gpt.config.n_embd, squares * classes)
        nn.init.normal_(self.head.weight, mean=0.0, std=0.02)
        nn.init.zeros_(self.head.bias)

    def forward(self, idx: torch.Tensor, where: torch.Tensor,
                board: tuple[torch.Tensor, torch.Tensor] | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        states = self.gpt.hidden_states(idx, board)
        board = self.head(states[self.layer][where])
        return self.gpt.logits(states[-1]), board.view(-1, self.squares, self.classes)
