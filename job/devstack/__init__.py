"""Local stand-ins for Google Cloud, never used in production.

`gcs_emulator` runs fake-gcs-server (a real GCS JSON API, preconditions included) on a loopback
port; `run_api` answers the Cloud Run Admin API v2 calls the trigger makes, and can start each
execution as a local process. The test fixtures and `worker-comfyui dev` use them to run the whole
inbox pipeline on one machine with no Google account.
"""
