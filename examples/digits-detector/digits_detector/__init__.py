"""A small CenterNet-style digit detector: the network (``model``), its solver (``solver``), and the
canvases, training loop and metrics (``data``, ``train``, ``metrics``) a fine-tune reuses."""
