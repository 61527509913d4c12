"""Running solvers in the background: runner records (``state``) and their processes (``supervisor``).

This half runs in the client's own environment; the runner it starts (``cvflow.runner``)
runs in the package's venv.
"""
