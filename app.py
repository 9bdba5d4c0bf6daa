"""The app's script, served by ``streamlit run server.py``. The login gate, the shared controls and navigation.

Nothing below the gate runs for an anonymous session; each page module also checks the
login itself, because Streamlit can serve a file of ``pages/`` on its own.
"""

import streamlit as st

from settings import SettingsError
from ui import link, login, server
from ui.configuration import load_settings

st.set_page_config(page_title="Account Activity Insights", page_icon=":material/monitoring:", layout="wide")
# A fixed style sheet, no record value in it: the title starts near the top instead of under
# Streamlit's empty top band.
st.html("<style>[data-testid='stMainBlockContainer']{padding-top:2.5rem}</style>")

if server.browser_connected() and not server.installed():
    st.error("Start the app with `streamlit run server.py`: it refuses what the web server must refuse.")
    st.stop()


def _stop_for(error: SettingsError) -> None:
    st.error(f"The app's settings are not valid: {error}")
    st.stop()


try:
    values = load_settings()
except SettingsError as error:
    _stop_for(error)

link.remember_request()  # before the gate: a link opened signed out comes back after sign-in
PAGES = {
    "Dashboard": [
        st.Page("pages/overview.py", title="Overview", icon=":material/monitoring:", default=True),
        st.Page("pages/services.py", title="Services", icon=":material/cloud:"),
        st.Page("pages/apis.py", title="APIs", icon=":material/api:"),
        st.Page("pages/users.py", title="Users", icon=":material/group:"),
        st.Page("pages/ips.py", title="Source IPs", icon=":material/lan:"),
        st.Page("pages/ec2.py", title="EC2", icon=":material/dns:"),
    ],
    "Investigate": [
        st.Page("pages/detections.py", title="Detections", icon=":material/policy:"),
        st.Page("pages/explorer.py", title="Events explorer", icon=":material/manage_search:"),
        st.Page("pages/status.py", title="Status", icon=":material/monitor_heart:"),
    ],
}
PATHS = {page.url_path: page for group in PAGES.values() for page in group}
# The gate before the runtime: the sign-in form never waits for the runtime being built while
# the server starts (its lock), whatever the collector is doing.
login.gate(values, PATHS)  # signed out, every page's address shows the sign-in form
# Imported past the gate: the engine's and the charts' modules are heavy, and the sign-in form's
# run never waits for them (the server imports them at its start, in its own thread).
from ui import data, startup, view  # noqa: E402
from ui.runtime import runtime  # noqa: E402

try:
    shared = runtime()
except SettingsError as error:
    _stop_for(error)
shared.collector.ensure_running()  # restarted if its thread died; the Status page counts it

navigation = st.navigation(PAGES)
link.apply_request(PATHS, navigation.url_path)

regions, accounts = data.scope_options(shared.engine)
view.sidebar(regions, accounts, data.span(shared.engine))
login.sidebar_account()
if shared.is_demo:
    st.info(
        "Demo data: these events come from the built-in generator (two accounts, four regions, an incident every "
        "hour at :17, :37, :47 and :52). No AWS account is read.",
        icon=":material/science:",
    )
startup.progress(shared)
navigation.run()
link.write(navigation.url_path)
