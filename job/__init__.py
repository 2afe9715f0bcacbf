"""worker-comfyui: ComfyUI workflows as a serverless API on Cloud Run."""
