"""Deep linear networks as one stacked array, their losses and analytic gradients.

A network of depth L is `W: (L, D, D)` with layer 1 first, so the end-to-end matrix is
W_{L:1} = W_L ⋯ W_1. Rectangular widths d_0, …, d_L (Wu-Wang-Ma, Remark (1)) occupy the
top-left d_l × d_{l-1} block of layer l; `mask: (L, D, D)` is 1 on the entries that train
and 0 elsewhere. Every update is multiplied by the mask, so padded entries (and fixed layers,
such as padding layers of a depth bucket or Zou-Long-Gu's input/output transforms) never move.

Everything here acts on ONE network; batches are `jax.vmap` in the caller.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
from jax import lax

Matmul = Callable[[jax.Array, jax.Array], jax.Array]
#: A loss of the end-to-end matrix: X ↦ (f(X), ∂f/∂X), X = W_{L:1}.
Head = Callable[[jax.Array], tuple[jax.Array, jax.Array]]


def unrolled_matmul(a: jax.Array, b: jax.Array) -> jax.Array:
    """`a @ b` written as D rank-1 multiply-adds.

    For tiny D (≲ 10) under `vmap` with the batch as the *last* axis this stays elementwise,
    so XLA vectorises across the batch instead of issuing many tiny dot products.
    """
    out = a[:, 0, None] * b[None, 0, :]
    for k in range(1, a.shape[1]):
        out = out + a[:, k, None] * b[None, k, :]
    return out


MATMULS: dict[str, Matmul] = {"dot": jnp.matmul, "unrolled": unrolled_matmul}

#: How the prefix products W_l ⋯ W_1 are formed: a sequential scan, or a parallel prefix scan.
PREFIXES = ("sequential", "associative")


def check_prefix(prefix: str) -> str:
    if prefix not in PREFIXES:
        raise ValueError(f"unknown prefix {prefix!r}; expected one of {PREFIXES}")
    return prefix


def get_matmul(name: str | Matmul) -> Matmul:
    if callable(name):
        return name
    if name not in MATMULS:
        raise ValueError(f"unknown matmul {name!r}; expected one of {sorted(MATMULS)}")
    return MATMULS[name]


# ---------------------------------------------------------------------------------------------
# Layout: widths, padding and masks (static, built with numpy-like jnp before tracing)
# ---------------------------------------------------------------------------------------------


def check_widths(widths: Sequence[int]) -> tuple[int, ...]:
    """Validate widths d_0..d_L (depth L = len(widths) - 1) and return them as a tuple."""
    widths = tuple(int(w) for w in widths)
    if len(widths) < 2:
        raise ValueError(f"widths must list d_0..d_L with depth L >= 1, got {widths}")
    if min(widths) < 1:
        raise ValueError(f"every width must be >= 1, got {widths}")
    return widths


def support_mask(widths: Sequence[int], size: int | None = None, dtype=None) -> jax.Array:
    """Mask `(L, D, D)`: 1 on layer l's top-left d_l × d_{l-1} block, 0 on the padding
    (`dtype`: JAX's default float unless given, like the inits it masks)."""
    widths = check_widths(widths)
    size = max(widths) if size is None else int(size)
    if size < max(widths):
        raise ValueError(f"padded size D={size} is smaller than the widest layer {max(widths)}")
    idx = jnp.arange(size)
    rows = idx[None, :, None] < jnp.asarray(widths[1:])[:, None, None]
    cols = idx[None, None, :] < jnp.asarray(widths[:-1])[:, None, None]
    return (rows & cols).astype(jnp.zeros((), dtype).dtype)


def pad_square(a: jax.Array, size: int) -> jax.Array:
    """Zero-pad the last two axes of `a` to (size, size)."""
    r, c = a.shape[-2:]
    if r > size or c > size:
        raise ValueError(f"cannot pad an array of shape {a.shape} down to {size}x{size}")
    pad = [(0, 0)] * (a.ndim - 2) + [(0, size - r), (0, size - c)]
    return jnp.pad(a, pad)


def pad_depth(W: jax.Array, mask: jax.Array, depth: int) -> tuple[jax.Array, jax.Array]:
    """Append fixed identity layers so the net has `depth` layers and the same function.

    `mask` is `(L, D, D)` or broadcastable per layer, e.g. `(L, 1, 1)`.

    The new layers have mask 0, so they never train; W_{L:1} and every gradient of the
    original layers are unchanged. This is how a depth bucket holds several depths.
    """
    L, D, _ = W.shape
    if depth < L:
        raise ValueError(f"cannot pad a depth-{L} network to depth {depth}")
    extra = depth - L
    eye = jnp.broadcast_to(jnp.eye(D, dtype=W.dtype), (extra, D, D))
    fixed = jnp.zeros((extra, *mask.shape[1:]), mask.dtype)
    return jnp.concatenate([W, eye]), jnp.concatenate([mask, fixed])


# ---------------------------------------------------------------------------------------------
# Products
# ---------------------------------------------------------------------------------------------


def end_to_end(W: jax.Array, matmul: Matmul = jnp.matmul) -> jax.Array:
    """W_{L:1} = W_L ⋯ W_1 for `W: (L, D, D)`."""
    out, _ = lax.scan(lambda P, Wl: (matmul(Wl, P), None), jnp.eye(W.shape[-1], dtype=W.dtype), W)
    return out


def prefix_products(W: jax.Array, matmul: Matmul = jnp.matmul) -> jax.Array:
    """P: (L+1, D, D) with P[l] = W_l ⋯ W_1 (P[0] = I)."""
    eye = jnp.eye(W.shape[-1], dtype=W.dtype)

    def body(P, Wl):
        P = matmul(Wl, P)
        return P, P

    _, Ps = lax.scan(body, eye, W)
    return jnp.concatenate([eye[None], Ps])


def prefix_products_associative(W: jax.Array) -> jax.Array:
    """Same as `prefix_products`, by a parallel prefix scan (depth O(log L) on accelerators)."""
    eye = jnp.eye(W.shape[-1], dtype=W.dtype)
    Ps = lax.associative_scan(lambda a, b: jnp.matmul(b, a), W)
    return jnp.concatenate([eye[None], Ps])


def suffix_products(W: jax.Array, matmul: Matmul = jnp.matmul) -> jax.Array:
    """S: (L+1, D, D) with S[l] = W_L ⋯ W_{l+1} (S[L] = I)."""
    eye = jnp.eye(W.shape[-1], dtype=W.dtype)

    def body(S, Wl):
        S = matmul(S, Wl)
        return S, S

    _, Ss = lax.scan(body, eye, W, reverse=True)
    return jnp.concatenate([Ss, eye[None]])


# ---------------------------------------------------------------------------------------------
# Losses
# ---------------------------------------------------------------------------------------------


def whitened_loss(W: jax.Array, phi: jax.Array) -> jax.Array:
    """R(W) = ½‖W_L ⋯ W_1 − Φ‖²_F, eq. (2.3). `W: (L, D, D)`, `phi: (D, D)`."""
    return 0.5 * jnp.sum((end_to_end(W) - phi) ** 2)


def data_loss(W: jax.Array, X: jax.Array, Y: jax.Array) -> jax.Array:
    """½‖W_L ⋯ W_1 X − Y‖²_F, eq. (2.2). `X: (D, n)`, `Y: (D, n)` (zero-padded rows)."""
    return 0.5 * jnp.sum((end_to_end(W) @ X - Y) ** 2)


# ---------------------------------------------------------------------------------------------
# Analytic gradients: ∇_l = W_{L:l+1}ᵀ G W_{l-1:1}ᵀ with G = ∂loss/∂W_{L:1}
# ---------------------------------------------------------------------------------------------


def backprop_products(W: jax.Array, G: jax.Array, prefixes: jax.Array,
                      matmul: Matmul = jnp.matmul) -> jax.Array:
    """Per-layer gradients `(L, D, D)` given G = ∂loss/∂W_{L:1} and the prefix products.

    Walks down from layer L carrying B_l = W_{L:l+1}ᵀ G, so each layer costs two matmuls.
    """

    def body(B, inputs):
        Wl, P_below = inputs
        grad = matmul(B, P_below.T)
        return matmul(Wl.T, B), grad

    _, grads = lax.scan(body, G, (W, prefixes[:-1]), reverse=True)
    return grads


def whitened_head(phi: jax.Array) -> Head:
    """The head of the whitened loss, eq. (2.3): X ↦ (½‖X − Φ‖²_F, X − Φ).

    `phi: (D, D, *batch)`; sums run over the matrix axes only, so trailing batch axes pass
    through (the batch-last layout of `loss_and_grad_unrolled`)."""

    def head(X):
        E = X - phi
        return 0.5 * jnp.sum(E * E, axis=(0, 1)), E

    return head


def end_to_end_loss_and_grad(W: jax.Array, head: Head, matmul: Matmul = jnp.matmul,
                             prefix: str = "sequential",
                             active=None) -> tuple[jax.Array, jax.Array]:
    """R(W) = f(W_{L:1}) and ∇R(W) for any loss f of the end-to-end matrix, by the chain rule

        ∇_l R = W_{L:l+1}ᵀ G W_{l−1:1}ᵀ,   G = ∂f/∂W_{L:1},

    given `head(X) -> (f(X), G)` on X = W_{L:1}: `(D, D)`. Every objective of this package
    (`_objectives`) is a head on this one routine. One forward scan for the prefixes, one
    backward scan for the gradients (3L matmuls plus the head). With `matmul=unrolled_matmul`
    (and sequential prefixes) this is `end_to_end_loss_and_grad_unrolled`.

    `active` (may be traced): layers above it are identities (the padding of `pad_depth`),
    so the products stop there and their gradients are returned as 0. One compiled program
    then serves every depth up to L, at the cost of the depth it is given.
    """
    check_prefix(prefix)
    if matmul is unrolled_matmul and prefix == "sequential":
        return end_to_end_loss_and_grad_unrolled(W, head, active)
    if active is not None and prefix == "sequential":
        eye = jnp.eye(W.shape[-1], dtype=W.dtype)
        return _prefixes_then_gradients(W, head, active, eye, matmul, lambda a: a.T)
    P = prefix_products_associative(W) if prefix == "associative" else prefix_products(W, matmul)
    loss, G = head(P[-1])
    return loss, backprop_products(W, G, P, matmul)


def loss_and_grad(W: jax.Array, phi: jax.Array, matmul: Matmul = jnp.matmul,
                  prefix: str = "sequential", active=None) -> tuple[jax.Array, jax.Array]:
    """R(W) and ∇R(W) for the whitened loss, eq. (2.3):

        ∇_l R = W_{L:l+1}ᵀ (W_{L:1} − Φ) W_{l−1:1}ᵀ.

    `end_to_end_loss_and_grad` with the head `whitened_head(phi)` (see there for `matmul`,
    `prefix` and `active`).
    """
    return end_to_end_loss_and_grad(W, whitened_head(phi), matmul, prefix, active)


def _prefixes_then_gradients(W, head, n, eye, mm, tr):
    """The recursion of `end_to_end_loss_and_grad` over layers 1..n (n may be traced):
    prefixes P_l = W_l P_{l−1} into a preallocated stack, then (R, G) = head(P_n) and down
    from B = G: ∇_l = B P_{l−1}ᵀ and B ← W_lᵀ B. Layers above n get gradient 0. `mm`, `tr`:
    product and transpose of the matrix axes. Returns (R, grads)."""
    P = jnp.zeros((W.shape[0] + 1, *W.shape[1:]), W.dtype).at[0].set(eye)
    P = lax.fori_loop(0, n, lambda l, P: lax.dynamic_update_index_in_dim(
        P, mm(W[l], P[l]), l + 1, 0), P)
    loss, G = head(lax.dynamic_index_in_dim(P, n, 0, keepdims=False))

    def down(i, carry):
        B, grads = carry
        l = n - 1 - i
        grads = lax.dynamic_update_index_in_dim(grads, mm(B, tr(P[l])), l, 0)
        return mm(tr(W[l]), B), grads

    _, grads = lax.fori_loop(0, n, down, (G, jnp.zeros_like(W)))
    return loss, grads


def regression_head(X: jax.Array, Y: jax.Array) -> Head:
    """The head of the data loss, eq. (2.2): P ↦ (½‖PX − Y‖²_F, (PX − Y) Xᵀ)."""

    def head(P):
        residual = P @ X - Y
        return 0.5 * jnp.sum(residual**2), residual @ X.T

    return head


def data_loss_and_grad(W: jax.Array, X: jax.Array, Y: jax.Array, matmul: Matmul = jnp.matmul,
                       prefix: str = "sequential") -> tuple[jax.Array, jax.Array]:
    """½‖W_{L:1}X − Y‖²_F and its gradient, ∇_l = W_{L:l+1}ᵀ (W_{L:1}X − Y) Xᵀ W_{l−1:1}ᵀ."""
    return end_to_end_loss_and_grad(W, regression_head(X, Y), matmul, prefix)


# ---------------------------------------------------------------------------------------------
# Tiny widths: the same gradient with the batch as the last axis
# ---------------------------------------------------------------------------------------------
#
# For D ≲ 10 one step is ~3L products of D × D matrices, far too little work per product
# for a matmul kernel. Written as D multiply-adds on whole arrays, a product of (D, D, *batch)
# arrays is elementwise over the trailing batch axes, which XLA vectorises when they are
# minor. `vmap` cannot give that layout by itself: its rules for `scan`/`while` move the batch
# to the FRONT of every loop carry. So a batch of networks calls the function below directly
# with the batch as trailing axes (see `_sweep._advance_chunk`), and one network calls it
# with none: the same code, the same arithmetic.


def _mm(a: jax.Array, b: jax.Array, lead: int = 0) -> jax.Array:
    """a @ b on the matrix axes (lead, lead + 1), elementwise over every other axis."""
    pre = (slice(None),) * lead
    out = a[pre + (slice(None), slice(0, 1))] * b[pre + (slice(0, 1),)]
    for k in range(1, a.shape[lead + 1]):
        out = out + a[pre + (slice(None), slice(k, k + 1))] * b[pre + (slice(k, k + 1),)]
    return out


def _t(a: jax.Array, lead: int = 0) -> jax.Array:
    return jnp.swapaxes(a, lead, lead + 1)


def end_to_end_loss_and_grad_unrolled(W: jax.Array, head: Head,
                                      active=None) -> tuple[jax.Array, jax.Array]:
    """`end_to_end_loss_and_grad` by unrolled multiply-adds, for `W: (L, D, D, *batch)` and a
    `head` acting on `(D, D, *batch)` (its sums over the matrix axes only); with no batch
    axes it is the one-network function.

    Prefixes P_l = W_l P_{l−1} in a `fori_loop` that writes into a preallocated stack, then
    (R, G) = head(W_{L:1}) and down from B = G: ∇_l = B P_{l−1}ᵀ and B ← W_lᵀ B. With
    `active` (may be traced) both loops stop at that layer (layers above it are identities;
    their gradients are 0).
    """
    n = W.shape[0] if active is None else active
    eye = jnp.eye(W.shape[1], dtype=W.dtype).reshape(W.shape[1:3] + (1,) * (W.ndim - 3))
    return _prefixes_then_gradients(W, head, n, jnp.broadcast_to(eye, W.shape[1:]), _mm, _t)


def loss_and_grad_unrolled(W: jax.Array, phi: jax.Array,
                           active=None) -> tuple[jax.Array, jax.Array]:
    """`loss_and_grad` by unrolled multiply-adds, for `W: (L, D, D, *batch)` and
    `phi: (D, D, *batch)`; with no batch axes it is the one-network function
    (`end_to_end_loss_and_grad_unrolled` with `whitened_head(phi)`)."""
    return end_to_end_loss_and_grad_unrolled(W, whitened_head(phi), active)
