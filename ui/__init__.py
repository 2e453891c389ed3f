"""Streamlit pages and pure UI helpers of PAM Explorer (pam_explorer never imports this)."""
