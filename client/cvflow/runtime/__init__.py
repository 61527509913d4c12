"""Running solvers in the background: runner records (``state``) and their processes (``supervisor``).

This half runs in the client's own environment; the runner it starts (``cvflow.runner``)
runs in the package's venv.

| module | what it holds |
| --- | --- |
| ``state`` | runner records under ``CVFLOW_HOME/state/runners/`` |
| ``supervisor`` | starting, checking and stopping runner processes |
| ``logs`` | a runner's log: the last lines, and following what is appended |
"""
