"""The server: ``streamlit run server.py``. It serves ``app.py`` with what the web server must
refuse before Streamlit sees a request (``ui/server.py``), and starts the collector with the
server rather than at the first visit, so that the readiness check turns ready on its own."""

from streamlit.starlette import App

from ui.server import lifespan, middleware

app = App("app.py", middleware=middleware(), lifespan=lifespan)
