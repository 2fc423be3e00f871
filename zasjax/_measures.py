"""Measurements of a network: its end-to-end matrix's spectrum, effective rank, norms and
errors, and its layers' invariants, balancedness and deficiency margin.

The quantities by which deep matrix factorization's implicit bias is judged: Arora, Cohen,
Hu & Luo (NeurIPS 2019) plot the singular values of W_{L:1}, its nuclear norm and
Schatten-p quasi-norms and the reconstruction (test) error; Razin & Cohen (NeurIPS 2020,
"Implicit Regularization in Deep Learning May Not Be Explainable by Norms") the effective
rank of Roy & Vetterli (EUSIPCO 2007) and the normalised reconstruction error
(noamrazin/imp_reg_dl_not_norms, common/utils/tensor.py and evaluators/tensor_metrics.py).

Every function acts on ONE matrix (vmap for batches), is jittable, and takes the matrix as

* `(r,)`: its singular values, where the function needs no more (the spectral measures);
* `(D, D)`: the matrix X itself;
* `(L, D, D)`: a network W, measured on its end-to-end matrix W_{L:1}.

The measures of the layers themselves (`invariants`, `invariant_drift`, `balancedness`,
`deficiency_margin`) take a network `W: (L, D, D)` (layer 1 first). They come from Wu, Wang
& Ma (NeurIPS 2019): the invariants D_l = W_{l+1}ᵀW_{l+1} − W_lW_lᵀ (eq. 4.3), constant under
gradient flow (Lemma 4.2) and drifting O(η²) per gradient-descent step (Lemma 4.5); and from
Arora, Cohen, Golowich & Hu (ICLR 2019): δ-balancedness (δ = max_l ‖D_l‖_F, Def. 1) and the
deficiency margin σ_min(Φ) − ‖W_{L:1} − Φ‖_F (Def. 2).

`widths=(d_0, …, d_L)` (static) names the true network inside a padded one (`_network`):
only its first L layers and the top-left d_L × d_0 block of X count, so padding shows up
neither as spurious zero singular values nor as entries. (Zero singular values and zero
entries add nothing to any measure here anyway; `widths` makes the spectrum the true one.)
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

from ._network import check_widths, end_to_end

Widths = Sequence[int] | None


def end_to_end_matrix(x: jax.Array, widths: Widths = None) -> jax.Array:
    """X = W_{L:1} of a network `(L, D, D)`, or the matrix `(D, D)` itself; with `widths`,
    its true d_L × d_0 block."""
    if jnp.ndim(x) not in (2, 3):
        raise ValueError(f"expected a matrix (D, D) or a network (L, D, D), got shape "
                         f"{jnp.shape(x)}")
    if widths is not None:
        widths = check_widths(widths)
        if x.ndim == 3 and len(widths) - 1 > x.shape[0]:
            raise ValueError(f"widths {widths} need {len(widths) - 1} layers, the network "
                             f"has {x.shape[0]}")
    if x.ndim == 3:
        x = end_to_end(x if widths is None else x[: len(widths) - 1])
    return x if widths is None else x[: widths[-1], : widths[0]]


def _block(a: jax.Array | None, widths: Widths) -> jax.Array | None:
    # A (D, D) companion of X (Φ, the observed mask) cut to the same true block.
    return a if a is None or widths is None else a[: widths[-1], : widths[0]]


def singular_values(x: jax.Array, widths: Widths = None) -> jax.Array:
    """σ_1 ≥ σ_2 ≥ … of W_{L:1} (a network) or of X (a matrix): `(min(d_L, d_0),)` with
    `widths`, else `(D,)`."""
    return jnp.linalg.svd(end_to_end_matrix(x, widths), compute_uv=False)


def _spectrum(x: jax.Array, widths: Widths) -> jax.Array:
    return x if jnp.ndim(x) == 1 else singular_values(x, widths)


def effective_rank(x: jax.Array, widths: Widths = None) -> jax.Array:
    """erank = exp(H(p)), H(p) = −Σ_i p_i log p_i, p_i = σ_i / Σ_j σ_j (Roy & Vetterli 2007,
    Def. 1; Razin & Cohen 2020, Sec. 3). `x`: singular values `(r,)`, a matrix or a network.

    Between 1 and rank(X), equal to r when the r nonzero singular values are equal; zero
    singular values contribute 0·log 0 = 0. The zero matrix, where p is undefined, gets 0
    (its rank).
    """
    s = _spectrum(x, widths)
    total = jnp.sum(s)
    p = s / jnp.where(total > 0, total, 1)
    entropy = -jnp.sum(jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p, 1)), 0))
    return jnp.where(total > 0, jnp.exp(entropy), 0)


def schatten_norm(x: jax.Array, p, widths: Widths = None) -> jax.Array:
    """‖X‖_{S_p} = (Σ_i σ_i^p)^{1/p} for p > 0: the nuclear norm at p = 1, Frobenius at 2, a
    quasi-norm for p < 1 (Arora et al. 2019, Sec. 2.1, compare deep factorizations with
    minimisers of Schatten-p quasi-norms, p = 2/L). `x`: singular values, a matrix or a
    network; `p` is data (may be traced).
    """
    s = _spectrum(x, widths)
    p = jnp.asarray(p, s.dtype)
    return jnp.sum(s**p) ** (1 / p)


def nuclear_norm(x: jax.Array, widths: Widths = None) -> jax.Array:
    """‖X‖_* = Σ_i σ_i, the Schatten-1 norm. `x`: singular values, a matrix or a network."""
    return jnp.sum(_spectrum(x, widths))


def reconstruction_error(x: jax.Array, phi: jax.Array, widths: Widths = None) -> jax.Array:
    """‖X − Φ‖_F / ‖Φ‖_F (Razin & Cohen's normalised reconstruction error), X = W_{L:1} of a
    network or a matrix, `phi: (D, D)`. NaN or inf for Φ = 0."""
    X, phi = end_to_end_matrix(x, widths), _block(phi, widths)
    return jnp.linalg.norm(X - phi) / jnp.linalg.norm(phi)


def unobserved_error(x: jax.Array, phi: jax.Array, observed: jax.Array,
                     widths: Widths = None) -> jax.Array:
    """The relative error on the entries completion never saw:

        ‖(1 − M) ⊙ (X − Φ)‖_F / ‖(1 − M) ⊙ Φ‖_F,

    M the 0/1 mask `observed: (D, D)` (boolean or 0/1), X = W_{L:1} of a network or a matrix.
    0 for perfect recovery, 1 for X = 0 off Ω (nothing learned there). Padding outside the
    true block, where X = Φ = 0, adds nothing; NaN when every entry of Φ off Ω is 0.
    """
    X, phi, observed = end_to_end_matrix(x, widths), _block(phi, widths), _block(observed, widths)
    off = jnp.logical_not(observed.astype(bool))
    return (jnp.linalg.norm(jnp.where(off, X - phi, 0)) /
            jnp.linalg.norm(jnp.where(off, phi, 0)))


# ---------------------------------------------------------------------------------------------
# The layers: invariants (Wu-Wang-Ma eq. 4.3), balancedness and deficiency margin (Arora et al.)
# ---------------------------------------------------------------------------------------------


def true_layers(W: jax.Array, widths: Widths = None) -> tuple[jax.Array, tuple[int, ...]]:
    """The true layers of a padded network `W: (L, D, D)` and their widths d_0..d_L (all D
    when `widths` is None): layers beyond L' = len(widths) − 1 (depth padding) are dropped."""
    L, D, _ = W.shape
    if widths is None:
        return W, (D,) * (L + 1)
    widths = check_widths(widths)
    if len(widths) - 1 > L or max(widths) > D:
        raise ValueError(f"widths {widths} do not fit in a network of shape {W.shape}")
    return W[: len(widths) - 1], widths


def kth_singular_value(A: jax.Array, k: int) -> jax.Array:
    """The k-th largest singular value (1-based) of `A`; for a zero-padded d_r × d_c block,
    k = min(d_r, d_c) gives the block's smallest one (the padding's zeros never count)."""
    return jnp.linalg.svd(A, compute_uv=False)[k - 1]


def spectral_norm(A: jax.Array) -> jax.Array:
    """‖A‖₂, the largest singular value, over the last two axes of `A: (..., m, n)`."""
    return jnp.linalg.svd(A, compute_uv=False)[..., 0]


def invariants(W: jax.Array, widths: Widths = None) -> jax.Array:
    """D_l = W_{l+1}ᵀW_{l+1} − W_lW_lᵀ for l = 1..L−1, eq. (4.3). Returns `(L−1, D, D)`.

    Constant under gradient flow (Lemma 4.2): d/dt W_{l+1}ᵀW_{l+1} = d/dt W_lW_lᵀ. Zero
    padding contributes zero to them.
    """
    W, _ = true_layers(W, widths)
    upper, lower = W[1:], W[:-1]
    return jnp.einsum("lji,ljk->lik", upper, upper) - jnp.einsum("lij,lkj->lik", lower, lower)


def invariant_drift(W: jax.Array, W0: jax.Array, widths: Widths = None) -> jax.Array:
    """max_l ‖D_l(W) − D_l(W0)‖₂ (spectral norm); 0 for depth 1. Lemma 4.2 says 0 under flow."""
    diff = invariants(W, widths) - invariants(W0, widths)
    if diff.shape[0] == 0:
        return jnp.zeros((), W.dtype)
    return jnp.max(spectral_norm(diff))


def balancedness(W: jax.Array, widths: Widths = None) -> jax.Array:
    """δ = max_l ‖W_{l+1}ᵀW_{l+1} − W_lW_lᵀ‖_F (Arora et al., Definition 1); 0 for depth 1."""
    D = invariants(W, widths)
    if D.shape[0] == 0:
        return jnp.zeros((), W.dtype)
    return jnp.max(jnp.sqrt(jnp.sum(D * D, axis=(-2, -1))))


def deficiency_margin(W: jax.Array, phi: jax.Array, widths: Widths = None) -> jax.Array:
    """σ_min(Φ) − ‖W_{L:1} − Φ‖_F (Arora et al., Definition 2); the init has deficiency margin
    c > 0 iff this is ≥ c. σ_min(Φ) is over the true d_L × d_0 block."""
    W, ws = true_layers(W, widths)
    return kth_singular_value(phi, min(ws[-1], ws[0])) - jnp.linalg.norm(end_to_end(W) - phi)


# ---------------------------------------------------------------------------------------------
# All of the end-to-end measures at once
# ---------------------------------------------------------------------------------------------


def measures(x: jax.Array, phi: jax.Array | None = None, observed: jax.Array | None = None,
             widths: Widths = None) -> dict[str, jax.Array]:
    """All of the above from one SVD: `singular_values` (r,), `effective_rank`,
    `nuclear_norm`; with a ground truth `phi` also `reconstruction_error`; with `observed`
    also `unobserved_error`."""
    X = end_to_end_matrix(x, widths)
    s = singular_values(X)
    out = {"singular_values": s, "effective_rank": effective_rank(s),
           "nuclear_norm": nuclear_norm(s)}
    if phi is not None:
        phi = _block(phi, widths)
        out["reconstruction_error"] = reconstruction_error(X, phi)
        if observed is not None:
            out["unobserved_error"] = unobserved_error(X, phi, _block(observed, widths))
    return out


__all__ = ["end_to_end_matrix", "singular_values", "effective_rank", "schatten_norm",
           "nuclear_norm", "reconstruction_error", "unobserved_error", "true_layers",
           "kth_singular_value", "spectral_norm", "invariants", "invariant_drift",
           "balancedness", "deficiency_margin", "measures"]
