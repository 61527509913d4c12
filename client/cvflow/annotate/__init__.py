"""The client side of annotation projects (docs/annotation.md): images pushed to a project,
and suggestion workers that run a solver on them.

| module | what it holds |
| --- | --- |
| ``outputs`` | a solver's output -> suggestions, as its manifest's ``suggest`` declaration says |
| ``worker`` | ``cvflow annotate suggest``: claim items, run the model, post suggestions |
| ``push`` | ``cvflow annotate push``: a folder's images uploaded and added as items |
"""
