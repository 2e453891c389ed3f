"""End to end in a real browser: streamlit server + headless Chromium via selenium.

Moves the alpha slider with the keyboard and checks that the sharing metric and chart change.
Skipped (with the reason) when chromium/chromedriver or selenium is missing. Bounded waits; the
server is always terminated.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
BUDGET_S = 85.0
# the slider thumb: a baseweb [role=slider] div (older Streamlit) or react-aria's hidden range input
THUMB = '[data-testid="stSlider"] [role="slider"], [data-testid="stSlider"] input[type="range"]'


if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
    pytest.skip(f"needs chromium ({CHROMIUM}) and chromedriver ({CHROMEDRIVER})", allow_module_level=True)
selenium = pytest.importorskip("selenium", reason="selenium is not installed")

from selenium import webdriver  # noqa: E402
from selenium.common.exceptions import StaleElementReferenceException  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def server(tmp_path):
    port = free_port()
    env = {**os.environ, "PAM_RUNS_ROOT": str(tmp_path / "runs"), "OMP_NUM_THREADS": "1"}
    log = open(tmp_path / "server.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
         "--server.port", str(port), "--server.address", "127.0.0.1",
         "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"],
        cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                if urllib.request.urlopen(url + "/_stcore/health", timeout=2).status == 200:
                    break
            except OSError:
                time.sleep(0.3)
            if proc.poll() is not None:
                break
        else:
            pytest.fail("streamlit did not answer within 30 s:\n" + (tmp_path / "server.log").read_text())
        if proc.poll() is not None:
            pytest.fail("streamlit exited:\n" + (tmp_path / "server.log").read_text())
        yield url
    finally:
        with_suppress = (ProcessLookupError, PermissionError)
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=10)
        except with_suppress:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
        log.close()


@pytest.fixture()
def browser(tmp_path):
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--window-size=1500,2200",
                f"--user-data-dir={tmp_path / 'chrome-profile'}"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def sharing_text(driver) -> str:
    """The mean-sharing metric + the bar labels of the sharing chart (SVG text); "" mid-rerun."""
    try:
        metrics = [m.text for m in driver.find_elements(By.CSS_SELECTOR, '[data-testid="stMetric"]')]
        charts = driver.find_elements(By.CSS_SELECTOR, ".js-plotly-plot")
        bars = (" ".join(t.text for t in charts[0].find_elements(By.CSS_SELECTOR, "text.bartext"))
                if charts else "")
    except StaleElementReferenceException:
        return ""
    shared = [m for m in metrics if "sharing" in m.lower()]
    return f"{shared[0]} | {bars}" if shared and "%" in bars else ""


def slider_value(driver) -> str | None:
    try:
        el = driver.find_elements(By.CSS_SELECTOR, THUMB)
        return (el[0].get_attribute("aria-valuetext") or el[0].get_attribute("aria-valuenow")) if el else None
    except StaleElementReferenceException:
        return None


def test_slider_moves_change_sharing(server, browser, tmp_path):
    t0 = time.time()
    left = lambda: max(1.0, BUDGET_S - (time.time() - t0))  # noqa: E731
    browser.get(server)
    WebDriverWait(browser, min(60, left()), poll_frequency=0.3).until(lambda d: sharing_text(d))
    before, value_before = sharing_text(browser), slider_value(browser)
    from pam_explorer.data import get_preset
    assert value_before == f"{get_preset('digits-2task').default_alpha:.3g}"
    thumb = browser.find_elements(By.CSS_SELECTOR, THUMB)[0]
    browser.execute_script("arguments[0].focus()", thumb)  # keyboard focus on the thumb
    ActionChains(browser).send_keys(Keys.ARROW_RIGHT * 12).perform()
    WebDriverWait(browser, min(30, left()), poll_frequency=0.3).until(
        lambda d: sharing_text(d) not in ("", before) and slider_value(d) not in (None, value_before))
    time.sleep(1.0)  # let the charts finish drawing for the screenshot
    after = sharing_text(browser)
    browser.save_screenshot(str(tmp_path / "explorer.png"))
    assert after and after != before
    assert float(slider_value(browser)) > float(value_before)
    assert not browser.find_elements(By.CSS_SELECTOR, '[data-testid="stException"]')
    assert (tmp_path / "explorer.png").stat().st_size > 10_000
    assert time.time() - t0 < 90
