"""The /predict service: ComfyUI over HTTP on Cloud Run (docs/api.md sections 2, 3 and 5).

`create_app(settings, runner)` builds the FastAPI app; `worker-comfyui serve` boots ComfyUI and
serves it with uvicorn. Each concern lives in its own small module: admission (the queue gate),
auth, limits (body size), disconnect (callers who hang up), health, catalog (/models), async_requests,
predict (one run), handlers (the error shape), schemas (the response schemas).
"""
