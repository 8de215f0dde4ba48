"""The compiled toy fit on jax: batched projected Newton, started from several POI seeds.

One toy's fit (a batch of toys is one compiled call):

1. its inputs are prepared once (the sparse likelihood gathers the per-event arrays of the
   events the toy drew, :meth:`~.sparse.SparseLikelihood.gather`);
2. global search along the POI (``n_starts`` > 1 and a free POI): ``−2 ln L`` is evaluated
   on a grid of POI values (:func:`poi_grid`, uniform in √μ, the other parameters at the
   start); the grid's local minima, best first, then its other points by value, become the
   seeds besides the given start.
   Interference models have their second minimum along the POI (quadratic in √μ: μ ≈ 0 and
   μ ≈ 2 for background-like data in the off-shell example), so this is where a single start
   picks the basin by accident;
3. projected Newton from each start; every (toy, start) pair is a lane, and the lanes are
   iterated by :func:`~.lanes.run_lanes` (a window of lanes refilled with unfinished ones
   at each iteration, so the batch does not wait for its slowest fit):

   * exact gradient and Hessian (``evaluation``: for the sparse likelihood from per-event
     sums, :mod:`.sparse_derivatives`; otherwise forward-over-reverse autodiff,
     :class:`AutodiffEvaluation`),
   * box constraints by projection: a parameter at a bound whose gradient points outward
     is held for that step, the step is clipped into the bounds,
   * saddle-free Newton steps: the Hessian's eigenvalues by their absolute value, so a step
     goes downhill also where ``−2 ln L`` is concave (between two basins; plain Newton
     converges to the maximum there),
   * damping: the step is divided by 1 + λ, λ grows after a rejected step and shrinks after
     an accepted one, so a step never increases ``−2 ln L`` and never lands where it is +∞,
   * a second trial point per iteration with the POI stepped by Newton in u = √(μ − lo):
     interference models are smooth in √μ, not in μ, so minima at or just above μ = 0 are
     reached in a step or two instead of being approached geometrically,
   * per-start convergence: the Hessian on the free parameters is positive definite and
     ``½ gᵀH⁻¹g < edm_tol``; then one more undamped step takes it to round-off;

4. the lowest converged minimum is the fit; the minima of all starts are returned too.
"""

from __future__ import annotations

from typing import Any

from .lanes import run_lanes

__all__ = ["GRID_POINTS", "build_solver", "poi_grid"]

GRID_POINTS = 16
"""POI values of the coarse scan that seeds a global toy fit."""


def poi_grid(lo: float, hi: float, n: int = GRID_POINTS, xp: Any = None) -> Any:
    """``n`` POI values strictly inside ``[lo, hi]``, as the scalar fits' curve
    (:func:`ratiofactory.infer.minima.curve_grid`): uniform in √(μ − lo) when ``lo ≥ 0``
    (interference minima sit near zero), uniform otherwise.

    >>> [round(float(v), 3) for v in poi_grid(0.0, 10.0, 4)]
    [0.4, 1.6, 3.6, 6.4]
    """
    import numpy as np

    xp = np if xp is None else xp
    steps = (xp.arange(n) + 1.0) / (n + 1)
    return lo + (hi - lo) * xp.where(lo >= 0, steps**2, steps)


def _seeds(values: Any, grid: Any, n_seeds: int) -> Any:
    """The grid's local minima (best first), then its other points by value (a point next
    to the only local minimum can still lie in another basin of the full profile: 1 toy in
    1000 of the off-shell example finds its global minimum only from there)."""
    import jax.numpy as jnp

    finite = jnp.isfinite(values)
    left = jnp.concatenate([jnp.array([jnp.inf]), values[:-1]])
    right = jnp.concatenate([values[1:], jnp.array([jnp.inf])])
    local = finite & (values <= left) & (values <= right)
    rank = jnp.where(local, values, jnp.where(finite, values + 1e12, jnp.inf))
    return grid[jnp.argsort(rank)[:n_seeds]]


class AutodiffEvaluation:
    """``−2 ln L`` as ``twice_nll(x, *inputs)``, derivatives by forward-over-reverse autodiff;
    the interface of :class:`~.sparse_derivatives.SparseEvaluation` (no per-event terms)."""

    shares_terms = True

    def __init__(self, twice_nll: Any) -> None:
        self.twice_nll = twice_nll

    def terms(self, pars: Any, inputs: Any, order: int = 2) -> None:
        return None

    def value(self, pars: Any, inputs: Any, terms: None) -> Any:
        return self.twice_nll(pars, *inputs)

    def value_grad_hess(self, pars: Any, inputs: Any, terms: None) -> tuple[Any, Any, Any]:
        import jax

        def grad_with_aux(y: Any) -> Any:
            value, grad = jax.value_and_grad(self.twice_nll)(y, *inputs)
            return grad, (value, grad)

        hess, (value, grad) = jax.jacfwd(grad_with_aux, has_aux=True)(pars)
        return value, grad, hess

    def curve(self, pars: Any, poi_index: int, mus: Any, inputs: Any) -> Any:
        import jax

        return jax.vmap(lambda mu: self.twice_nll(pars.at[poi_index].set(mu), *inputs))(mus)


def build_solver(evaluation: Any, prepare: Any, max_iter: int, edm_tol: float, n_starts: int,
                 poi_index: int | None, window: bool = True) -> Any:
    """``jit`` of the batch fit for ``evaluation`` (:class:`AutodiffEvaluation` or
    :class:`~.sparse_derivatives.SparseEvaluation`) with ``inputs = (prepare(data, arrays),
    arrays)`` per toy (``data`` a pytree per toy, ``arrays`` shared by all toys);
    ``window``: step a refilled window of lanes (False: the plain vmapped loop, for comparisons).

    The compiled function takes ``(x0 (n, p), data, free, lo, hi, arrays)`` and returns the
    best fit per toy ``(values (n, p), −2 ln L (n,), converged (n,))`` and every start's
    ``(−2 ln L (n, S), POI (n, S), iterations (n, S))``.
    """
    import jax
    import jax.numpy as jnp

    def reduced(x, g, h, free, lo, hi):
        """Gradient and Hessian on the parameters that may move (identity elsewhere)."""
        held = ((x <= lo) & (g > 0)) | ((x >= hi) & (g < 0))
        moving = free & ~held
        g_m = jnp.where(moving, g, 0.0)
        h_m = jnp.where(moving[:, None] & moving[None, :], h, 0.0) + jnp.diag(jnp.where(moving, 0.0, 1.0))
        return g_m, h_m

    def diagnose(x, value, g, h, box):
        g_m, h_m = reduced(x, g, h, *box)
        chol = jnp.linalg.cholesky(h_m)
        posdef = jnp.all(jnp.isfinite(chol))
        newton = jax.scipy.linalg.cho_solve((chol, True), g_m)
        edm = 0.5 * jnp.dot(g_m, newton)
        return posdef & jnp.isfinite(value) & (edm < edm_tol) & (edm >= 0)

    def root_trial(x, g, h, x_step, lo, hi):
        """``x_step`` with the POI from a Newton step in u = √(μ − lo): interference models
        are smooth in √μ, not in μ, so near μ = lo this reaches the minimum (or the bound,
        u ≤ 0) in a step or two where Newton in μ creeps towards it geometrically."""
        if poi_index is None:
            return x_step
        i = poi_index
        u = jnp.sqrt(jnp.maximum(x[i] - lo[i], 0.0))
        g_u = 2.0 * u * g[i]
        h_u = 4.0 * u * u * h[i, i] + 2.0 * g[i]
        u_new = jnp.where(h_u > 0, u - g_u / jnp.where(h_u > 0, h_u, 1.0), 0.0)
        mu = lo[i] + jnp.maximum(u_new, 0.0) ** 2
        return x_step.at[i].set(jnp.clip(mu, lo[i], hi[i]))

    def body(state, inputs, box):
        free, lo, hi = box
        x, value, g, h, lam, iteration, converged, probing, _ = state
        polish = converged  # one undamped step after convergence takes the EDM to round-off
        lam = jnp.where(polish, 0.0, lam)
        g_m, h_m = reduced(x, g, h, *box)
        # saddle-free Newton: curvatures by their absolute value, so that a step never heads
        # for a maximum (between the basins of an interference model −2 ln L is concave in μ)
        curvature, vectors = jnp.linalg.eigh(h_m)
        size = jnp.maximum(jnp.abs(curvature), 1e-12)
        step = -vectors @ ((vectors.T @ g_m) / (size * (1.0 + lam)))
        floor = lo if poi_index is None else lo.at[poi_index].add(1e-12 * (hi[poi_index] - lo[poi_index]))
        x_step = jnp.where(free, jnp.clip(x + step, floor, hi), x)
        # the second trial: the POI stepped in √(μ − lo), which may land on μ = lo; a bound
        # is kept only if the gradient there points out of the box (else the minimum is
        # inside and the trial is dropped for the rest of this fit)
        trying = probing & ~polish
        x_alt = jnp.where(trying & free, root_trial(x, g, h, x_step, lo, hi), x_step)
        # per-event terms at the step's α serve both trials and the derivatives (x_alt and
        # x_new differ from x_step in the POI only)
        t_step = evaluation.terms(x_step, inputs)
        t_alt = t_step if evaluation.shares_terms else evaluation.terms(x_alt, inputs)
        v_step, v_alt = evaluation.value(x_step, inputs, t_step), evaluation.value(x_alt, inputs, t_alt)
        took_alt = jnp.isfinite(v_alt) & (v_alt < v_step)
        x_new = jnp.where(took_alt, x_alt, x_step)
        t_new = t_step if evaluation.shares_terms else evaluation.terms(x_new, inputs)
        v_new, g_new, h_new = evaluation.value_grad_hess(x_new, inputs, t_new)
        on_bound = took_alt & free & ((x_new <= lo) | (x_new >= hi)) & ((x_step > lo) & (x_step < hi))
        holds = ((x_new <= lo) & (g_new > 0)) | ((x_new >= hi) & (g_new < 0))
        bad_alt = jnp.any(on_bound & ~holds)
        accept = jnp.isfinite(v_new) & (v_new <= value + 1e-10) & jnp.all(jnp.isfinite(g_new)) & ~bad_alt
        pick = lambda new, old: jnp.where(accept, new, old)
        x, value, g, h = pick(x_new, x), pick(v_new, value), pick(g_new, g), pick(h_new, h)
        lam = jnp.where(accept, lam * 0.1, jnp.where(bad_alt, lam, jnp.maximum(lam * 4.0, 1.0)))
        converged = polish | diagnose(x, value, g, h, box)
        finished = polish | (iteration + 1 >= max_iter)
        return x, value, g, h, lam, iteration + 1, converged, probing & ~bad_alt, finished

    def initial(x0, skip):
        # the first iteration evaluates the start (value +inf, zero gradient: a zero step),
        # so that the value, gradient and Hessian appear once in the compiled program; a
        # skipped start is finished before it begins (value +inf, not converged)
        n = x0.shape[0]
        return (x0, jnp.asarray(jnp.inf), jnp.zeros(n), jnp.eye(n), jnp.asarray(0.0), 0, jnp.asarray(False),
                jnp.asarray(True), skip)

    def starts(x0, inputs, box):
        """(S, p) start points and whether each is used: the given start, then the seeds from
        the POI curve (all skipped when the POI is fixed)."""
        if n_starts <= 1 or poi_index is None:
            return x0[None, :], jnp.ones(1, dtype=bool)
        free, lo, hi = box
        grid = poi_grid(lo[poi_index], hi[poi_index], GRID_POINTS, jnp)
        values = evaluation.curve(x0, poi_index, grid, inputs)
        seeds = _seeds(values, grid, n_starts - 1)
        seeded = jnp.tile(x0, (n_starts - 1, 1)).at[:, poi_index].set(seeds)
        use = jnp.broadcast_to(free[poi_index], seeds.shape)  # a fixed POI: only the given start
        return jnp.concatenate([x0[None, :], seeded]), jnp.concatenate([jnp.ones(1, dtype=bool), use])

    def best_of(xs, values, converged):
        score = jnp.where(converged & jnp.isfinite(values), values, jnp.inf)
        best = jnp.argmin(jnp.where(jnp.any(jnp.isfinite(score)), score, jnp.where(jnp.isfinite(values), values,
                                                                                        jnp.inf)))
        return xs[best], values[best], converged[best]

    def fit_batch(x0, data, free, lo, hi, arrays):
        box = (free, lo, hi)
        prepared = jax.vmap(prepare, in_axes=(0, None))(data, arrays)
        points, used = jax.vmap(lambda x, p: starts(x, (p, arrays), box))(x0, prepared)
        n, n_lanes_per_toy, n_pars = points.shape
        toy_of_lane = jnp.repeat(jnp.arange(n), n_lanes_per_toy)
        state = jax.vmap(initial)(points.reshape(-1, n_pars), ~used.reshape(-1))
        step = jax.vmap(lambda s, p: body(s, (p, arrays), box))
        inputs_of = lambda lanes: jax.tree_util.tree_map(lambda a: a[toy_of_lane[lanes]], prepared)
        state = run_lanes(step, lambda s: s[8], state, inputs_of, window)
        per_toy = lambda a: a.reshape((n, n_lanes_per_toy, *a.shape[1:]))
        xs, values, converged, iterations = per_toy(state[0]), per_toy(state[1]), per_toy(state[6]), per_toy(state[5])
        best_x, best_value, best_converged = jax.vmap(best_of)(xs, values, converged)
        poi = jnp.where(used, xs[:, :, poi_index], jnp.nan) if poi_index is not None else jnp.zeros(values.shape)
        return best_x, best_value, best_converged, values, poi, iterations

    return jax.jit(fit_batch)
