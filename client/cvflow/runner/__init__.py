"""The runner: serves a package's solvers over HTTP, inside the package's own virtual environment.

It imports the standard library only (plus Pillow to decode images, numpy/torch only as the
solvers do), so it runs in any package venv with nothing added to it, offline included, and a
package that pins its own web stack cannot clash with it. ``cvflow run`` starts it with
``_boot.py``; ``python -m cvflow.runner PACKAGE_DIR`` runs it in the foreground.

| module | what it holds |
| --- | --- |
| ``server`` | routes, ``Runner`` |
| ``protocol`` | the HTTP/1.1 server: h11's grammar (vendored), keep-alive, timeouts, limits |
| ``loader`` | read ``cvflow.toml``, import and construct solvers with their ``Context`` |
| ``schema`` | inputs from ``infer``'s type hints; checks; JSON Schema |
| ``requests`` | multipart / JSON / raw-image bodies to keyword arguments |
| ``images`` | image decoding, size and pixel limits, allowed URLs |
| ``batching`` | one worker thread per solver; micro-batches |
| ``label_studio`` | Label Studio's ML backend protocol (``--label-studio``): configs, tasks, results |
| ``cvpm_compat/`` | 2019 CVPM solvers run unchanged: the ``cvpm`` shim and the ``infer(image_file, config)`` adapter |
| ``openapi``, ``kserve``, ``results``, ``errors``, ``multipart`` | what their names say |
"""
