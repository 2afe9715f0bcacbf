"""What `worker-comfyui submit` does: a client of the pipeline, not the worker."""
