# Account Activity Insights: the Streamlit app, run as a non-root user.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    INSIGHTS_STATE_DIR=/data \
    INSIGHTS_COOKIE_SECURE=true

RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin insights \
    && mkdir /data && chown insights:insights /data && chmod 700 /data
WORKDIR /app

COPY requirements.txt .
RUN pip install -r requirements.txt

COPY --chown=root:root . .
USER insights

# The user file and login sessions: keep them across containers.
VOLUME /data
EXPOSE 8501
# Ready once the saved history is restored and the first poll is in (the sign-in page is served
# long before); /_stcore/health only says the server listens. Restoring a day of a busy account
# takes a minute or two on one vCPU, hence the start period.
HEALTHCHECK --interval=15s --timeout=5s --start-period=300s --retries=3 \
    CMD python -m collectors.readiness

CMD ["streamlit", "run", "server.py", "--server.port=8501", "--server.address=0.0.0.0"]
