"""The client side of annotation projects (docs/annotation.md): suggestions from a solver,
images pushed to a project.

| module | what it holds |
| --- | --- |
| ``outputs`` | a solver's output -> suggestions, as its manifest's ``suggest`` declaration says |
"""
