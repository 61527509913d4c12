"""Fine-tuning: the trainer contract (``api``), the runtime that runs a package's trainer in its
venv, and the client side of ``cvflow finetune`` and ``cvflow worker --train`` (docs/training.md)."""
