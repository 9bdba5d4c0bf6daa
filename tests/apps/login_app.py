"""A minimal app behind the login, shaped like app.py, for tests: the gate, then navigation with
one page, the account sidebar, and the secret, with a fragment that refreshes on its own."""

import streamlit as st

import settings
from ui.login import gate, require_user, session_still_valid, sidebar_account

if st.session_state.get("probe"):  # tests: what a page module or a fragment sees, without the gate
    st.write(f"session still valid: {session_still_valid()}")
    require_user()
    st.write("secret page")
    st.stop()

values = settings.load()
gate(values)


def dashboard() -> None:
    require_user()
    st.write("secret dashboard")

    @st.fragment(run_every=2)
    def live() -> None:
        if not session_still_valid():
            st.rerun(scope="app")
        st.caption("secret figures")

    live()


navigation = st.navigation([st.Page(dashboard, title="Dashboard", default=True)])
sidebar_account()
navigation.run()
