"""progress_printer (issue 26 point 7): one line per report, rate-limited, on a fake clock."""
from __future__ import annotations

import io

from pam_explorer.core.progress import progress_printer, report_line


def test_one_line_per_report_at_most_once_a_second():
    t = [100.0]
    out = io.StringIO()
    say = progress_printer("prune", every_s=1.0, stream=out, clock=lambda: t[0])
    say({"phase": "step", "step": 3, "accepted": True, "val_accuracy": {"A": 95.123456, "B": 94.0},
         "widths": {"fc1": {"A": 3}}})
    t[0] = 100.5
    say({"step": 4})  # within a second of the last line: dropped
    t[0] = 102.25
    say("conv2", 7, 12)  # Explorer.open's (layer, step, total)
    assert out.getvalue().splitlines() == [
        "[prune 0.0 s] phase step, step 3, accepted True, val_accuracy {A 95.12, B 94}",
        "[prune 2.2 s] conv2 7 12"]
    assert report_line({"loss": 0.123456789}) == "loss 0.1235"
