"""Run by the Label Studio venv's Python: drive a real Label Studio with label-studio-sdk.

    python drive.py LS_URL TOKEN RUNNER_URL IMAGE_DIR LABEL_CONFIG_FILE

Creates a project with the labelling config, uploads the PNGs of IMAGE_DIR (Label Studio stores
them under /data/upload/...), connects the runner as the project's ML backend (Label Studio calls
its /health and /setup), runs the Data Manager action "retrieve predictions" on every task, and
prints {"backend": ..., "predictions": {file name: [prediction, ...]}} as JSON.
"""

import json
import sys
from pathlib import Path

import requests
from label_studio_sdk import LabelStudio

url, token, runner, image_dir, config_file = sys.argv[1:6]
ls = LabelStudio(base_url=url, api_key=token)
project = ls.projects.create(title="cvflow", label_config=Path(config_file).read_text())
files = sorted(Path(image_dir).glob("*.png"))
answer = requests.post(f"{url}/api/projects/{project.id}/import", headers={"Authorization": f"Token {token}"},
                       files=[(f"file{i}", (f.name, f.read_bytes(), "image/png")) for i, f in enumerate(files)], timeout=60)
answer.raise_for_status()
backend = ls.ml.create(project=project.id, url=runner, title="cvflow runner", is_interactive=False)
ls.actions.create(id="retrieve_tasks_predictions", project=project.id, selected_items={"all": True, "excluded": []})
out: dict[str, list[dict]] = {}
for task in ls.tasks.list(project=project.id, fields="all"):
    name = task.data["image"].rsplit("/", 1)[-1].split("-", 1)[-1]  # /data/upload/1/3f2a1b-seven.png
    out[name] = [{"result": p.result, "score": p.score, "model_version": p.model_version}
                 for p in ls.predictions.list(task=task.id)]
print(json.dumps({"backend": {"state": getattr(backend, "state", None), "model_version": backend.model_version},
                  "tasks": [t for t in out], "predictions": out}, default=str))
