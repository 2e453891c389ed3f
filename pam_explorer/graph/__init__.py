"""Stage 2, graph: what the single-task networks are made of. The layer map (the paper's
Algorithm 1, :mod:`.layer_map`), activation capture by hooks (:mod:`.activations`), per-neuron op
specs (:mod:`.followers`), residual nets' module layers and coupled streams (:mod:`.residual`),
and the geometry of the merged network a family of networks gives (:mod:`.build`)."""
