"""Stage 1, cost: analytic FLOPs/params of every task subset from geometry + group widths, and
gains (average, peak, expected) in :mod:`.analytic`; measured latency in :mod:`.latency`."""
