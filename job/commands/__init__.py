"""The subcommands of `worker-comfyui`, one module each."""
