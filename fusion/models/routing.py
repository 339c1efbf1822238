"""Per-token routing of a transformer MLP: top-1 to one of K small experts, or skip.

:class:`RoutedMLP` replaces a transformer block's feed-forward layer. A linear router scores each
token against ``K`` experts (and, with ``skip=True``, one more choice that costs nothing and adds
nothing); the token goes to its best-scoring choice only (Switch Transformer, Fedus et al. 2022,
top-1). The chosen expert's output is scaled by the router probability of that choice, which is
what carries the task gradient into the router: argmax itself has none. Tokens that skip keep
their residual stream unchanged.

:func:`switch_balance_loss` is Switch's auxiliary load-balancing term ``n · Σᵢ fᵢ · Pᵢ`` (``fᵢ``:
fraction of tokens dispatched to choice ``i``, ``Pᵢ``: mean router probability of ``i``): 1 when
routing is uniform, ``n`` when every token goes to one choice with certainty. Without it the router
collapses onto whichever expert trained fastest and the others never learn.

No capacity limit is imposed (Switch drops tokens beyond a fixed per-expert buffer so that
accelerator shapes stay static); on a CPU or MCU the per-expert token lists are just index lists,
and the balance loss alone keeps loads even.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["Activation", "RoutedMLP", "switch_balance_loss"]

Activation = Literal["gelu", "relu"]


def switch_balance_loss(probs: torch.Tensor, choice: torch.Tensor) -> torch.Tensor:
    """Switch Transformer load-balancing loss.

    Args:
        probs: ``(T, n)`` router probabilities of ``T`` tokens over ``n`` choices (rows sum to 1).
        choice: int64 ``(T,)``, the choice each token was dispatched to.

    Returns:
        Scalar ``n · Σᵢ fᵢ · Pᵢ``: 1 for uniform routing (``fᵢ = Pᵢ = 1/n``), up to ``n`` when all
        tokens go to one choice with probability 1; 0 when ``T == 0``. Differentiable in
        ``probs`` only (the dispatch fractions ``fᵢ`` are counts).
    """
    t, n = probs.shape
    if t == 0:
        return probs.sum() * 0.0  # keeps the graph (and the device) of an empty batch
    frac = torch.bincount(choice, minlength=n).to(probs.dtype) / t
    return n * torch.sum(frac * probs.mean(dim=0))


class _Expert(nn.Module):
    """``Linear(D → H) → activation → Linear(H → D)``; both linears are 1×1 convolutions on a
    token grid, which is what the int8 path would run them as."""

    def __init__(self, width: int, hidden: int, activation: Activation) -> None:
        super().__init__()
        self.fc1 = nn.Linear(width, hidden)
        self.fc2 = nn.Linear(hidden, width)
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc1(x)
        h = F.relu(h) if self.activation == "relu" else F.gelu(h)
        out: torch.Tensor = self.fc2(h)
        return out


class RoutedMLP(nn.Module):
    """Feed-forward layer with top-1 routing per token (or a plain MLP when routing is off).

    Args:
        width: token size D.
        hidden: hidden size H of *each* expert.
        experts: number of experts K (``K == 1`` with ``skip=False`` is a dense MLP: no router).
        skip: add a choice that skips the MLP (output 0, no MACs).
        activation: expert nonlinearity; ``"relu"`` keeps experts inside the int8 kernels.

    Attributes:
        last_balance_loss: :func:`switch_balance_loss` of the latest forward (0 without router).
        last_counts: int64 ``(K + skip,)`` tokens dispatched to each choice in the latest forward
            (the skip choice last).
    """

    def __init__(
        self,
        width: int,
        hidden: int,
        *,
        experts: int,
        skip: bool,
        activation: Activation = "gelu",
    ) -> None:
        super().__init__()
        if experts < 1 or hidden < 1:
            raise ValueError(f"need experts >= 1 and hidden >= 1, got {experts} and {hidden}")
        self.width = width
        self.hidden = hidden
        self.num_experts = experts
        self.skip = skip
        self.experts = nn.ModuleList(_Expert(width, hidden, activation) for _ in range(experts))
        self.router: nn.Linear | None = None
        if self.routed:
            self.router = nn.Linear(width, self.num_choices)
            # Small logits: routing starts near uniform but argmax still differs between tokens
            # (a zero init would tie and send every token to choice 0).
            nn.init.normal_(self.router.weight, std=0.02)
            nn.init.zeros_(self.router.bias)
        self.last_balance_loss: torch.Tensor = torch.zeros(())
        self.last_counts: torch.Tensor = torch.zeros(self.num_choices, dtype=torch.int64)

    @property
    def routed(self) -> bool:
        """Whether a router chooses per token (more than one choice)."""
        return self.num_choices > 1

    @property
    def num_choices(self) -> int:
        """K experts, plus one for skip."""
        return self.num_experts + int(self.skip)

    def route(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Router probabilities and top-1 choice of tokens ``(T, D)``.

        Returns:
            ``(probs, choice)``: float32 ``(T, K + skip)`` and int64 ``(T,)``; choice ``K`` is skip.
        """
        if self.router is None:
            probs = x.new_ones((x.shape[0], 1), dtype=torch.float32)
            return probs, torch.zeros(x.shape[0], dtype=torch.int64, device=x.device)
        # Softmax in float32 (Switch's "selective precision": routing is sensitive to rounding).
        probs = F.softmax(self.router(x).float(), dim=-1)
        return probs, probs.argmax(dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Route and apply.

        Args:
            x: ``(T, D)`` tokens (only real tokens: padding must not be routed, it would count in
                the balance loss and cost MACs).

        Returns:
            ``(T, D)``: ``p(choice) · expert_choice(x)`` per token, 0 for tokens that skip.
        """
        if self.router is None:
            self.last_balance_loss = x.new_zeros(())
            self.last_counts = torch.tensor([x.shape[0]], dtype=torch.int64)
            out: torch.Tensor = self.experts[0](x)
            return out
        probs, choice = self.route(x)
        self.last_balance_loss = switch_balance_loss(probs, choice)
        self.last_counts = torch.bincount(choice, minlength=self.num_choices)
        gate = probs.gather(1, choice.unsqueeze(1)).to(x.dtype)
        out = x.new_zeros(x.shape)
        for e, expert in enumerate(self.experts):
            idx = (choice == e).nonzero().flatten()
            if idx.numel():
                # Only the tokens sent to this expert run through it: that is the MAC saving.
                out = out.index_copy(0, idx, gate[idx] * expert(x[idx]))
        return out
