"""PAM Explorer dashboard: ``streamlit run app.py``.

Thin: page config + navigation. Pages live in ui/ (one module each); pure figure/table builders
in ui/figures.py and ui/results_view.py; background runs in pam_explorer/runs/jobs.py.

The first run of a fresh server imports PyTorch and the package (seconds): a progress bar is
drawn before those imports, so a first visit never looks stuck.
"""
import sys

import streamlit as st

st.set_page_config(page_title="PAM Explorer", page_icon=":material/merge:", layout="wide")

booting = "pam_explorer" not in sys.modules  # the first visit to this server process
if booting:  # the imports below take seconds on a fresh server: show how far they are
    boot = st.empty()
    boot.progress(0.02, text="Starting PAM Explorer (first visit to this server only): loading PyTorch ...")
    import torch  # noqa: F401

    boot.progress(0.3, text="Starting PAM Explorer: loading torchvision (ResNets) ...")
    import torchvision  # noqa: F401

    boot.progress(0.55, text="Starting PAM Explorer: loading the package ...")

pages = [
    st.Page("ui/page_explorer.py", title="Merge explorer", icon=":material/tune:", default=True),
    st.Page("ui/page_setup.py", url_path="setup", title="Setup", icon=":material/settings:"),
    st.Page("ui/page_export.py", url_path="export", title="Export", icon=":material/download:"),
    st.Page("ui/page_runs.py", url_path="runs", title="Runs", icon=":material/play_circle:"),
    st.Page("ui/page_results.py", url_path="results", title="Results", icon=":material/table_chart:"),
]
nav = st.navigation(pages)

from ui.labels import setup_caption  # noqa: E402  (after the progress bar)
from ui.state import current_setup  # noqa: E402

if booting:
    boot.empty()
with st.sidebar:
    st.caption(setup_caption(current_setup()))

nav.run()
