"""Stage 0, the vocabulary every other stage reads: task subsets, network geometry, configs and
their validators, the error family, atomic writes, the device and the root folders.

Modules here import only each other (and torch / the standard library); import them directly,
e.g. ``from pam_explorer.core.subsets import subset_key``.
"""
