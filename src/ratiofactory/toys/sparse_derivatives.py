"""Value, gradient and Hessian of the sparse toy likelihood, from per-event sums (jax).

The toy Newton fits (:mod:`.newton`) need ``−2 ln L`` with its gradient and Hessian at
every iteration. Autodiff of the whole likelihood (forward over reverse) pushes P tangents
through every per-event operation; here the structure of the unbinned term is used instead:

    −2 ln L = R(θ) − 2 Σ_c Σ_i w_i ln s_i,     s_i = Σ_j C_j(θ) F_ij(α_j),

with ``R`` the part that reads no event (ν(θ), binned channels, constraints), ``C_j`` the
sample coefficients (shape renormalisation included) and ``F_ij = r_j(x_i) Π_k g_jk(x_i,
α_k)`` the per-event factors, which depend only on the sample's own shape parameters α_j.
``R`` and ``C`` are scalar functions of θ (autodiff costs nothing that grows with the
events); ``F`` and its first and second derivatives in α_j are forward-mode per event (one
tangent per shape parameter of the sample). With q_i = w_i / s_i and
∂s_i = Σ_j (∂C_j F_ij + C_j ∂F_ij):

    ∂(Σ w ln s)  = Σ_j ∂C_j (q·F_j) + C_j (q·∂F_j)
    ∂²(Σ w ln s) = Σ_j ∂²C_j (q·F_j) + [∂C_j ⊗ (q·∂F_j) + transpose] + C_j (q·∂²F_j)
                   − Σ_i (w_i / s_i²) ∂s_i ∂s_iᵀ,

the α-derivatives of F_j placed at the sample's shape parameters. The events are read for
a few elementwise products and sums (no batched matrix products, which XLA's CPU backend
runs slowly); 3–4x faster than forward-over-reverse autodiff of the whole likelihood on
the off-shell example, equal to it to round-off (tested).

:class:`SparseEvaluation` is what the Newton fits (:mod:`.newton`) call. Its per-event
``terms`` (F_j and its α-derivatives at one α) serve every point of an iteration that
differs only in the POI: both trial points and the derivatives at the accepted one, and
all points of the coarse POI curve (the POI is not a shape parameter; where it is, the
terms are recomputed per point).
"""

from __future__ import annotations

from typing import Any

from .sparse import SparseLikelihood

__all__ = ["SparseEvaluation", "value_grad_hess"]


def _scalar_derivatives(function: Any, pars: Any) -> tuple[Any, Any, Any]:
    """(f, ∂f, ∂²f) of a function of θ returning an array (any shape), by forward mode over
    forward mode, traced once (the value and gradient ride along as auxiliary outputs)."""
    import jax

    def with_value(p: Any) -> tuple[Any, Any]:
        value = function(p)
        return value, value

    def gradient(p: Any) -> tuple[Any, Any]:
        grad, value = jax.jacfwd(with_value, has_aux=True)(p)
        return grad, (grad, value)

    hess, (grad, value) = jax.jacfwd(gradient, has_aux=True)(pars)
    return value, grad, hess


def _factor_derivatives(likelihood: SparseLikelihood, channel: int, j: int, alphas: Any, ratio: Any,
                        shapes: list[Any], order: int) -> tuple[Any, list[Any], dict[tuple[int, int], Any]]:
    """F_j, [∂F_j/∂α_a] and {(a, b): ∂²F_j/∂α_a∂α_b, a ≤ b} on a toy's events (forward mode,
    one tangent per α of the sample's own shape systematics), up to derivative ``order``."""
    import jax
    import jax.numpy as jnp

    def factor(a: Any) -> Any:
        return likelihood.sample_factor(channel, j, a, ratio, shapes)

    basis = list(jnp.eye(alphas.shape[0], dtype=alphas.dtype))

    def slope(a: Any, k: int) -> Any:
        return jax.jvp(factor, (a,), (basis[k],))[1]

    value = factor(alphas)
    first = [slope(alphas, k) for k in range(len(basis))] if order >= 1 else []
    second = {(k, m): jax.jvp(lambda a, k=k: slope(a, k), (alphas,), (basis[m],))[1]
              for k in range(len(basis)) for m in range(k, len(basis))} if order >= 2 else {}
    return value, first, second


def event_terms(likelihood: SparseLikelihood, pars: Any, toy: Any, order: int = 2) -> list[list[Any]]:
    """Per channel and sample: (F_j, its α-derivatives up to ``order``) on a toy's events at
    the α of ``pars`` (a toy prepared by :meth:`~.sparse.SparseLikelihood.gather`)."""
    import jax.numpy as jnp

    _, channels = toy
    terms = []
    for c, (_, ratios, shapes) in enumerate(channels):
        per_sample: list[Any] = []
        for j, sample in enumerate(likelihood.tensors[c].samples):
            if not sample.shapesys:
                per_sample.append((ratios[j], [], {}))
                continue
            alphas = jnp.stack([pars[i] for i, _ in sample.shapesys])
            per_sample.append(_factor_derivatives(likelihood, c, j, alphas, ratios[j], shapes[j], order))
        terms.append(per_sample)
    return terms


def _channel_derivatives(likelihood: SparseLikelihood, channel: int, pars: Any, w: Any, factors: list[Any],
                         arrays: Any) -> tuple[Any, Any, Any]:
    """(−2 Σ w ln s, its gradient, its Hessian) of one unbinned channel from its ``factors``
    (:func:`event_terms`). Per-event work is elementwise products and sums over the events
    (no batched matrix products: XLA fuses these into a few passes)."""
    import jax.numpy as jnp

    n_pars = pars.shape[0]
    coef, d_coef, dd_coef = _scalar_derivatives(
        lambda p: jnp.stack(likelihood.coefficients(channel, p, arrays)), pars)
    own = [[i for i, _ in sample.shapesys] for sample in likelihood.tensors[channel].samples]
    s = sum(coef[j] * f for j, (f, _, _) in enumerate(factors))
    value = likelihood.events_twice_nll(w, s)
    used = w != 0
    safe_s = jnp.where(s > 0, s, 1.0)
    q = jnp.where(used, w / safe_s, 0.0)
    # ∂s_i/∂θ_a, and the q-weighted sums of F_j and its α-derivatives
    ds = [sum(d_coef[j, a] * f for j, (f, _, _) in enumerate(factors)) for a in range(n_pars)]
    grad = jnp.zeros(n_pars)
    hess = jnp.zeros((n_pars, n_pars))
    for j, (f, first, second) in enumerate(factors):
        qf = jnp.sum(q * f)
        grad = grad + d_coef[j] * qf
        hess = hess + dd_coef[j] * qf
        for k, a in enumerate(own[j]):
            ds[a] = ds[a] + coef[j] * first[k]
            qd = jnp.sum(q * first[k])
            grad = grad.at[a].add(coef[j] * qd)
            hess = hess.at[:, a].add(d_coef[j] * qd).at[a, :].add(d_coef[j] * qd)
        for (k, m), dd_f in second.items():
            a, b = own[j][k], own[j][m]
            qdd = coef[j] * jnp.sum(q * dd_f)
            hess = hess.at[a, b].add(qdd) if a == b else hess.at[a, b].add(qdd).at[b, a].add(qdd)
    r = jnp.where(used, w / safe_s**2, 0.0)
    sums = {(a, b): jnp.sum(r * ds[a] * ds[b]) for a in range(n_pars) for b in range(a, n_pars)}
    outer = jnp.stack([jnp.stack([sums[min(a, b), max(a, b)] for b in range(n_pars)]) for a in range(n_pars)])
    return value, -2.0 * grad, -2.0 * (hess - outer)


class SparseEvaluation:
    """``−2 ln L`` of the sparse likelihood for the Newton fits: :meth:`terms` per event at
    one α, then :meth:`value` and :meth:`value_grad_hess` at any point with that α.
    ``inputs`` is (the toy prepared by :meth:`~.sparse.SparseLikelihood.gather`, the
    likelihood's arrays)."""

    def __init__(self, likelihood: SparseLikelihood, poi_index: int | None) -> None:
        self.likelihood = likelihood
        shape_parameters = {i for t in likelihood.tensors for s in t.samples for i, _ in s.shapesys}
        self.shares_terms = poi_index not in shape_parameters
        """Whether points that differ only in the POI share their per-event terms."""

    def terms(self, pars: Any, inputs: Any, order: int = 2) -> Any:
        """The per-event terms at the α of ``pars`` (:func:`event_terms`)."""
        return event_terms(self.likelihood, pars, inputs[0], order)

    def value(self, pars: Any, inputs: Any, terms: Any) -> Any:
        """``−2 ln L`` at ``pars`` (its α those of ``terms``); equals
        :meth:`~.sparse.SparseLikelihood.twice_nll_gathered`."""
        like = self.likelihood
        (rest, channels), arrays = inputs
        total = like.rest_twice_nll(pars, rest, arrays)
        for c, ((w, _, _), factors) in enumerate(zip(channels, terms, strict=True)):
            s = sum(coef * f for coef, (f, _, _) in zip(like.coefficients(c, pars, arrays), factors, strict=True))
            total = total + like.events_twice_nll(w, s)
        return total

    def value_grad_hess(self, pars: Any, inputs: Any, terms: Any) -> tuple[Any, Any, Any]:
        """``−2 ln L``, its gradient and Hessian at ``pars`` (its α those of ``terms``)."""
        (rest, channels), arrays = inputs
        value, grad, hess = _scalar_derivatives(lambda p: self.likelihood.rest_twice_nll(p, rest, arrays), pars)
        for c, ((w, _, _), factors) in enumerate(zip(channels, terms, strict=True)):
            v, g, h = _channel_derivatives(self.likelihood, c, pars, w, factors, arrays)
            value, grad, hess = value + v, grad + g, hess + h
        return value, grad, hess

    def curve(self, pars: Any, poi_index: int, mus: Any, inputs: Any) -> Any:
        """``−2 ln L`` at ``pars`` with the POI at each of ``mus``."""
        import jax

        shared = self.terms(pars, inputs, 0) if self.shares_terms else None

        def at(mu: Any) -> Any:
            point = pars.at[poi_index].set(mu)
            return self.value(point, inputs, shared if shared is not None else self.terms(point, inputs, 0))

        return jax.vmap(at)(mus)


def value_grad_hess(likelihood: SparseLikelihood, pars: Any, toy: Any, arrays: Any) -> tuple[Any, Any, Any]:
    """``−2 ln L``, its gradient and its Hessian at ``pars`` for a toy prepared by
    :meth:`~.sparse.SparseLikelihood.gather` (jax; the value is +∞ where an event of the toy
    has s ≤ 0, as :meth:`~.sparse.SparseLikelihood.twice_nll_gathered`)."""
    evaluation = SparseEvaluation(likelihood, None)
    inputs = (toy, arrays)
    return evaluation.value_grad_hess(pars, inputs, evaluation.terms(pars, inputs))
