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


# --------------------------------------------------------------- issue 26 points 1, 6, 11; issue 25 point 16
CLIPPED_JS = """
const over = (e) => e.scrollWidth > e.clientWidth + 1;
const box = (e) => e.getBoundingClientRect();
const meet = (a, b) => a.left < b.right && b.left < a.right && a.top < b.bottom && b.top < a.bottom;
const labels = Array.from(document.querySelectorAll('[data-testid="stMetricLabel"] .stMarkdownEllipsis'))
  .filter(over).map(e => e.innerText);
const tables = Array.from(document.querySelectorAll('[data-testid="stDataFrame"] .dvn-scroller'))
  .filter(over).map(e => e.closest('[data-testid="stDataFrame"]').innerText.slice(0, 60))
  .concat(Array.from(document.querySelectorAll('[data-testid="stTable"]')).filter(over)
  .map(e => e.innerText.slice(0, 60)));
const covered = [];
for (const plot of document.querySelectorAll('.js-plotly-plot')) {
  const title = plot.querySelector('.gtitle'), bar = plot.querySelector('.modebar');
  const legend = plot.querySelector('.legend');
  if (title && bar && meet(box(title), box(bar))) covered.push('toolbar: ' + title.textContent);
  if (title && legend && meet(box(title), box(legend))) covered.push('legend: ' + title.textContent);
}
const svgText = [];
for (const svg of document.querySelectorAll('[data-testid="stEChartsChart"] svg')) {
  const s = box(svg);
  for (const t of svg.querySelectorAll('text')) {
    const r = box(t);
    if (r.width && (r.right > s.right + 1 || r.left < s.left - 1)) svgText.push(t.textContent);
  }
}
const images = Array.from(document.querySelectorAll('img')).map(i => i.getAttribute('src') || '')
  .filter(src => src.includes('127.0.0.1:9'));
return {labels, tables, covered, svgText, images};
"""


def choose(driver, index: int, option: str) -> None:
    """Pick ``option`` in the page's ``index``-th select box, and wait for the rerun."""
    driver.find_elements(By.CSS_SELECTOR, '[data-testid="stSelectbox"]')[index].click()
    B.wait_settled(driver, quiet_s=0.3, timeout_s=30)
    options = driver.find_elements(By.CSS_SELECTOR, '[role="option"]')
    next(o for o in options if o.text.strip() == option).click()
    B.wait_settled(driver, timeout_s=60)


def plant_results(root: Path) -> None:
    """A run whose report has an interleaved latency measurement (one figure unreliable), failed
    with a markdown image in its message; and a quick sweep of digits-2task."""
    import json

    from tests.ui.test_results_truth import IMAGE, fixture_report, measured, plant_run
    from tests.ui.test_sweep_ui import make_sweep

    plant_run(root, "20270101-000000-latency", measured(fixture_report()), state="failed", exit_code=1,
              message=f"broke {IMAGE}")
    sweep = make_sweep()
    sweep["config"] = {"quick": True}
    (root / "quick-sweep").mkdir(parents=True)
    (root / "quick-sweep" / "sweep.json").write_text(json.dumps(sweep))


def test_nothing_is_clipped_covered_or_fetched(tmp_path, screens):
    """What AppTest cannot see, in a laptop-sized window (1280 px): metric labels whole (not cut by an
    ellipsis), tables without a hidden column, plotly titles clear of the toolbar and the
    legend, ECharts labels (the phase names of every layer) inside the chart, and a markdown image
    in a run's message never fetched. Each of these failed on the code before issue 26's fixes."""
    runs = tmp_path / "runs"
    plant_results(runs)
    with B.streamlit_server(tmp_path, {"PAM_RUNS_ROOT": str(runs)}) as url, \
            B.chromium(tmp_path, width=1280, height=2400) as driver:
        driver.get(url)
        B.wait_settled(driver, lambda s: B.metric_text(s, "sharing"), timeout_s=120)
        for name in ("Expected FLOPs", "MI phase curves"):
            show_view(driver, name)
            found = driver.execute_script(CLIPPED_JS)
            driver.save_screenshot(str(screens / f"narrow_{name.split()[0].lower()}.png"))
            assert not exceptions(driver), name
            assert not found["labels"] and not found["tables"] and not found["covered"], (name, found)
            assert not found["svgText"], (name, found)
        for layer in ("conv1", "conv2", "fc1", "fc2"):  # a phase name at the right end ran off the chart
            choose(driver, 0, layer)
            assert not driver.execute_script(CLIPPED_JS)["svgText"], layer
        driver.get(f"{url}/results")
        B.wait_settled(driver, timeout_s=60)
        found = driver.execute_script(CLIPPED_JS)
        assert not exceptions(driver)
        assert not found["covered"] and not found["images"] and not found["tables"], found
        text = driver.find_element(By.CSS_SELECTOR, '[data-testid="stMain"]').text
        assert "broke ![x](http://127.0.0.1:9/pixel.png)" in text  # shown as the text it is
        assert "⚠ unreliable" in text or "unreliable" in text
        driver.save_screenshot(str(screens / "narrow_results.png"))


# --------------------------------------------------------------- issue 23 (curves), issue 26 point 3 (sweeps)
CURVES_REPORT, CURVES_SWEEP = "report_published_two_seeds.json", "sweep_published_one_seed.json"


def plant_curves(root: Path) -> tuple[str, str]:
    """A real report of the published schedule (two seeds, curves) and, older, a real sweep (both
    recorded: tests/ui/fixtures/README.md)."""
    import json

    from tests.ui.apptest import FIXTURES
    from tests.ui.test_results_curves import plant_sweep
    from tests.ui.test_results_truth import plant_run

    sweep = plant_sweep(root, "20270101-000000-sweep", json.loads((FIXTURES / CURVES_SWEEP).read_text()),
                        created=1.8e9)
    report = plant_run(root, "20270102-000000-curves", json.loads((FIXTURES / CURVES_REPORT).read_text()),
                       created=1.8e9 + 1)
    return report, sweep


def test_results_curves_and_a_sweep_are_not_clipped(tmp_path, screens):
    """The Results page of a published-schedule report (tolerance slider, curves, read-off table)
    and of a sweep, in a laptop-sized window: no table hides a column, no chart title meets the
    toolbar or the legend; the keyboard moves the tolerance and the read-offs follow."""
    runs = tmp_path / "runs"
    report, sweep = plant_curves(runs)
    with B.streamlit_server(tmp_path, {"PAM_RUNS_ROOT": str(runs)}) as url, \
            B.chromium(tmp_path, width=1280, height=4200) as driver:
        driver.get(f"{url}/results")
        B.wait_settled(driver, lambda s: s.get("slider") is not None, timeout_s=120)
        main = driver.find_element(By.CSS_SELECTOR, '[data-testid="stMain"]')
        assert report in main.text and "Accuracy vs FLOPs" in main.text and not exceptions(driver)
        found = driver.execute_script(CLIPPED_JS)
        assert not found["covered"] and not found["tables"] and not found["labels"], found
        driver.save_screenshot(str(screens / "results_curves.png"))
        before = B.slider_value(driver)
        assert before == "1 (the run's)"  # the recorded run's own tolerance
        B.press_on_slider(driver, Keys.ARROW_LEFT, 10)  # 0.05 a step: 1 -> 0.5
        B.wait_settled(driver, lambda s: s.get("slider") not in (None, before), timeout_s=60)
        B.wait_settled(driver, timeout_s=60)
        assert B.slider_value(driver) == "0.5" and not exceptions(driver)
        assert "tolerance 0.5 points" in driver.find_element(By.CSS_SELECTOR, '[data-testid="stMain"]').text
        assert not driver.execute_script(CLIPPED_JS)["covered"]
        driver.save_screenshot(str(screens / "results_curves_tolerance_05.png"))
        choose(driver, 0, f"{sweep} (done)")
        text = driver.find_element(By.CSS_SELECTOR, '[data-testid="stMain"]').text
        assert "Alpha sweep" in text and "without writing report.json" not in text and not exceptions(driver)
        found = driver.execute_script(CLIPPED_JS)
        assert not found["covered"] and not found["tables"], found
        driver.save_screenshot(str(screens / "results_sweep.png"))


# --------------------------------------------------------------- issue 24 (regime map, headroom)
ANNOTATIONS_JS = "return Array.from(document.querySelectorAll('.js-plotly-plot .annotation-text'))" \
                 ".map(a => a.textContent);"


def test_the_regime_map_and_the_headroom_box_are_drawn_whole(tmp_path, screens):
    """The Results page's regime map in a laptop-sized window: every cell of the heat map
    annotated, its title clear of the toolbar, the cells' table with no hidden column; a cell's
    report opens below it. The explorer shows the headroom box and its estimate button."""
    from tests.ui.regime_fixture import HEADLINE, regime_results

    results = tmp_path / "results"
    regime_results(results)
    with B.streamlit_server(tmp_path, {"PAM_RESULTS_ROOT": str(results)}) as url, \
            B.chromium(tmp_path, width=1280, height=2400) as driver:
        driver.get(url)
        B.wait_settled(driver, lambda s: B.metric_text(s, "sharing"), timeout_s=120)
        main = driver.find_element(By.CSS_SELECTOR, '[data-testid="stMain"]').text
        assert "Estimate headroom (about" in main and "Far above 1" in main and not exceptions(driver)
        driver.save_screenshot(str(screens / "explorer_headroom.png"))
        driver.get(f"{url}/results")
        B.wait_settled(driver, timeout_s=60)
        show_view(driver, "Regime map")
        notes = driver.execute_script(ANNOTATIONS_JS)
        assert len(notes) == 4 and sum(n == "not run" for n in notes) == 2, notes
        assert any("n = 3" in n for n in notes), notes
        found = driver.execute_script(CLIPPED_JS)
        assert not found["covered"] and not found["tables"] and not exceptions(driver), found
        driver.save_screenshot(str(screens / "regime_map.png"))
        choose(driver, 4, f"width 4 · K = 0 (0.62 bits) · {HEADLINE}")
        main = driver.find_element(By.CSS_SELECTOR, '[data-testid="stMain"]').text
        assert "Accuracy vs FLOPs" in main and not exceptions(driver)
        assert not driver.execute_script(CLIPPED_JS)["covered"]
        driver.save_screenshot(str(screens / "regime_cell.png"))
