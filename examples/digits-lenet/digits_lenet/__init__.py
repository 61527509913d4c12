"""A LeNet-style CNN for 8x8 digits: the model (``model``) and its CVFlow solver (``solver``)."""
