"""Stage 4, merge: the merged multitask network, one module per (layer, task-subset group)
(:mod:`.merged_net`), its group modules and neuron surgery (:mod:`.group_modules`), and building it
from a grouping and the single-task weights (:mod:`.build`)."""
