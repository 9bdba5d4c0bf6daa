"""Entry point: ``streamlit run app.py``. Page set-up, the shared runtime and navigation."""

import streamlit as st

from settings import SettingsError
from ui.runtime import runtime

st.set_page_config(page_title="Account Activity Insights", page_icon=":material/monitoring:", layout="wide")

try:
    runtime()
except SettingsError as error:
    st.error(f"The app's settings are not valid: {error}")
    st.stop()

navigation = st.navigation(
    [
        st.Page("pages/overview.py", title="Overview", icon=":material/monitoring:", default=True),
    ]
)
navigation.run()
