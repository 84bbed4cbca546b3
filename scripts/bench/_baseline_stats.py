"""The straightforward stats server the benchmark compares against: download
the object and run numpy on the full array, for every request."""

import io

import flask
import functions_framework
import numpy as np
from google.cloud import storage
from PIL import Image

_client = storage.Client()


@functions_framework.http
def baseline(request: flask.Request):
    bucket, _, rest = request.path.lstrip("/").partition("/")
    name, _, func = rest.rpartition("/")
    data = _client.bucket(bucket).blob(name).download_as_bytes()
    array = np.asarray(Image.open(io.BytesIO(data)))
    value = np.percentile(array, float(func[1:])) if func.startswith("p") else getattr(np, func)(array)
    return str(value)
