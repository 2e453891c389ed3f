"""PAM Explorer dashboard: ``streamlit run app.py``.

Thin: page config + navigation. Pages live in ui/ (one module each); pure figure/table builders
in ui/figures.py and ui/results_view.py; background runs in pam_explorer/runs/jobs.py.
"""
import streamlit as st

st.set_page_config(page_title="PAM Explorer", page_icon=":material/merge:", layout="wide")

pages = [
    st.Page("ui/page_explorer.py", title="Merge explorer", icon=":material/tune:", default=True),
    st.Page("ui/page_setup.py", url_path="setup", title="Setup", icon=":material/settings:"),
    st.Page("ui/page_export.py", url_path="export", title="Export", icon=":material/download:"),
    st.Page("ui/page_runs.py", url_path="runs", title="Runs", icon=":material/play_circle:"),
    st.Page("ui/page_results.py", url_path="results", title="Results", icon=":material/table_chart:"),
]
nav = st.navigation(pages)

with st.sidebar:
    from ui.state import current_setup

    s = current_setup()
    st.caption(f"**Preset** {s.preset}  \n**Checkpoints** {s.checkpoints}  \n"
               f"**MI** N={s.mi.n_samples}, sigma2={s.mi.sigma2:g}, {s.mi.pooling} pooling, "
               f"{s.mi.label_mode} labels, {s.mi.bound} bound")

nav.run()
