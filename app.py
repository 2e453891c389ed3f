"""PAM Explorer dashboard: ``streamlit run app.py``."""
import streamlit as st

st.set_page_config(page_title="PAM Explorer", layout="wide")
st.title("PAM Explorer")
