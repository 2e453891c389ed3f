"""A streamlit server + headless Chromium, and timings measured inside the page.

Used by tests/ui/test_browser.py and scripts/bench_browser.py. Times come from the page's own
clock (``performance.now()``, milliseconds since the navigation started):

* a MutationObserver, installed before any page script runs (CDP
  ``Page.addScriptToEvaluateOnNewDocument``), records the time of the latest DOM change, the
  first time Streamlit's app frame (``stApp``) is in the page, the first time the app's script
  runs, and the first time a progress bar (``stProgress``) is in the page;
* a capturing ``keydown`` listener records when a key was pressed.

"Settled" means: the app's script is not running (``stApp[data-test-script-state]``), nothing
is stale, and no DOM change for ``quiet_s``; the settle time is then the time of the LAST DOM
change (so the quiet period itself is not counted).
"""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
# the slider thumb: a baseweb [role=slider] div (older Streamlit) or react-aria's hidden range input
THUMB = '[data-testid="stSlider"] [role="slider"], [data-testid="stSlider"] input[type="range"]'

OBSERVER_JS = """
window.__pam = {mut: 0, key: 0, progress: null, app: null, firstRun: null, mutations: 0, runs: 0,
                runStart: 0, runEnd: 0};
const note = (records) => {
  const now = performance.now();
  window.__pam.mut = now; window.__pam.mutations += records.length;
  for (const r of records) {
    if (r.attributeName !== 'data-test-script-state') continue;
    if (r.oldValue === 'running') { window.__pam.runs += 1; window.__pam.runEnd = now; }
    else if (r.target.getAttribute('data-test-script-state') === 'running') {
      window.__pam.runStart = now;
      if (window.__pam.firstRun === null) window.__pam.firstRun = now;
    }
  }
  if (window.__pam.app === null && document.querySelector('[data-testid="stApp"]')) window.__pam.app = now;
  if (window.__pam.progress === null && document.querySelector('[data-testid="stProgress"]'))
    window.__pam.progress = now;
};
const start = () => new MutationObserver(note).observe(document.documentElement,
  {subtree: true, childList: true, attributes: true, characterData: true, attributeOldValue: true});
if (document.documentElement) start(); else document.addEventListener('DOMContentLoaded', start);
document.addEventListener('keydown', () => { window.__pam.key = performance.now(); }, true);
"""

STATE_JS = """
const app = document.querySelector('[data-testid="stApp"]');
const thumb = document.querySelector('THUMB');
return {state: app ? app.getAttribute('data-test-script-state') : null,
        stale: document.querySelectorAll('[data-stale="true"]').length,
        slider: thumb ? (thumb.getAttribute('aria-valuetext') || thumb.getAttribute('aria-valuenow')) : null,
        metrics: Array.from(document.querySelectorAll('[data-testid="stMetric"]')).map(m => m.innerText),
        now: performance.now(), ...window.__pam};
""".replace("THUMB", THUMB.replace("'", "\\'"))


def available() -> str | None:
    """None if chromium, chromedriver and selenium are there, else what is missing."""
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        return f"needs chromium ({CHROMIUM}) and chromedriver ({CHROMEDRIVER})"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def streamlit_server(tmp: Path, env: dict | None = None, timeout_s: float = 60) -> Iterator[str]:
    """``streamlit run app.py`` on a free localhost port; yields its URL; always terminated."""
    port = free_port()
    full_env = {**os.environ, "PAM_RUNS_ROOT": str(tmp / "runs"), "OMP_NUM_THREADS": "1", **(env or {})}
    log_path = tmp / "server.log"
    log = open(log_path, "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
         "--server.port", str(port), "--server.address", "127.0.0.1",
         "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"],
        cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env=full_env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + timeout_s
        while time.time() < deadline and proc.poll() is None:
            try:
                if urllib.request.urlopen(url + "/_stcore/health", timeout=2).status == 200:
                    break
            except OSError:
                time.sleep(0.2)
        else:
            raise RuntimeError(f"streamlit did not answer within {timeout_s:.0f} s:\n" + log_path.read_text())
        yield url
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=10)
        except (ProcessLookupError, PermissionError):
            pass
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
        log.close()


@contextlib.contextmanager
def chromium(tmp: Path, width: int = 1500, height: int = 2200) -> Iterator:
    """Headless Chromium (selenium) with the page observer installed on every new document."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", f"--window-size={width},{height}",
                f"--user-data-dir={tmp / 'chrome-profile'}"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(60)
    driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": OBSERVER_JS})
    try:
        yield driver
    finally:
        driver.quit()


def page_state(driver) -> dict:
    return driver.execute_script(STATE_JS) or {}


def wait_settled(driver, ready=lambda state: True, quiet_s: float = 0.5, timeout_s: float = 60) -> dict:
    """Wait until the app is idle (see the module docstring) and ``ready(page state)`` holds;
    returns the page state then (``mut``: time of the last DOM change, ms). One small script per
    poll (every 50 ms), so the polling itself costs the page next to nothing. TimeoutError
    otherwise."""
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        s = page_state(driver)
        if s.get("state") == "notRunning" and not s.get("stale") and s["now"] - s["mut"] >= quiet_s * 1e3 \
                and ready(s):
            return s
        time.sleep(0.05)
    raise TimeoutError(f"the page did not settle within {timeout_s:.0f} s (last state {page_state(driver)})")


def metric_text(state: dict, word: str) -> str:
    """Text of the first st.metric of a page state whose label contains ``word`` ("" if none)."""
    return next((m for m in state.get("metrics") or () if word.lower() in m.lower()), "")


def slider_value(driver) -> str | None:
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By

    try:
        el = driver.find_elements(By.CSS_SELECTOR, THUMB)
        return (el[0].get_attribute("aria-valuetext") or el[0].get_attribute("aria-valuenow")) if el else None
    except StaleElementReferenceException:
        return None


def _number(text: str) -> float | None:
    import re

    m = re.search(r"[-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?", text or "")
    return float(m.group()) if m else None


def shows_slider_alpha(state: dict, before: str | None) -> bool:
    """The slider moved off ``before`` and the page's "alpha" metric shows the slider's value
    (so the rerun of that value has been drawn)."""
    value = state.get("slider")
    if value in (None, before):
        return False
    shown = _number(metric_text(state, "alpha").split("\n")[-1])
    return shown is not None and abs(shown - float(value)) <= 1e-9 + 1e-3 * abs(float(value))


def press_on_slider(driver, key: str, times: int = 1) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    thumb = driver.find_elements(By.CSS_SELECTOR, THUMB)[0]
    driver.execute_script("arguments[0].focus()", thumb)
    ActionChains(driver).send_keys(key * times).perform()


def time_slider_moves(driver, moves: int, key_right: bool = True, quiet_s: float = 0.5) -> list[dict]:
    """Press an arrow key on the alpha slider ``moves`` times, waiting for the page to settle
    after each press; per move: seconds from the key press to the last DOM change, the value."""
    from selenium.webdriver.common.keys import Keys

    out = []
    for i in range(moves):
        before = page_state(driver).get("slider")
        press_on_slider(driver, Keys.ARROW_RIGHT if key_right else Keys.ARROW_LEFT)
        s = wait_settled(driver, lambda st, b=before: shows_slider_alpha(st, b), quiet_s=quiet_s)
        out.append({"move": i, "value": s.get("slider"),
                    "seconds": round((s["mut"] - s["key"]) / 1e3, 4),
                    "to_run_start_s": round((s["runStart"] - s["key"]) / 1e3, 4),
                    "run_s": round((s["runEnd"] - s["runStart"]) / 1e3, 4),
                    "after_run_s": round((s["mut"] - s["runEnd"]) / 1e3, 4)})
    return out


__all__ = ["available", "streamlit_server", "chromium", "page_state", "wait_settled", "metric_text",
           "slider_value", "press_on_slider", "time_slider_moves", "REPO", "THUMB"]
