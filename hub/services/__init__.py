"""Domain logic of the registry, free of HTTP: each function takes a session and a principal.

| module | what it holds |
| --- | --- |
| ``access`` | who may read, publish and own packages, repositories and annotation projects (the one place) |
| ``accounts`` | users, organisations, tokens |
| ``packages`` | publishing, yanking, privacy and roles |
| ``catalog`` | the read side: package and version documents, search, download counts |
| ``hf`` | the Hugging Face Hub protocol's revisions (``main``, versions, commit ids) and documents |
| ``lineage`` | a fine-tune's ``[lineage]``: checked on publish, recorded with every stored version, read by the pages |
| ``blobs`` | resumable uploads and blob checks |
| ``gc`` | removing unreferenced blobs and abandoned uploads |
| ``throttle`` | the sign-in limiter |
| ``repositories`` | registered git repositories: register, list, re-index, unregister |
| ``webhooks`` | GitHub, GitLab and Gitea webhook verification |
| ``urls`` | which repository and weight URLs may be fetched |
| ``jobs`` | the ``index_jobs`` table the indexer's workers claim from |
| ``annotation/`` | annotation projects: labels, projects and members, the queue, images, suggestions, snapshots |
| ``training/`` | the fine-tune loop in a project: settings, the trigger, training jobs and their leases, promotion |
"""
