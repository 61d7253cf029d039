# One image for every role: `identity serve` (default), `identity migrate`, and
# `identity gateway` (Envoy from the `gateway` extra). See docker-compose.yml.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /build
COPY pyproject.toml ./
COPY src ./src
COPY generated ./generated
COPY migrations ./migrations

# Outside a source checkout the gateway looks for the descriptor set next to its
# Envoy template (identity/deploy/), so it rides along in the package.
RUN cp generated/identity_descriptor.pb src/identity/deploy/identity_descriptor.pb \
 && pip install --no-cache-dir ".[server,gateway]" \
 && cd / && rm -rf /build

RUN useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin identity \
 && mkdir -p /var/lib/identity \
 && chown identity:identity /var/lib/identity \
 && chmod 700 /var/lib/identity
# The master secret lives here (docker-compose.yml mounts a named volume on it): a new
# named volume starts as a copy of this directory, so it belongs to the identity user.
USER identity
WORKDIR /home/identity

# 50051: gRPC (identity serve); 8080: HTTP/JSON (identity gateway).
EXPOSE 50051 8080

ENTRYPOINT ["identity"]
CMD ["serve"]
