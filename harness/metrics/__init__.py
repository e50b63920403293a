"""Metrics as pure functions (tensors / arrays in, numbers out) and the record keys they fill:
ranking and classification (``functional``), confusion-matrix scores, Kendall's tau
(``agreement``), caption selection (``selection``), the linear-probe fitter (``probe``)."""
