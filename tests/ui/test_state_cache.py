"""The explorer cache (issue 27): Streamlit's st.cache_resource, not a hand-written LRU. One
Explorer per setup key shared by sessions, computed once, at most MAX_EXPLORERS kept (the least
recently used dropped), failures not cached; a cache hit draws no progress bar."""
from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

from ui import state

SCRIPT = """
import streamlit as st
from pam_explorer.core.config import MIConfig
from ui import state
opened = st.session_state.setdefault("opened", [])
for n in st.session_state.get("sizes", [24]):
    exp = state.open_explorer(state.Setup(mi=MIConfig(n_samples=n)))
    opened.append((n, id(exp)))
"""


def test_explorers_are_cached_per_setup_across_sessions(tmp_path, monkeypatch):
    calls = []
    real_open = state.Explorer.open

    def counting_open(preset, mi, **kw):
        calls.append(mi.n_samples)
        if mi.n_samples == 13:
            raise state.DataMissing("no such data")
        return real_open(preset, mi, **kw)

    monkeypatch.setattr(state.Explorer, "open", counting_open)
    monkeypatch.setenv("PAM_CACHE_ROOT", str(tmp_path / "cache"))
    state._explorer.clear()
    script = tmp_path / "app.py"
    script.write_text(SCRIPT)
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[2]))
    a = AppTest.from_file(str(script), default_timeout=120).run()
    assert not a.exception, a.exception
    b = AppTest.from_file(str(script), default_timeout=120).run()  # another session, same setup
    assert calls == [24] and a.session_state["opened"][0][1] == b.session_state["opened"][0][1]
    assert not b.get("progress")  # a hit: the replayed bar is the empty element it ended as
    b.session_state["sizes"] = [25, 26, 27, 28, 24]  # 5 setups: 24 (oldest use) is dropped ...
    b.run()
    assert calls == [24, 25, 26, 27, 28, 24] and not b.exception
    b.session_state["sizes"] = [13]  # a failure is not cached: it raises again
    b.run()
    b.run()
    assert calls[-2:] == [13, 13] and b.exception
    assert state.MAX_EXPLORERS == 4
    state._explorer.clear()
