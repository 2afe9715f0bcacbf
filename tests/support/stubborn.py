"""A workflow whose one long node ComfyUI cannot interrupt, for deadlines that must hold anyway.

ComfyUI checks its interrupt flag only between nodes (and between a node's list items). Core
ImageBlur is one `conv2d` call over the whole batch, so a big batch blurs for seconds with no check
inside: on the 2-core CI box a 1024 x 1024 image at radius 31 takes about a second, so a batch of
6 holds ComfyUI for 6-8 s after an interrupt. Before it, a tiny branch saves a file and a preview,
which ComfyUI runs first (its ready output nodes go first): files written for the prompt that
only its end lists, so a cleanup that waits for the end is what removes them.
"""

from __future__ import annotations

from typing import Any

BLUR_NODE = "5"


def stubborn_workflow(tag: str, *, batch: int = 6) -> dict[str, Any]:
    """Early SaveImage `early-<tag>` and PreviewImage, then `batch` uninterruptible seconds of blur,
    then SaveImage `late-<tag>` (which an interrupt stops from running)."""
    return {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0x102030}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": f"early-{tag}"}},
        "3": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}},
        "4": {
            "class_type": "EmptyImage",
            "inputs": {"width": 1024, "height": 1024, "batch_size": batch, "color": 0x405060},
        },
        BLUR_NODE: {"class_type": "ImageBlur", "inputs": {"image": ["4", 0], "blur_radius": 31, "sigma": 8.0}},
        "6": {"class_type": "SaveImage", "inputs": {"images": [BLUR_NODE, 0], "filename_prefix": f"late-{tag}"}},
    }
