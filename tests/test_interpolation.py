"""Interpolation codes 0, 1, 4: fast vs slow reference vs pyhf; per-event arrays; jax."""

from __future__ import annotations

import math

import numpy as np
import pyhf
import pytest

from ratiofactory.errors import RatiofactoryError
from ratiofactory.interpolation import (
    CODES,
    code4_weight_slopes,
    code4_weights,
    interpolate,
    interpolate_reference,
    prepare_interpolation,
)

ALPHAS = [
    -2.5,
    -1.7,
    -1.3,
    -1.0,
    -0.999999,
    -0.5,
    -0.3,
    -1e-9,
    0.0,
    1e-9,
    0.4,
    0.5,
    0.999999,
    1.0,
    1.2,
    2.2,
    2.5,
]
HI_LO = [
    (1.1, 0.9),  # hi > 1 > lo
    (0.8, 1.3),  # hi < 1 < lo
    (1.5, 1.2),  # both up
    (0.6, 0.7),  # both down
    (3.0, 0.2),  # large
    (1.2, 1 / 1.2),  # symmetric
    (1.0, 1.0),  # no effect
    (1 + 1e-7, 1 - 1e-7),  # tiny
]


def relative_difference(a, b):
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-300))


@pytest.mark.parametrize("code", CODES)
def test_fast_agrees_with_reference(code):
    worst = max(
        relative_difference(
            interpolate(code, alpha, hi, lo), interpolate_reference(code, alpha, hi, lo)
        )
        for alpha in ALPHAS
        for hi, lo in HI_LO
    )
    assert worst < 1e-12


@pytest.mark.parametrize("code", CODES)
def test_anchor_points(code):
    for hi, lo in HI_LO:
        for interp in (interpolate, interpolate_reference):
            assert float(interp(code, 0.0, hi, lo)) == 1.0
            assert float(interp(code, 1.0, hi, lo)) == pytest.approx(hi, rel=1e-14)
            assert float(interp(code, -1.0, hi, lo)) == pytest.approx(lo, rel=1e-14)


def test_hand_computed_values():
    assert float(interpolate("code0", 2.0, 1.1, 0.9)) == pytest.approx(1.2, rel=1e-15)
    assert float(interpolate("code0", -0.5, 1.2, 0.7)) == pytest.approx(0.85, rel=1e-15)
    assert float(interpolate("code1", 0.5, 1.21, 0.8)) == pytest.approx(1.1, rel=1e-15)
    assert float(interpolate("code1", -2.0, 1.21, 0.8)) == pytest.approx(0.64, rel=1e-15)
    assert float(interpolate("code4", -2.0, 1.1, 0.9)) == pytest.approx(0.81, rel=1e-15)
    assert float(interpolate("code4", 2.5, 1.1, 0.9)) == pytest.approx(1.1**2.5, rel=1e-15)
    # hi = e, lo = 1/e makes the code1 factor e^α everywhere; the code4 polynomial differs inside
    assert float(interpolate("code1", 0.3, math.e, 1 / math.e)) == pytest.approx(
        math.exp(0.3), rel=1e-15
    )
    assert float(interpolate("code4", 0.3, math.e, 1 / math.e)) != pytest.approx(
        math.exp(0.3), rel=1e-6
    )


def test_reference_polynomial_matches_exponential_to_second_order_at_plus_minus_one():
    hi, lo, h = 1.3, 0.85, 1e-4
    for side, outer in ((1.0, lambda a: hi**a), (-1.0, lambda a: lo ** (-a))):
        inner = [interpolate_reference("code4", side * (1 - k * h), hi, lo) for k in (1, 2)]
        at = outer(side)
        slope_inner = side * (at - inner[0]) / h  # one-sided, error O(h)
        curvature_inner = (at - 2 * inner[0] + inner[1]) / h**2
        slope_outer = (outer(side + 1e-6) - outer(side - 1e-6)) / 2e-6
        curvature_outer = (outer(side + 1e-4) - 2 * at + outer(side - 1e-4)) / 1e-8
        assert slope_inner == pytest.approx(slope_outer, rel=1e-3)
        assert curvature_inner == pytest.approx(curvature_outer, rel=1e-2)


def test_code4_weights_sum_rule():
    """At α = ±1 the weights pick exactly b_0 = hi − 1 and b_1 = lo − 1; at 0 they vanish."""
    for alpha, expected in ((1.0, [1, 0, 0, 0, 0, 0]), (-1.0, [0, 1, 0, 0, 0, 0]), (0.0, [0] * 6)):
        np.testing.assert_allclose(code4_weights(alpha), expected, atol=1e-15)


def test_unknown_code_is_rejected():
    with pytest.raises(
        RatiofactoryError, match="unknown interpolation code 'code4p'; expected one of"
    ):
        interpolate("code4p", 0.5, 1.1, 0.9)
    with pytest.raises(RatiofactoryError, match="unknown interpolation code 'code2'"):
        interpolate_reference("code2", 0.5, 1.1, 0.9)


# --- pyhf as the reference -------------------------------------------------------------


def array_namespace(backend):
    if backend == "numpy":
        return np
    import jax.numpy

    return jax.numpy


def pyhf_factor(code, alpha, hi, lo):
    """pyhf's interpolator on histogramssets [[[lo, nom=1, hi]]] (bins = events)."""
    hi, lo = np.atleast_1d(hi), np.atleast_1d(lo)
    histogramssets = [[[lo.tolist(), np.ones_like(hi).tolist(), hi.tolist()]]]
    interpolator = getattr(pyhf.interpolators, code)(histogramssets, subscribe=False)
    result = interpolator(pyhf.tensorlib.astensor([[alpha]]))
    result = np.asarray(pyhf.tensorlib.tolist(result))[0, 0, 0]
    return 1 + result if code == "code0" else result  # code0 gives the additive delta


@pytest.mark.parametrize("code", CODES)
def test_agrees_with_pyhf_on_scalars(backend, code):
    namespace = array_namespace(backend)
    worst = 0.0
    for alpha in ALPHAS:
        for hi, lo in HI_LO:
            ours = interpolate(code, namespace.asarray(alpha), hi, lo, namespace)
            worst = max(worst, relative_difference(ours, pyhf_factor(code, alpha, hi, lo)))
    assert worst < 1e-12


@pytest.fixture
def per_event_hi_lo():
    rng = np.random.default_rng(20240611)
    n = 1000
    hi = np.exp(rng.normal(0.0, 0.3, n))  # mixes hi < 1 and hi > 1
    lo = np.exp(rng.normal(0.0, 0.3, n))
    hi[:3], lo[:3] = [1.0, 1.2, 0.8], [1.0, 0.8, 1.2]
    return hi, lo


@pytest.mark.parametrize("code", CODES)
def test_per_event_arrays_agree_with_pyhf_and_reference(backend, code, per_event_hi_lo):
    namespace = array_namespace(backend)
    hi, lo = per_event_hi_lo
    for alpha in (-1.7, -1.3, -1.0, -0.3, 0.0, 0.4, 1.0, 1.2, 2.2):
        ours = np.asarray(
            interpolate(
                code,
                namespace.asarray(alpha),
                namespace.asarray(hi),
                namespace.asarray(lo),
                namespace,
            )
        )
        assert ours.shape == (1000,)
        assert relative_difference(ours, pyhf_factor(code, alpha, hi, lo)) < 1e-12
        if backend == "numpy" and alpha in (-0.3, 0.4):
            reference = [
                interpolate_reference(code, alpha, h, lo_) for h, lo_ in zip(hi, lo, strict=True)
            ]
            assert relative_difference(ours, reference) < 1e-12


@pytest.mark.parametrize("code", CODES)
def test_any_shape_broadcasts(code):
    hi = np.array([[1.1, 0.9, 1.3], [1.0, 2.0, 0.5]])
    lo = np.array([0.95, 1.05, 0.7])  # broadcast against hi's rows
    ours = interpolate(code, -0.6, hi, lo)
    assert ours.shape == (2, 3)
    expected = [
        [interpolate_reference(code, -0.6, h, lo[j]) for j, h in enumerate(row)] for row in hi
    ]
    assert relative_difference(ours, expected) < 1e-12


# --- jax: jit, vmap, grad --------------------------------------------------------------


@pytest.fixture
def jax():
    pyhf.set_backend("jax", precision="64b")  # enables float64 in jax
    import jax

    yield jax
    pyhf.set_backend("numpy", precision="64b")


GRADIENT_ALPHAS = [-1.7, -1.0, -0.3, 0.0, 0.4, 1.0, 1.2, 2.2]


@pytest.mark.parametrize("code", CODES)
def test_jit_and_vmap_over_alpha(jax, code, per_event_hi_lo):
    jnp = jax.numpy
    hi, lo = (jnp.asarray(a) for a in per_event_hi_lo)
    alphas = jnp.asarray(GRADIENT_ALPHAS)
    batched = jax.vmap(jax.jit(lambda a: interpolate(code, a, hi, lo, jnp)))(alphas)
    assert batched.shape == (len(GRADIENT_ALPHAS), 1000)
    for k, alpha in enumerate(GRADIENT_ALPHAS):
        expected = interpolate(code, alpha, per_event_hi_lo[0], per_event_hi_lo[1])
        assert relative_difference(batched[k], expected) < 1e-12


def central_difference(func, alpha, step=1e-5):
    return (func(alpha + step) - func(alpha - step)) / (2 * step)


@pytest.mark.parametrize("code", CODES)
@pytest.mark.parametrize(("hi", "lo"), [(1.1, 0.9), (0.8, 1.3), (1.5, 1.2)])
def test_gradient_agrees_with_finite_differences(jax, code, hi, lo):
    jnp = jax.numpy
    grad = jax.jit(jax.grad(lambda a: interpolate(code, a, hi, lo, jnp)))
    for alpha in GRADIENT_ALPHAS:
        if alpha == 0.0 and code != "code4":
            continue  # code0/code1 have a kink at 0 unless hi·lo = 1 (tested below)
        expected = central_difference(lambda a: interpolate_reference(code, a, hi, lo), alpha)
        assert float(grad(alpha)) == pytest.approx(expected, rel=1e-6), alpha


def test_gradient_at_the_kink_is_the_upper_side(jax):
    jnp = jax.numpy
    hi, lo = 1.5, 1.2
    assert float(jax.grad(lambda a: interpolate("code0", a, hi, lo, jnp))(0.0)) == pytest.approx(
        0.5, rel=1e-15
    )
    assert float(jax.grad(lambda a: interpolate("code1", a, hi, lo, jnp))(0.0)) == pytest.approx(
        math.log(1.5), rel=1e-15
    )


@pytest.mark.parametrize("code", CODES)
def test_per_event_gradient_is_finite_and_right(jax, code, per_event_hi_lo):
    jnp = jax.numpy
    hi, lo = (jnp.asarray(a) for a in per_event_hi_lo)
    weights = jnp.linspace(0.5, 1.5, 1000)

    def weighted_sum(alpha):
        return jnp.sum(weights * interpolate(code, alpha, hi, lo, jnp))

    grad = jax.jit(jax.grad(weighted_sum))
    for alpha in GRADIENT_ALPHAS:
        value = float(grad(alpha))
        assert math.isfinite(value)
        if alpha == 0.0 and code != "code4":
            continue
        expected = central_difference(lambda a: float(weighted_sum(a)), alpha)
        assert value == pytest.approx(expected, rel=1e-6), alpha


def test_code4_has_no_nan_gradient_at_zero_and_plus_minus_one(jax, per_event_hi_lo):
    jnp = jax.numpy
    hi, lo = (jnp.asarray(a) for a in per_event_hi_lo)
    per_event_grad = jax.jacfwd(lambda a: interpolate("code4", a, hi, lo, jnp))
    for alpha in (0.0, 1.0, -1.0):
        gradients = per_event_grad(alpha)
        assert bool(jnp.all(jnp.isfinite(gradients)))
    # at α = 0 the slope is a_1 = [15(hi − lo) − 7(hi ln hi − lo ln lo) + hi ln²hi − lo ln²lo]/16
    up, down = per_event_hi_lo
    log_up, log_down = np.log(up), np.log(down)
    a1 = (
        15 * (up - down) - 7 * (up * log_up - down * log_down) + up * log_up**2 - down * log_down**2
    ) / 16
    np.testing.assert_allclose(per_event_grad(0.0), a1, rtol=1e-12, atol=1e-15)
    second = jax.grad(jax.grad(lambda a: interpolate("code4", a, 1.2, 0.9, jnp)))
    assert all(math.isfinite(float(second(a))) for a in (0.0, 1.0, -1.0))


def test_examples_in_docstrings_run():
    import doctest

    import ratiofactory.interpolation

    result = doctest.testmod(ratiofactory.interpolation, raise_on_error=False)
    assert result.attempted >= 5
    assert result.failed == 0


# --- prepared interpolations and the custom derivative ---------------------------------


@pytest.mark.parametrize("code", CODES)
def test_prepared_equals_interpolate(code, per_event_hi_lo):
    hi, lo = per_event_hi_lo
    prepared = prepare_interpolation(code, hi, lo)
    assert prepared.code == code
    for alpha in GRADIENT_ALPHAS:
        np.testing.assert_array_equal(prepared(alpha), interpolate(code, alpha, hi, lo))


@pytest.mark.parametrize("code", CODES)
def test_scalar_alpha_on_numpy_equals_the_both_branch_path(code, per_event_hi_lo):
    # numpy with one α computes only its own branch; several α at once take both and select
    from ratiofactory.interpolation import _CODES

    hi, lo = per_event_hi_lo
    spec = _CODES[code]
    arrays = spec.arrays(hi, lo, np)
    alphas = np.array(ALPHAS)[:, None]  # one row per α: the both-branch path
    values = spec.value(alphas, arrays, np)
    slopes = spec.slope(alphas, arrays, values, np)
    for row, alpha in enumerate(ALPHAS):
        value = spec.value(alpha, arrays, np)
        np.testing.assert_array_equal(value, values[row])
        np.testing.assert_array_equal(spec.slope(alpha, arrays, value, np), slopes[row])


@pytest.mark.parametrize("code", ["code1", "code4"])
@pytest.mark.parametrize(
    ("hi", "lo", "problem"),
    [
        ([1.1, 0.0, 1.2], 0.9, r"finite hi > 0; hi\[1\] = 0.0"),
        (1.1, [0.9, 0.8, -0.1], r"finite lo > 0; lo\[2\] = -0.1"),
        ([np.nan], 0.9, r"finite hi > 0; hi\[0\] = nan"),
        (1.1, np.inf, r"finite lo > 0; lo\[0\] = inf"),
    ],
)
def test_non_positive_hi_lo_are_refused(code, hi, lo, problem):
    with pytest.raises(RatiofactoryError, match=f"^{code} interpolation needs {problem}$"):
        prepare_interpolation(code, np.asarray(hi), np.asarray(lo))


def test_code0_accepts_any_hi_lo():
    assert float(interpolate("code0", -0.5, 1.5, -0.2)) == pytest.approx(0.4, rel=1e-15)


def test_weight_slopes_are_the_derivatives_of_the_weights(jax):
    jnp = jax.numpy
    autodiff = jax.jacfwd(lambda a: jnp.stack(code4_weights(a)))
    for alpha in (-1.0, -0.6, 0.0, 0.3, 1.0):
        np.testing.assert_allclose(code4_weight_slopes(alpha), autodiff(alpha), atol=1e-14)


@pytest.mark.parametrize("code", CODES)
def test_second_derivative_and_hessian(jax, code, per_event_hi_lo):
    jnp = jax.numpy
    hi, lo = 1.3, 0.85
    second = jax.jit(jax.grad(jax.grad(lambda a: interpolate(code, a, hi, lo, jnp))))
    for alpha in (-1.7, -0.3, 0.4, 2.2):
        step = 1e-4
        expected = (
            interpolate_reference(code, alpha + step, hi, lo)
            - 2 * interpolate_reference(code, alpha, hi, lo)
            + interpolate_reference(code, alpha - step, hi, lo)
        ) / step**2
        assert float(second(alpha)) == pytest.approx(expected, rel=1e-5, abs=1e-7)
    up = prepare_interpolation(
        code, jnp.asarray(per_event_hi_lo[0]), jnp.asarray(per_event_hi_lo[1]), jnp
    )
    down = prepare_interpolation(code, 1.2, 0.7, jnp)

    def total(alphas):
        return jnp.sum(up(alphas[0]) * down(alphas[1]))

    for point in ([0.0, 0.0], [1.0, -1.0], [-0.4, 1.3]):
        hessian = jax.jit(jax.hessian(total))(jnp.asarray(point))
        assert bool(jnp.all(jnp.isfinite(hessian)))
        if code == "code4" or 0.0 not in point:
            grad = jax.grad(total)
            for k in range(2):
                shift = np.zeros(2)
                shift[k] = 1e-5
                column = (
                    grad(jnp.asarray(point) + shift) - grad(jnp.asarray(point) - shift)
                ) / 2e-5
                # at α = ±1 the third derivative jumps: central differences err by O(step)
                rtol = 1e-4 if 1.0 in np.abs(point) else 1e-6
                np.testing.assert_allclose(hessian[:, k], column, rtol=rtol)


def test_vmap_of_gradient_over_alpha(jax, per_event_hi_lo):
    jnp = jax.numpy
    prepared = prepare_interpolation("code4", *(jnp.asarray(a) for a in per_event_hi_lo), jnp)
    alphas = jnp.asarray(GRADIENT_ALPHAS)
    grad = jax.jit(jax.grad(lambda a: jnp.sum(prepared(a))))
    batched = jax.vmap(grad)(alphas)
    one_by_one = [float(grad(a)) for a in GRADIENT_ALPHAS]
    np.testing.assert_allclose(batched, one_by_one, rtol=1e-14)


def test_gradient_in_hi_is_refused_clearly(jax):
    jnp = jax.numpy
    with pytest.raises(NotImplementedError, match="differentiable in alpha only"):
        jax.grad(lambda h: interpolate("code4", 0.3, h, 0.9, jnp))(1.1)
