"""Baselines: B1 (separate single-task networks) and B2 (MTZ, Multi-Task Zipping)."""
from pam_explorer.baselines.mtz import MTZConfig, MTZResult, zip_networks
from pam_explorer.baselines.separate import separate_nets

__all__ = ["separate_nets", "MTZConfig", "MTZResult", "zip_networks"]
