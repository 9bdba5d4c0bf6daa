"""Streamlit's own floor for ``bench.startup --sign-in-form``: a bare app whose only content is
a sign-in form like the app's, started and timed in the same way. What the app takes beyond
this is the app's; what this takes is Streamlit's and the machine's."""

import streamlit as st

st.set_page_config(page_title="Sign in", layout="wide")
with st.form("sign_in"):
    st.text_input("Username")
    st.text_input("Password", type="password")
    st.form_submit_button("Log in")
