"""Helpers of the dashboard's AppTests (tests/ui/test_app*.py): the app, a fresh session, the
charts on a page, the explorer's views, waiting for a background run."""
from __future__ import annotations

import json
import time
from pathlib import Path

from streamlit.testing.v1 import AppTest

from pam_explorer.data import get_preset
from pam_explorer.runs import jobs

DEFAULT_ALPHA = get_preset("digits-2task").default_alpha
APP = str(Path(__file__).resolve().parents[2] / "app.py")
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def fresh() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120).run()
    assert not at.exception, at.exception
    return at


def plotly_specs(at: AppTest) -> list[dict]:
    return [json.loads(el.proto.spec) for el in at.get("plotly_chart")]


def echarts(at: AppTest) -> list[dict]:
    """The ECharts options on the page (the explorer's charts)."""
    return [json.loads(el.proto.spec) for el in at.get("echarts_chart")]


def view(at: AppTest, name: str) -> AppTest:
    """Show one of the explorer's views (one at a time below the key figures)."""
    return at.radio(key="explorer_view").set_value(name).run()


def wait_run(root, rid, timeout=20):
    deadline = time.time() + timeout
    while jobs.read_status(rid, root)["state"] not in jobs.FINAL and time.time() < deadline:
        time.sleep(0.05)
        jobs.poll(root)
