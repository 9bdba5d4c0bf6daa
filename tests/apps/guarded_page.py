"""A page module as Streamlit would serve it from pages/ (MPA v1): require_user() comes first."""

import streamlit as st

from ui.login import require_user

require_user()
st.write("secret page")
