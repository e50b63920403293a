"""Fitting models on a dataset's train split (``vlbench fit``): the three fusion designs over
frozen towers. Above tasks and datasets, so models never import either."""
