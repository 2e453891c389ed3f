"""Test-wide settings: one torch thread (tiny models on a shared 2-core machine run faster
without intra-op threading, and results stay deterministic)."""
import torch

torch.set_num_threads(1)
