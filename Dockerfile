# Image for docker-compose.yml: one image runs nodes and the store (`bullyproof node|store ...`).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY node ./node
COPY chaos ./chaos
RUN pip install --no-cache-dir .
ENTRYPOINT ["bullyproof"]
