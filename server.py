"""The server: ``streamlit run server.py``. It serves ``app.py`` with what the web server must
refuse before Streamlit sees a request (``ui/server.py``)."""

from streamlit.starlette import App

from ui.server import middleware

app = App("app.py", middleware=middleware())
