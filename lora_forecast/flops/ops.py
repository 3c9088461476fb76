"""A tiny op-level IR of one model call, and the conventions that price it.

:mod:`lora_forecast.flops.graph` describes a model call as a list of ops (matmuls, causal
attention products, elementwise work). Each op knows, for a :class:`Convention`, its forward
cost and the cost of the backward work autograd does for it: the gradient of each *input that
requires grad* (``grad_a``/``grad_b`` flags fixed when the graph is built). Keeping the graph
separate from the prices lets one graph be counted the SPEC's way ("coursework") and the way
``torch.utils.flop_counter.FlopCounterMode`` counts ("torch").

Matmul prices (``(m x n) @ (n x p)``):
    coursework: m * p * (2n - 1)      (SPEC: n multiplies and n - 1 adds per output)
    torch:      2 * m * n * p         (``aten.mm/addmm/bmm``; addmm's bias add is free)
Both are affine in every dimension, which the causal ops below rely on: a sum over rows of
products with varying length k_i equals one product with the mean length (sum k_i) / rows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol


def coursework_matmul(m: float, n: float, p: float) -> float:
    """SPEC price of an (m x n) @ (n x p) product: m * p * (2n - 1)."""
    return m * p * (2 * n - 1)


def torch_matmul(m: float, n: float, p: float) -> float:
    """FlopCounterMode's price of an (m x n) @ (n x p) product: 2 * m * n * p."""
    return 2 * m * n * p


@dataclass(frozen=True)
class Convention:
    """How ops are priced.

    Attributes:
        name: registry key.
        matmul: price of an (m x n) @ (n x p) product; must be affine in each dimension.
        elementwise: whether non-matmul work (norms, softmax, activations, adds) costs FLOPs.
        causal_discount: attention computes only the causal lower triangle (query i sees
            i + 1 keys) instead of the full square that a masked dense kernel computes.
    """

    name: str
    matmul: Callable[[float, float, float], float]
    elementwise: bool
    causal_discount: bool


# name -> Convention. ``count_flops(convention=...)`` also accepts a Convention instance,
# e.g. ``dataclasses.replace(CONVENTIONS["coursework"], causal_discount=False)``.
CONVENTIONS: dict[str, Convention] = {
    "coursework": Convention("coursework", coursework_matmul, True, True),
    "torch": Convention("torch", torch_matmul, False, False),
}


class Op(Protocol):
    """Anything with a breakdown component and forward/backward prices."""

    component: str

    def forward(self, conv: Convention) -> float: ...

    def backward(self, conv: Convention) -> float: ...


@dataclass(frozen=True)
class MatMul:
    """``count`` independent products (m x n) @ (n x p) = C, i.e. A @ B.

    Backward: dA = dC (m x p) @ B^T (p x n) when ``grad_a``; dB = A^T (n x m) @ dC (m x p)
    when ``grad_b`` (frozen weights never get ``grad_b``).
    """

    component: str
    m: float
    n: float
    p: float
    count: float = 1
    grad_a: bool = False
    grad_b: bool = False

    def forward(self, conv: Convention) -> float:
        return self.count * conv.matmul(self.m, self.n, self.p)

    def backward(self, conv: Convention) -> float:
        cost = conv.matmul(self.m, self.p, self.n) if self.grad_a else 0.0
        cost += conv.matmul(self.n, self.m, self.p) if self.grad_b else 0.0
        return self.count * cost


def causal_pairs(rows: int, past: int, causal: bool) -> float:
    """(query, key) pairs one head scores when ``rows`` new queries follow ``past`` cached keys.

    Causal: query j (absolute position past + j) sees past + j + 1 keys, so the total is
    rows * past + rows * (rows + 1) / 2. Dense: every query scores all past + rows keys.
    """
    if causal:
        return rows * past + rows * (rows + 1) / 2
    return rows * (past + rows)


@dataclass(frozen=True)
class Attention:
    """One of the two attention products, per head, ``count`` = batch * heads of them.

    With P pairs (:func:`causal_pairs`), rows queries, keys = past + rows, head width d:
      scores  S = Q K^T:   P dot products of length d   -> matmul(1, d, P)
              dQ = dS K:   row i sums k_i terms         -> matmul(rows, P / rows, d)
              dK = dS^T Q: key j sums c_j terms         -> matmul(keys, P / keys, d)
      values  O = A V:     row i sums k_i terms         -> matmul(rows, P / rows, d)
              dA = dO V^T: P dot products of length d   -> matmul(1, d, P)
              dV = A^T dO: key j sums c_j terms         -> matmul(keys, P / keys, d)
    (sums over varying lengths are exact because matmul prices are affine; see module doc).
    ``grad_a`` is dQ (scores) or dA (values); ``grad_b`` is dK or dV.
    """

    component: str
    product: str  # "scores" | "values"
    rows: int
    past: int
    head_dim: int
    count: float
    grad_a: bool = False
    grad_b: bool = False

    def _shapes(self, conv: Convention) -> tuple[float, float, float]:
        pairs = causal_pairs(self.rows, self.past, conv.causal_discount)
        return pairs, pairs / self.rows, pairs / (self.past + self.rows)

    def forward(self, conv: Convention) -> float:
        pairs, per_row, _ = self._shapes(conv)
        mm, d = conv.matmul, self.head_dim
        cost = mm(1, d, pairs) if self.product == "scores" else mm(self.rows, per_row, d)
        return self.count * cost

    def backward(self, conv: Convention) -> float:
        pairs, per_row, per_key = self._shapes(conv)
        mm, d, keys = conv.matmul, self.head_dim, self.past + self.rows
        grad_a = mm(self.rows, per_row, d) if self.product == "scores" else mm(1, d, pairs)
        cost = grad_a if self.grad_a else 0.0
        cost += mm(keys, per_key, d) if self.grad_b else 0.0
        return self.count * cost


@dataclass(frozen=True)
class Pointwise:
    """Elementwise work priced in SPEC primitives; free under conventions without elementwise.

    ``forward``/``backward`` are already totals (backward is 0 when no input requires grad).
    """

    component: str
    fwd: float
    bwd: float = 0.0

    def forward(self, conv: Convention) -> float:
        return self.fwd if conv.elementwise else 0.0

    def backward(self, conv: Convention) -> float:
        return self.bwd if conv.elementwise else 0.0


@dataclass(frozen=True)
class AttentionPointwise:
    """Elementwise work on the score matrix: ``count`` heads, per pair and per row costs.

    Forward: count * (fwd_pair * P + fwd_row * rows); backward likewise with the bwd costs
    when ``needs_grad`` (P depends on the convention's causal discount).
    """

    component: str
    rows: int
    past: int
    count: float
    fwd_pair: float
    fwd_row: float
    bwd_pair: float
    bwd_row: float
    needs_grad: bool

    def _cost(self, conv: Convention, pair: float, row: float) -> float:
        if not conv.elementwise:
            return 0.0
        pairs = causal_pairs(self.rows, self.past, conv.causal_discount)
        return self.count * (pair * pairs + row * self.rows)

    def forward(self, conv: Convention) -> float:
        return self._cost(conv, self.fwd_pair, self.fwd_row)

    def backward(self, conv: Convention) -> float:
        if not self.needs_grad:
            return 0.0
        return self._cost(conv, self.bwd_pair, self.bwd_row)
