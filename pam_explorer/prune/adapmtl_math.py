"""AdapMTL's two formulas as pure functions: adaptive task weights beta_t (paper Eq. 6) and the
relative performance Delta_T against the dense network (paper Eq. 7)."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pam_explorer.core.errors import DataError


def adaptive_weights(loss_history: Mapping[str, Sequence[float]], window: int, lam: float,
                     backbone_size: float, head_sizes: Mapping[str, float]) -> dict[str, float]:
    """Eq. 6: beta_t = (r_t / mean_u r_u)^-1 * lam * |W_B| / sum_u |W_u|.

    r_t = mean of |L_(i-1) - L_i| / L_i over the last ``window`` changes of task t's losses
    (so the last window + 1 values). Until every task has window + 1 losses, or if every r is
    0, the first factor is 1. r_t is floored at 1e-12 (a perfectly flat loss gets a large but
    finite weight). |W| = number of weights; without a backbone (or heads) the size ratio is 1.
    """
    tasks = list(head_sizes)
    hist = {t: list(loss_history.get(t, ()))[-(window + 1):] for t in tasks}
    ratio = backbone_size / sum(head_sizes.values()) if backbone_size > 0 and sum(
        head_sizes.values()) > 0 else 1.0
    rel = {t: 1.0 for t in tasks}
    if all(len(h) == window + 1 for h in hist.values()):
        r = {t: sum(abs(a - b) / max(abs(b), 1e-12) for a, b in zip(h, h[1:])) / window
             for t, h in hist.items()}
        mean = sum(r.values()) / len(r)
        if mean > 0:
            rel = {t: mean / max(r[t], 1e-12) for t in tasks}
    return {t: rel[t] * lam * ratio for t in tasks}


def task_deltas(metrics: Mapping[str, Any], dense_metrics: Mapping[str, Any],
                higher_is_better: bool | Mapping[str, bool] | None = None) -> dict[str, float]:
    """Eq. 7 per task: mean over its metrics j of (-1)^l_j (M_j - M_dense,j) / M_dense,j * 100.

    metrics / dense_metrics: {task: value} or {task: {metric: value}}. higher_is_better: None
    or True (every metric), False, or {metric (or task, for flat values): bool}."""
    if set(metrics) != set(dense_metrics) or not metrics:
        raise DataError(f"metrics and dense_metrics must name the same tasks, got "
                        f"{sorted(metrics)} and {sorted(dense_metrics)}")
    out = {}
    for t, m in metrics.items():
        m_s = dict(m) if isinstance(m, Mapping) else {t: m}
        m_d = dict(dense_metrics[t]) if isinstance(dense_metrics[t], Mapping) else {t: dense_metrics[t]}
        if set(m_s) != set(m_d) or not m_s:
            raise DataError(f"task {t!r}: metrics {sorted(m_s)} vs dense {sorted(m_d)}")
        terms = []
        for j, v in m_s.items():
            if m_d[j] == 0:
                raise DataError(f"task {t!r}, metric {j!r}: the dense value is 0")
            hib = higher_is_better.get(j, True) if isinstance(higher_is_better, Mapping) else \
                higher_is_better is not False
            terms.append((1 if hib else -1) * (float(v) - float(m_d[j])) / float(m_d[j]) * 100.0)
        out[t] = sum(terms) / len(terms)
    return out


def delta_t(metrics: Mapping[str, Any], dense_metrics: Mapping[str, Any],
            higher_is_better: bool | Mapping[str, bool] | None = None) -> float:
    """Delta_T of Eq. 7 in percent: the mean over tasks of :func:`task_deltas`."""
    per_task = task_deltas(metrics, dense_metrics, higher_is_better)
    return sum(per_task.values()) / len(per_task)
