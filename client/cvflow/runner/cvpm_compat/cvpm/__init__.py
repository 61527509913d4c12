"""The ``cvpm`` package of 2019 as the cvflow runner provides it to legacy packages' solvers.

``solver`` (the ``Solver`` base class), ``utility`` (``load_image_file``, ``save_image``) and
``bundle`` (the ``Bundle`` base class of a package's ``bundle.py``). Only what solver code uses
is here: serving (``Solver.start``), training and the model downloads of 2019 are the runner's
and the installer's work now (docs/solvers.md, "2019 CVPM solvers").
"""

#: Tells this shim from a real ``cvpm`` distribution: ``getattr(cvpm, "CVFLOW_SHIM", False)``.
CVFLOW_SHIM = True
