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
RUN useradd --system --home /app recruitmail && mkdir -p /data && chown recruitmail /data
USER recruitmail
EXPOSE 8000
