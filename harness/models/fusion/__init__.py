"""Fusion models over frozen encoders: ``model`` (specs, checkpoints, adapters), ``towers`` and
``heads`` (the networks), ``data``/``cache`` (training features), ``fit`` and ``eval`` (``vlbench fit``)."""
