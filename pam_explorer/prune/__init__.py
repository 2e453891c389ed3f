"""Stage 6, pruning of merged networks (B1, B2 and PAM alike): contract, registry and methods.

Importing the package registers the built-in methods: "taylor" (P2, Molchanov et al. 2019),
"vib" (P1, Dai et al. 2018) and "adapmtl" (unstructured, Xiang et al. 2024).
``get_pruner(name).prune(net, data, config, progress)`` prunes a copy of a
:class:`~pam_explorer.merge.merged_net.MergedNet` and returns a :class:`PruneResult`.
"""
from pam_explorer.prune.adapmtl import AdapMTLPruner
from pam_explorer.prune.adapmtl_math import adaptive_weights, delta_t
from pam_explorer.prune.base import (
    AlternatingPruner,
    Pruner,
    PruneResult,
    TaskData,
    get_pruner,
    list_pruners,
    register_pruner,
)
from pam_explorer.prune.config import AdapMTLConfig, PruneConfig
from pam_explorer.prune.sparse_cost import subset_flops
from pam_explorer.prune.taylor import TaylorPruner, taylor_importance
from pam_explorer.prune.vib import VIBGates, VIBPruner, fold_gates, kl_divergence, log_alpha

__all__ = ["PruneConfig", "TaskData", "PruneResult", "Pruner", "AlternatingPruner", "register_pruner",
           "get_pruner", "list_pruners", "TaylorPruner", "taylor_importance", "VIBPruner", "VIBGates",
           "fold_gates", "kl_divergence", "log_alpha", "AdapMTLPruner", "AdapMTLConfig", "adaptive_weights",
           "delta_t", "subset_flops"]
