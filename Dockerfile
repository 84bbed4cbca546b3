# One image for every Aperture function: pick the function at run time.
#   docker run -p 8080:8080 IMAGE                                  # stats (HTTP)
#   docker run -e FUNCTION_TARGET=upload -p 8080:8080 IMAGE
#   docker run -e FUNCTION_TARGET=process -e FUNCTION_SIGNATURE_TYPE=cloudevent IMAGE
# (Entry points decorated with @functions_framework.http / .cloud_event pick
# their signature themselves; FUNCTION_SIGNATURE_TYPE is the fallback.)
# Cloud Functions gen2 builds the same functions/ directory from source
# (infra/functions.tf); this image runs it anywhere else (Cloud Run, a laptop).
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies first, so code changes reuse this layer. requirements.txt names
# our C extension by path (native/jpegrows): it is compiled here against
# Debian's libjpeg-turbo, whose runtime library stays; the compiler goes.
COPY functions/requirements.txt /app/requirements.txt
COPY functions/native /app/native
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
       gcc libc6-dev libjpeg62-turbo-dev libjpeg62-turbo \
    && pip install --no-cache-dir -r /app/requirements.txt \
    && python -c "import functions_framework, jpegrows" \
    && apt-get purge -y --auto-remove gcc libc6-dev libjpeg62-turbo-dev \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 aperture \
    && useradd --system --uid 10001 --gid aperture --home-dir /nonexistent --shell /usr/sbin/nologin aperture

COPY --chown=root:root functions/ /app/

USER 10001:10001

ENV FUNCTION_TARGET=stats \
    PORT=8080
EXPOSE 8080

CMD exec functions-framework --target=${FUNCTION_TARGET} --signature-type=${FUNCTION_SIGNATURE_TYPE:-http} --port=${PORT:-8080}
