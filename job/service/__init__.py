"""The /predict service: ComfyUI over HTTP on Cloud Run (CONTRACT.md sections 2 and 3).

`create_app(settings, runner)` builds the FastAPI app; `worker-comfyui serve` boots ComfyUI and
serves it with uvicorn. Each concern lives in its own small module: admission (the queue gate),
auth, limits (body size), caller (disconnects), health, catalog (/models), deferred (async requests),
predict (one run), handlers (the error shape), models (the response schemas).
"""
