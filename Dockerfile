# One image for web, worker and beat (docker-compose.yml picks the command).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VAR_DIR=/app/var

WORKDIR /app
COPY requirements.txt .
RUN pip install -r requirements.txt

COPY . .
# collectstatic imports the settings, which want a key when DEBUG is off; this one is thrown
# away with the layer. ENV_FILE= : no .env is read at build time (none is copied anyway).
RUN SECRET_KEY=build-only-not-secret ENV_FILE= python manage.py collectstatic --noinput \
    && useradd --system --uid 10001 --no-create-home --home-dir /app portal \
    && mkdir -p /app/var/devcloud \
    && chown -R portal /app/var

USER portal
EXPOSE 8000
# The same as docker-compose.yml's web command (README, "Web workers").
CMD ["gunicorn", "partner_portal.wsgi", "--bind", "0.0.0.0:8000", "--worker-class", "gthread", \
     "--workers", "2", "--threads", "4", "--access-logfile", "-"]
