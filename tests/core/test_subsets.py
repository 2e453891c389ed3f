"""Task subsets: canonical order, masks, and the connectivity rule, by hand."""
from pam_explorer.core.subsets import all_subsets, connected, subset_masks


def test_masks_in_canonical_order():
    assert subset_masks("ABC") == {"A": 1, "B": 2, "C": 4, "A+B": 3, "A+C": 5, "B+C": 6, "A+B+C": 7}
    assert [len(s) for s in all_subsets("ABC")] == [1, 1, 1, 2, 2, 2, 3]


def test_a_group_reads_exactly_the_groups_of_its_supersets():
    """tau2 reads tau1 iff tau2 ⊆ tau1: listed by hand for three tasks."""
    masks = subset_masks("ABC")
    reads = {r: [s for s in masks if connected(masks[s], masks[r])] for r in masks}
    assert reads == {"A": ["A", "A+B", "A+C", "A+B+C"], "B": ["B", "A+B", "B+C", "A+B+C"],
                     "C": ["C", "A+C", "B+C", "A+B+C"], "A+B": ["A+B", "A+B+C"],
                     "A+C": ["A+C", "A+B+C"], "B+C": ["B+C", "A+B+C"], "A+B+C": ["A+B+C"]}
