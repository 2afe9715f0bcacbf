"""Benchmarks: the runner measured against a minimal direct ComfyUI client."""
