"""Stage 3, regroup: mutual information (Kolchinsky-Tracey estimators, :mod:`.mutual_info`), the
greedy regrouping of Algorithms 2 and 3 as trajectories cut at any alpha (:mod:`.algorithms`), the
on-disk trajectory cache (:mod:`.trajectories`), and the Explorer that answers any alpha for a
preset's networks (:mod:`.explorer`)."""
from pam_explorer.regroup.algorithms import Trajectory

# Trajectory caches (joblib) written before the stage layout pickled the class under this name.
__all__ = ["Trajectory"]
