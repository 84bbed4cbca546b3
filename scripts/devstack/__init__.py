"""The local Google Cloud stack (spec S3): emulators, fake-gcs-server,
functions-framework, the gateway and the storage event bridge.

`make run` starts it for people; the test suite starts the same stack on free
ports, so what the tests exercise is what a developer runs.
"""
