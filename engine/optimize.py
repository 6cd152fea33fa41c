"""L-BFGS in numpy: unconstrained minimisation of a smooth function given its value and gradient.

Teach fits its heads with it (full batch, thousands to hundreds of thousands of parameters). It does what
scipy.optimize.minimize(method="L-BFGS-B", jac=True) does without bounds, step for step up to rounding (Teach's
fits stop at max_iter, so the path matters, not only the minimum), so that the app need not ship SciPy:

- the last 10 steps model the inverse Hessian (two-loop recursion, initial scale s.y / y.y); a pair with too
  little curvature is skipped, so the model stays positive definite;
- each step comes from Moré and Thuente's line search (as L-BFGS-B's), which meets the strong Wolfe conditions
  (sufficient decrease 1e-3, curvature 0.9) within 20 evaluations; the first step moves x a distance of 1, later
  ones start at 1; when a search fails the model is dropped and steepest descent tried once;
- it stops when the largest gradient component is at most gtol (1e-5), when a step lowers the value by at most
  ftol (2.2e-9) relative to it, or after max_iter steps or max_evals evaluations.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Callable

import numpy as np

Objective = Callable[..., tuple[float, np.ndarray]]


@dataclass
class Result:
    x: np.ndarray
    fun: float
    grad: np.ndarray
    iterations: int
    evaluations: int
    converged: bool  # a tolerance was met (False: max_iter / max_evals ran out, or no further descent was found)
    message: str


def minimize_lbfgs(fun: Objective, x0: np.ndarray, args: tuple = (), *, max_iter: int = 15000,
                   max_evals: int = 15000, memory: int = 10, gtol: float = 1e-5,
                   ftol: float = 2.220446049250313e-09, max_line_search: int = 20) -> Result:
    """Minimise fun(x, *args) -> (value, gradient) from x0 (any shape; searched as a flat float64 vector)."""
    x = np.array(x0, dtype=np.float64).ravel()
    evaluations = 0

    def evaluate(point: np.ndarray) -> tuple[float, np.ndarray]:
        nonlocal evaluations
        evaluations += 1
        value, grad = fun(point, *args)
        return float(value), np.asarray(grad, dtype=np.float64).ravel()

    f, g = evaluate(x)
    if not np.isfinite(f) or not np.all(np.isfinite(g)):
        raise ValueError("the objective is not finite at the starting point")
    history: deque[tuple[np.ndarray, np.ndarray, float]] = deque(maxlen=memory)  # (s, y, 1 / s.y)

    def search(direction: np.ndarray, slope: float, iteration: int):
        budget = min(max_line_search, max_evals - evaluations)
        if budget <= 0:
            return None
        # Before any curvature is known the scale of a step is not either: the first one has length 1.
        first = 1.0 / np.linalg.norm(direction) if iteration == 1 else 1.0
        found = _wolfe_step(evaluate, x, f, direction, slope, first, budget)
        return None if found is None else (found[0], direction, found[1], found[2])

    if np.max(np.abs(g), initial=0.0) <= gtol:
        return Result(x, f, g, 0, evaluations, True, "the gradient is below gtol at the start")

    for iteration in range(1, max_iter + 1):
        direction = -_inverse_hessian_times(g, history)
        slope = float(g @ direction)
        if not slope < 0:  # rounding made the model useless: fall back to steepest descent
            history.clear()
            direction, slope = -g, -float(g @ g)
        found = search(direction, slope, iteration)
        if found is None and history:  # a stale model can point badly: forget it and try steepest descent
            history.clear()
            found = search(-g, -float(g @ g), iteration)
        if found is None:
            message = ("the evaluation limit was reached" if evaluations >= max_evals
                       else "the line search found no acceptable step")
            return Result(x, f, g, iteration - 1, evaluations, False, message)

        step, direction, f_new, g_new = found
        s, y = step * direction, g_new - g
        sy = float(s @ y)
        if sy > np.finfo(np.float64).eps * step * -float(g @ direction):  # L-BFGS-B's curvature test
            history.append((s, y, 1.0 / sy))
        x, f_old, f, g = x + s, f, f_new, g_new
        if np.max(np.abs(g)) <= gtol:
            return Result(x, f, g, iteration, evaluations, True, "the gradient is below gtol")
        if (f_old - f) <= ftol * max(abs(f_old), abs(f), 1.0):
            return Result(x, f, g, iteration, evaluations, True, "the relative reduction of the value is below ftol")
        if evaluations >= max_evals:
            return Result(x, f, g, iteration, evaluations, False, "the evaluation limit was reached")
    return Result(x, f, g, max_iter, evaluations, False, "the iteration limit was reached")


def _inverse_hessian_times(g: np.ndarray, history) -> np.ndarray:
    """H g for the L-BFGS inverse Hessian of the stored pairs (Nocedal & Wright, algorithm 7.4)."""
    q = g.copy()
    alphas = []
    for s, y, rho in reversed(history):
        alpha = rho * float(s @ q)
        q -= alpha * y
        alphas.append(alpha)
    if history:
        s, y, rho = history[-1]
        q *= 1.0 / (rho * float(y @ y))  # initial H = (s.y / y.y) I: the scale of the latest curvature
    for (s, y, rho), alpha in zip(history, reversed(alphas)):
        q += (alpha - rho * float(y @ q)) * s
    return q


def _wolfe_step(evaluate, x, f0, direction, slope0, step, budget, ftol=1e-3, gtol=0.9, xtol=0.1, step_max=1e10):
    """A step length meeting the strong Wolfe conditions along `direction`, with the value and gradient there, or
    None when `budget` evaluations do not find one. This is Moré and Thuente's search (MINPACK-2 dcsrch, as in
    L-BFGS-B): keep an interval [stx, sty] known to hold an acceptable step, and choose each trial by safeguarded
    cubic or quadratic interpolation of the values and slopes seen (_interpolate).
    """
    test_slope = ftol * slope0
    bracketed, stage = False, 1  # stage 2 once a step gives sufficient decrease and an upward slope
    stx = sty = 0.0
    fx = fy = f0
    gx = gy = slope0
    width, width_before = step_max, 2.0 * step_max
    low, high = 0.0, 5.0 * step  # where the next trial may fall
    for _ in range(budget):
        value, grad = evaluate(x + step * direction)
        if not (np.isfinite(value) and np.all(np.isfinite(grad))):
            step = stx + 0.5 * (step - stx)  # past where the function is finite: come back towards the best step
            continue
        slope = float(grad @ direction)
        f_test = f0 + step * test_slope
        if value <= f_test and abs(slope) <= -gtol * slope0:
            return step, value, grad
        if bracketed and (step <= low or step >= high or high - low <= xtol * high):
            return None  # rounding errors prevent progress
        if step == step_max and value <= f_test and slope <= test_slope:
            return None  # the step would have to be longer than step_max
        if stage == 1 and value <= f_test and slope >= 0:
            stage = 2
        if stage == 1 and fx >= value > f_test:
            # Interpolate psi(t) = f(t) - f0 - ftol t f'(0), whose minimiser the interval is made to hold.
            stx, fx, gx, sty, fy, gy, step, bracketed = _interpolate(
                stx, fx - stx * test_slope, gx - test_slope, sty, fy - sty * test_slope, gy - test_slope,
                step, value - step * test_slope, slope - test_slope, bracketed, low, high)
            fx, fy, gx, gy = fx + stx * test_slope, fy + sty * test_slope, gx + test_slope, gy + test_slope
        else:
            stx, fx, gx, sty, fy, gy, step, bracketed = _interpolate(
                stx, fx, gx, sty, fy, gy, step, value, slope, bracketed, low, high)
        if bracketed:
            if abs(sty - stx) >= 0.66 * width_before:  # the interval shrinks too slowly: bisect
                step = stx + 0.5 * (sty - stx)
            width_before, width = width, abs(sty - stx)
            low, high = min(stx, sty), max(stx, sty)
        else:  # extrapolate, between 1.1 and 4 times the last advance
            low, high = step + 1.1 * (step - stx), step + 4.0 * (step - stx)
        step = min(max(step, 0.0), step_max)
        if bracketed and (step <= low or step >= high or high - low <= xtol * high):
            step = stx
    return None


def _interpolate(stx, fx, dx, sty, fy, dy, stp, fp, dp, bracketed, low, high):
    """MINPACK-2 dcstep: from the best step stx (value fx, slope dx), the other end sty of the interval and
    the trial stp, the next trial and the updated interval. Four cases, by what the trial showed."""
    opposite = np.sign(dp) * np.sign(dx) < 0
    if fp > fx:  # 1. a higher value: a minimum lies between stx and stp; cubic, or halfway to the quadratic's
        stpc = stx + _cubic_ratio(stx, fx, dx, stp, fp, dp) * (stp - stx)
        stpq = stx + dx / ((fx - fp) / (stp - stx) + dx) / 2.0 * (stp - stx)
        stpf = stpc if abs(stpc - stx) < abs(stpq - stx) else stpc + (stpq - stpc) / 2.0
        bracketed = True
    elif opposite:  # 2. lower, and the slope changed sign: cubic or secant, whichever is farther from stp
        stpc = stp + _cubic_ratio(stp, fp, dp, stx, fx, dx) * (stx - stp)
        stpq = stp + dp / (dp - dx) * (stx - stp)
        stpf = stpc if abs(stpc - stp) > abs(stpq - stp) else stpq
        bracketed = True
    elif abs(dp) < abs(dx):  # 3. lower, same sign, flatter: the cubic only if its minimum lies beyond stp
        theta = 3.0 * (fx - fp) / (stp - stx) + dx + dp
        s = max(abs(theta), abs(dx), abs(dp))
        gamma = s * np.sqrt(max(0.0, (theta / s) ** 2 - (dx / s) * (dp / s)))
        gamma = -gamma if stp > stx else gamma
        r = ((gamma - dp) + theta) / ((gamma + (dx - dp)) + gamma)
        stpc = stp + r * (stx - stp) if r < 0 and gamma != 0 else (high if stp > stx else low)
        stpq = stp + dp / (dp - dx) * (stx - stp)
        if bracketed:
            stpf = stpc if abs(stpc - stp) < abs(stpq - stp) else stpq
            reach = stp + 0.66 * (sty - stp)
            stpf = min(reach, stpf) if stp > stx else max(reach, stpf)
        else:
            stpf = stpc if abs(stpc - stp) > abs(stpq - stp) else stpq
            stpf = min(max(stpf, low), high)
    elif bracketed:  # 4. lower, same sign, no flatter: cubic between stp and sty
        stpf = stp + _cubic_ratio(stp, fp, dp, sty, fy, dy) * (sty - stp)
    else:
        stpf = high if stp > stx else low
    if fp > fx:
        sty, fy, dy = stp, fp, dp
    else:
        if opposite:
            sty, fy, dy = stx, fx, dx
        stx, fx, dx = stp, fp, dp
    return stx, fx, dx, sty, fy, dy, stpf, bracketed


def _cubic_ratio(a, fa, da, b, fb, db) -> float:
    """Where the cubic through (a, fa, slope da) and (b, fb, slope db) has its minimum, as a fraction of the
    way from a to b (dcstep's overflow-safe form)."""
    theta = 3.0 * (fa - fb) / (b - a) + da + db
    s = max(abs(theta), abs(da), abs(db))
    gamma = s * np.sqrt(max(0.0, (theta / s) ** 2 - (da / s) * (db / s)))
    gamma = -gamma if b < a else gamma
    return ((gamma - da) + theta) / (((gamma - da) + gamma) + db)
