"""Screenshots of the Results page, one per finished run of a runs root (docs/screenshots/).

    python scripts/results_screenshots.py --runs ROOT --out docs/screenshots [--width 1280]

Starts ``streamlit run app.py`` with ``PAM_RUNS_ROOT=ROOT`` and headless Chromium
(tests/ui/browser.py), opens the Results page on each run, and saves the page from its header
down to the end of the gains chart (``results-<run id>.png``), as a small palette PNG.
"""
from __future__ import annotations

import argparse
import io
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from PIL import Image  # noqa: E402

from tests.ui import browser as B  # noqa: E402

BOTTOM_JS = """
const charts = document.querySelectorAll('.js-plotly-plot');
const main = document.querySelector('[data-testid="stMain"]').getBoundingClientRect();
const gains = charts.length ? charts[0].getBoundingClientRect() : main;
return [main.left, gains.bottom + window.scrollY + 10];
"""


def shoot(driver, url: str, run_id: str, out: Path) -> Path:
    from selenium.webdriver.common.by import By

    driver.get(f"{url}/results")
    B.wait_settled(driver, timeout_s=120)
    box = driver.find_elements(By.CSS_SELECTOR, '[data-testid="stSelectbox"]')[0]
    box.click()
    B.wait_settled(driver, quiet_s=0.3, timeout_s=30)
    options = driver.find_elements(By.CSS_SELECTOR, '[role="option"]')
    next(o for o in options if o.text.startswith(run_id)).click()
    B.wait_settled(driver, timeout_s=120)
    left, bottom = driver.execute_script(BOTTOM_JS)
    image = Image.open(io.BytesIO(driver.get_screenshot_as_png()))
    image = image.crop((int(left), 0, image.width, min(image.height, int(bottom))))
    path = out / f"results-{run_id}.png"
    image.convert("RGB").quantize(colors=64).save(path, optimize=True)
    return path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", required=True, help="a runs root (folders with status.json and report.json)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--width", type=int, default=1280)
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    runs = sorted(p.name for p in Path(a.runs).iterdir() if (p / "report.json").is_file())
    with tempfile.TemporaryDirectory() as tmp, \
            B.streamlit_server(Path(tmp), {"PAM_RUNS_ROOT": str(Path(a.runs).resolve())}) as url, \
            B.chromium(Path(tmp), width=a.width, height=3000) as driver:
        for run_id in runs:
            print(shoot(driver, url, run_id, out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
