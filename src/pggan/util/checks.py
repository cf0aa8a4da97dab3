"""Small value checks and conversions used across layers."""
from __future__ import annotations

import torch


def is_pow2(n) -> bool:
    return isinstance(n, int) and not isinstance(n, bool) and n > 0 and (n & (n - 1)) == 0


def is_resolution(n, low: int = 4, high: int = 1024) -> bool:
    """A power of two from ``low`` to ``high`` (the sizes the networks are built for)."""
    return is_pow2(n) and low <= n <= high


def one_hot(labels, size: int) -> torch.Tensor:
    """Class indices [N] -> float one-hot rows [N, size]. A scatter, not F.one_hot, whose range check
    reads the indices on the host (a GPU sync per training step)."""
    idx = torch.as_tensor(labels).long().reshape(-1, 1)
    return torch.zeros(len(idx), size, device=idx.device).scatter_(1, idx, 1.0)


def or_list(names) -> str:
    """('a', 'b', 'c') -> 'a, b or c', for messages."""
    names = list(names)
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"
