"""The server: ``streamlit run server.py``. It serves ``app.py`` with what the web server must
refuse before Streamlit sees a request (``ui/server.py``), and starts the collector with the
server rather than at the first visit, so that the readiness check turns ready on its own."""

from collectors import memory

memory.limit_arenas()  # before the server's threads make heaps of their own

from streamlit.starlette import App  # noqa: E402

from ui.server import lifespan, middleware  # noqa: E402

app = App("app.py", middleware=middleware(), lifespan=lifespan)
