"""The inbox trigger: a Cloud Function (gen2) that starts the Cloud Run job once per dropped workflow.

This folder is two things at once:

- the function's *source directory*: `gcloud functions deploy --source trigger --entry-point
  on_inbox_object` uploads it alone, with `requirements.txt`; functions-framework then loads
  `main.py` as a module named `main` whose `__path__` is this folder (3.10.2's loader passes
  `submodule_search_locations`), so the sibling modules resolve as `main.config`, `main.claims`...;
- the package `trigger`, importable from the job (`from trigger.claims import ClaimStore`).

Every import between the modules here is therefore relative (`from .claims import ...`): it
resolves under either parent, and nothing here imports `job`, which the function does not carry.
"""
