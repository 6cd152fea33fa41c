"""engine/optimize.py: L-BFGS on functions whose minimum is known, and against SciPy's L-BFGS-B (in the test
environment only, through scikit-image) on the kind of problem Teach gives it."""

from __future__ import annotations

import numpy as np
import pytest

from engine.optimize import _wolfe_step, minimize_lbfgs


def quadratic(seed: int = 0, n: int = 40, condition: float = 100.0):
    """0.5 (x - c)'A(x - c) with A's eigenvalues spread from 1 to `condition`: the minimum is c (written
    around c, so that the value keeps its precision near the minimum)."""
    rng = np.random.default_rng(seed)
    basis, _ = np.linalg.qr(rng.standard_normal((n, n)))
    a = basis @ np.diag(np.geomspace(1.0, condition, n)) @ basis.T
    c = rng.standard_normal(n)
    return (lambda x: (0.5 * (x - c) @ a @ (x - c), a @ (x - c))), c


def rosenbrock(x: np.ndarray) -> tuple[float, np.ndarray]:
    value = np.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)
    grad = np.zeros_like(x)
    grad[:-1] = -400.0 * x[:-1] * (x[1:] - x[:-1] ** 2) - 2.0 * (1.0 - x[:-1])
    grad[1:] += 200.0 * (x[1:] - x[:-1] ** 2)
    return value, grad


def test_quadratic_reaches_its_known_minimum():
    fun, solution = quadratic()
    tight = minimize_lbfgs(fun, np.zeros_like(solution), gtol=1e-9, ftol=0.0)
    assert tight.converged, tight.message
    np.testing.assert_allclose(tight.x, solution, atol=1e-8)  # |x - x*| <= |gradient| / smallest eigenvalue (1)
    default = minimize_lbfgs(fun, np.zeros_like(solution))  # the tolerances Teach uses
    assert default.converged and np.abs(default.x - solution).max() < 1e-3
    assert default.iterations < 100


@pytest.mark.parametrize("start", [[-1.2, 1.0], [-1.2, 1.0] * 5])
def test_rosenbrock_from_the_standard_start(start):
    result = minimize_lbfgs(rosenbrock, np.array(start))
    assert result.converged, result.message
    np.testing.assert_allclose(result.x, 1.0, atol=1e-4)
    assert result.fun < 1e-8
    assert result.iterations < 150 and result.evaluations < 200


def test_iteration_limit_is_kept_and_reported():
    result = minimize_lbfgs(rosenbrock, np.array([-1.2, 1.0]), max_iter=5)
    assert result.iterations == 5 and not result.converged
    assert "iteration limit" in result.message
    assert result.fun < rosenbrock(np.array([-1.2, 1.0]))[0]


def test_extra_arguments_and_shapes():
    fun, solution = quadratic(seed=1, n=12)
    result = minimize_lbfgs(lambda x, scale: (scale * fun(x)[0], scale * fun(x)[1]), np.zeros((3, 4)), args=(2.0,),
                            gtol=1e-9, ftol=0.0)
    assert result.x.shape == (12,)
    np.testing.assert_allclose(result.x, solution, atol=1e-7)


def test_line_search_meets_the_wolfe_conditions_even_past_a_cliff():
    """f(t) = (t - 1)^2, infinite beyond t = 3; the first trial (t = 10) lands in the infinite part."""
    def fun(x):
        t = x[0]
        return (np.inf, np.array([np.nan])) if t > 3 else ((t - 1.0) ** 2, np.array([2.0 * (t - 1.0)]))

    calls = []
    def evaluate(x):
        calls.append(x[0])
        return fun(x)

    f0, g0 = fun(np.zeros(1))
    slope0 = float(g0 @ np.ones(1))
    step, value, grad = _wolfe_step(evaluate, np.zeros(1), f0, np.ones(1), slope0, 10.0, 20)
    assert value <= f0 + 1e-3 * step * slope0  # sufficient decrease
    assert abs(grad[0]) <= 0.9 * abs(slope0)  # strong curvature condition
    assert len(calls) <= 20


def test_a_non_finite_start_is_refused():
    with pytest.raises(ValueError, match="not finite"):
        minimize_lbfgs(lambda x: (np.nan, x), np.ones(3))


def test_logistic_regression_matches_scipys_lbfgsb():
    """L2-regularised softmax regression (Teach's logistic-regression head) is strictly convex: both optimisers
    must find the same minimum."""
    optimize = pytest.importorskip("scipy.optimize")
    rng = np.random.default_rng(5)
    n, d, classes = 120, 60, 4
    centres = rng.normal(size=(classes, d))
    y = rng.integers(0, classes, n)
    x = centres[y] + 2.0 * rng.normal(size=(n, d))
    onehot = np.eye(classes)[y]

    def loss(theta):
        w, b = theta[: d * classes].reshape(d, classes), theta[d * classes:]
        logits = x @ w + b
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        p /= p.sum(axis=1, keepdims=True)
        g = (p - onehot) / n
        value = -np.log(p[np.arange(n), y]).mean() + 0.5 * 1e-2 * (w * w).sum()
        return value, np.concatenate([(x.T @ g + 1e-2 * w).ravel(), g.sum(axis=0)])

    start = np.zeros(d * classes + classes)
    ours = minimize_lbfgs(loss, start, max_iter=300)
    theirs = optimize.minimize(loss, start, jac=True, method="L-BFGS-B", options={"maxiter": 300})
    assert ours.converged, ours.message
    assert abs(ours.fun - theirs.fun) < 1e-6
    assert ours.iterations < 2 * theirs.nit + 10
