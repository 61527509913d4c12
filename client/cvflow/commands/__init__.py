"""The CLI's commands, one module per group of concerns, and the table ``cvflow`` loads them from.

A command's module is imported only when that command runs (or its own ``--help`` is asked):
``cvflow --help`` lists :data:`COMMANDS` and imports none of them, so it needs neither the
HTTP client nor the resolver (``cvflow.commands.lazy``).
"""

from __future__ import annotations

from cvflow.commands.lazy import Entry

_ACCOUNT, _PACKAGES, _PULL = "cvflow.commands.account", "cvflow.commands.packages", "cvflow.commands.pull"
_INSTALL, _BUNDLE, _RUN = "cvflow.commands.install", "cvflow.commands.bundle", "cvflow.commands.run"
_DATASET, _ANNOTATE = "cvflow.commands.dataset", "cvflow.commands.annotate"
_TRAINING = "cvflow.commands.training"

#: Every command: its name, module, attribute and short help (the first line of its own help;
#: ``tests/client/test_cli_startup.py`` checks that they agree).
COMMANDS: tuple[Entry, ...] = (
    Entry("login", _ACCOUNT, "login", "Log in to a hub and save a token for it; the hub becomes the default one."),
    Entry("logout", _ACCOUNT, "logout",
          "Forget the token saved for one hub (tokens for other hubs, and the default hub, stay)."),
    Entry("whoami", _ACCOUNT, "whoami", "Show the user and token scopes the hub sees."),
    Entry("init", _PACKAGES, "init", "Create a new package that validates and publishes as it is."),
    Entry("validate", _PACKAGES, "validate", "Check a package directory the way the hub will."),
    Entry("publish", _PACKAGES, "publish",
          "Publish a package directory to the hub, or register a git repository with --git."),
    Entry("yank", _PACKAGES, "yank", "Yank a published version (or undo a yank with --undo)."),
    Entry("search", _PACKAGES, "search", "Find packages on the hub by name and description."),
    Entry("info", _PACKAGES, "info", "Show a package, or the version a range picks."),
    Entry("pull", _PULL, "pull", "Download a package version into the shared cache and print where it is."),
    Entry("cache", _PULL, "cache", "Look after the local cache of pulled packages (CVFLOW_HOME/cache)."),
    Entry("install", _INSTALL, "install",
          "Install a package and its package dependencies, each in its own virtual environment."),
    Entry("list", _INSTALL, "list_installed", "List installed package versions and their virtual environments."),
    Entry("uninstall", _INSTALL, "uninstall",
          "Remove an installed package's virtual environment (every version, or just VERSION)."),
    Entry("bundle", _BUNDLE, "bundle",
          "Write a package and its resolved dependencies to one file, for `cvflow install --from`."),
    Entry("run", _RUN, "run", "Serve a package's solvers over REST, in the background, from its installed venv."),
    Entry("ps", _RUN, "ps", "Show the runners `cvflow run` started, and whether each still runs."),
    Entry("stop", _RUN, "stop", "Stop runners: SIGTERM (queued calls finish), then SIGKILL after --timeout."),
    Entry("logs", _RUN, "logs", "Print a runner's log: its start-up, one line per request, and solver tracebacks."),
    Entry("restart", _RUN, "restart",
          "Restart runners (running or dead) as they were started, on the same port when it is free."),
    Entry("dataset", _DATASET, "dataset", "Import and export datasets: COCO, Pascal VOC, YOLO and ImageFolder."),
    Entry("annotate", _ANNOTATE, "annotate",
          "Annotation projects: create one, push images, run a suggestion worker, snapshot."),
    Entry("finetune", _TRAINING, "finetune",
          "Fine-tune a model version on a dataset version and publish the result as a new version."),
    Entry("worker", _TRAINING, "worker",
          "Run a worker that claims fine-tune jobs from the hub and publishes what it trains."),
)
