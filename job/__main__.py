"""`python -m job` is `worker-comfyui`."""

import sys

from job.cli import main

sys.exit(main())
