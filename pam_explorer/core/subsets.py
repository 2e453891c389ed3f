"""Task subsets: the one place they are named, enumerated and parsed.

A task subset is named by joining its task names with "+" in the preset's task order ("A+B", a CLI
and report contract, docs/design.md). Canonical order of all non-empty subsets: by size, then task
order. Task names are distinct non-empty strings without "+" (the separator) or ".".
"""
from __future__ import annotations

from collections.abc import Sequence
from itertools import combinations

from pam_explorer.core.errors import StructureError


def subset_key(subset: Sequence[str]) -> str:
    """Name of a task subset: the task names joined by "+" (a CLI contract)."""
    return "+".join(subset)


def all_subsets(tasks: Sequence[str]) -> list[tuple[str, ...]]:
    """Every non-empty subset of ``tasks`` in canonical order: by size, then task order.

    (A, B) -> A, B, A+B;  (A, B, C) -> A, B, C, A+B, A+C, B+C, A+B+C.
    """
    return [c for r in range(1, len(tasks) + 1) for c in combinations(tuple(tasks), r)]


def subset_masks(tasks: Sequence[str]) -> dict[str, int]:
    """{subset name: bit mask with bit j set for tasks[j]} in canonical order."""
    return {subset_key(s): sum(1 << tasks.index(t) for t in s) for s in all_subsets(tasks)}


def connected(source: int, reader: int) -> bool:
    """The merged net's connectivity rule (PAM Sec. 5.1) on subset masks (:func:`subset_masks`):
    group tau2 (mask ``reader``) of a layer reads group tau1 (mask ``source``) of the layer it
    reads iff tau2 ⊆ tau1, so a group computes only from neurons every one of its tasks has."""
    return source & reader == reader


def parse_key(key: str | Sequence[str], tasks: Sequence[str], where: str = "") -> tuple[str, ...]:
    """A group key ("A+B" or ("A", "B")) as a tuple of task names; StructureError if malformed."""
    tasks = tuple(tasks)
    names = tuple(key.split("+")) if isinstance(key, str) else tuple(key)
    prefix = f"{where}: " if where else ""
    if not names or any(not isinstance(n, str) or not n for n in names):
        raise StructureError(f"{prefix}group key {key!r} must be a non-empty subset of tasks {list(tasks)}")
    unknown = [n for n in names if n not in tasks]
    if unknown:
        raise StructureError(f"{prefix}group key {key!r} names unknown task(s) {unknown}; "
                             f"tasks are {list(tasks)}")
    order = [tasks.index(n) for n in names]
    if len(set(order)) != len(order) or order != sorted(order):
        fixed = subset_key(sorted(set(names), key=tasks.index))
        raise StructureError(f"{prefix}group key {key!r} must list distinct tasks in task order "
                             f"{list(tasks)}, e.g. {fixed!r}")
    return names



def check_tasks(tasks: Sequence[str]) -> tuple[str, ...]:
    """Task names: distinct non-empty strings without "+" (the subset separator) or "."."""
    tasks = tuple(tasks)
    if not tasks or len(set(tasks)) != len(tasks) or any(
            not isinstance(t, str) or not t or "+" in t or "." in t for t in tasks):
        raise StructureError(f"tasks must be distinct non-empty names without '+' or '.', got {list(tasks)}")
    return tasks


__all__ = ["subset_key", "all_subsets", "subset_masks", "connected", "parse_key", "check_tasks"]
