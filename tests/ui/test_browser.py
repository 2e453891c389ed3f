"""End to end in a real browser: ``streamlit run app.py`` + headless Chromium (tests/ui/browser.py).

A first visit to a fresh server with an empty MI cache (the shipped trajectories are read): a
progress bar is in the page before the explorer, which then settles with its figures. The alpha
slider is moved with the keyboard: the alpha metric follows it and the sharing changes. Each of
the explorer's views and every other page is drawn (ECharts as SVG, no exception) and
screenshotted (``$PAM_SCREENSHOTS`` keeps them, else the test's temporary folder). Timings are
measured by scripts/bench_browser.py, not asserted here. Skipped (with the reason) without
chromium, chromedriver or selenium; bounded waits; the server is always terminated.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.ui import browser as B

missing = B.available()
if missing:
    pytest.skip(missing, allow_module_level=True)

from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402

VIEWS = ("Predicted FLOPs", "MI phase curves", "Shared neurons vs alpha")
PAGES = ("setup", "runs", "results", "export")


def exceptions(driver) -> list[str]:
    return [e.text for e in driver.find_elements(By.CSS_SELECTOR, '[data-testid="stException"]')]


def svg_charts(driver) -> int:
    """ECharts drawn as SVG with at least one path (an empty chart has none)."""
    return sum(bool(c.find_elements(By.CSS_SELECTOR, "svg path"))
               for c in driver.find_elements(By.CSS_SELECTOR, '[data-testid="stEChartsChart"]'))


def show_view(driver, name: str) -> dict:
    label = driver.find_element(By.XPATH, f'//div[@data-testid="stRadio"]//label[contains(., "{name}")]')
    label.click()
    return B.wait_settled(driver, lambda s: True, timeout_s=60)


@pytest.fixture()
def screens(tmp_path) -> Path:
    folder = Path(os.environ.get("PAM_SCREENSHOTS") or tmp_path / "screens")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def test_first_visit_slider_views_and_pages(tmp_path, screens):
    from pam_explorer.data import get_preset

    with B.streamlit_server(tmp_path, {"PAM_CACHE_ROOT": str(tmp_path / "cache")}) as url, \
            B.chromium(tmp_path) as driver:
        driver.get(url)
        first = B.wait_settled(driver, lambda s: B.metric_text(s, "sharing"), timeout_s=120)
        assert first["progress"] is not None, "no progress bar during the first visit"
        assert first["progress"] < first["mut"]
        assert first["slider"] == f"{get_preset('digits-2task').default_alpha:.3g}"
        assert svg_charts(driver) == 1 and not exceptions(driver)
        driver.save_screenshot(str(screens / "explorer_first_visit.png"))

        sharing_before = B.metric_text(first, "sharing")
        B.press_on_slider(driver, Keys.ARROW_LEFT, 12)
        moved = B.wait_settled(driver, lambda s: B.shows_slider_alpha(s, first["slider"]), timeout_s=60)
        assert float(moved["slider"]) < float(first["slider"])
        assert B.metric_text(moved, "sharing") != sharing_before
        driver.save_screenshot(str(screens / "explorer_after_slider.png"))

        for name in VIEWS:
            show_view(driver, name)
            assert not exceptions(driver), name
            assert svg_charts(driver) == 1, name
            driver.save_screenshot(str(screens / f"view_{name.split()[0].lower()}.png"))

        for page in PAGES:
            driver.get(f"{url}/{page}")
            B.wait_settled(driver, lambda s: True, timeout_s=60)
            assert not exceptions(driver), page
            driver.save_screenshot(str(screens / f"page_{page}.png"))
    assert all((screens / f).stat().st_size > 10_000 for f in os.listdir(screens) if f.endswith(".png"))
