"""PAM Explorer: pruning-aware merging of single-task networks, made explorable."""
