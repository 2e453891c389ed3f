"""scripts/gpu_check.sh without a GPU: a clear message and exit status 2, nothing run (on a CUDA
machine this test skips; the script itself is the GPU check)."""
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "gpu_check.sh"


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present: run scripts/gpu_check.sh itself")
def test_without_gpu_exits_2_with_a_clear_message(tmp_path):
    out = tmp_path / "out"
    res = subprocess.run(["bash", str(SCRIPT), str(out)], capture_output=True, text=True, timeout=120,
                         env={"PATH": "/usr/bin:/bin", "PYTHON": sys.executable})
    assert res.returncode == 2, res.stderr
    assert "no CUDA GPU visible" in res.stderr and "nothing was run" in res.stderr
    assert not out.exists()
