"""qa/tiny-trainer: the training runtime's test package (tests/training)."""
