"""A support-vector machine with an RBF kernel for 8x8 digits, in numpy: the model (``model``) and its CVFlow solver (``solver``)."""
