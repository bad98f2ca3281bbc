FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY recruitmail recruitmail
COPY records records
COPY mailboxes mailboxes
COPY sharing sharing
RUN pip install --no-cache-dir -e '.[production]'
COPY . .
# Static files are collected into the image at build time (compressed, with content-hashed
# names that WhiteNoise serves with far-future caching). The settings need a secret key and a
# Fernet key to load: these placeholders exist only for this one command.
ENV STATIC_ROOT=/app/staticfiles
RUN SECRET_KEY=collectstatic-only FERNET_KEYS=Lk0x0s3Qd9gIWQpk3cS0u8Eo7JmK4sm3nQwl8mrhXnY= \
    RECRUITMAIL_DATA_DIR=/tmp/collectstatic python manage.py collectstatic --no-input \
    && rm -rf /tmp/collectstatic
RUN useradd --system --home /app recruitmail && mkdir -p /data && chown recruitmail /data
USER recruitmail
EXPOSE 8000
