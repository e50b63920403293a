"""The layer order of the code, lowest first: a module may import its own layer and the ones
below it, never one above (``tests/test_layout.py`` checks every import, inside functions too).
docs/architecture.md explains each layer; this list is the one place it is declared."""

LAYERS: tuple[tuple[str, ...], ...] = (
    ("harness", "harness.layers", "harness.core"),  # registry, model contracts, errors, timing, progress
    ("harness.metrics",),                           # pure functions and the record keys
    ("harness.results",),                           # records, the store, the caches, file identity
    ("harness.datasets",),                          # loaders and dataset views
    ("harness.models",),                            # adapters (never import datasets, tasks or the store)
    ("harness.parallel",),                          # the process group and who does what
    ("harness.tasks",),                             # the task protocol and its tasks
    ("harness.training",),                          # vlbench fit: fusion models on a train split
    ("harness.run",),                               # runner, sweep executors, suites
    ("harness.gate", "harness.verify"),             # accuracy check, throughput ratios, published numbers
    ("leaderboard", "harness.importers"),           # the page; other tools' results in
    ("harness.cli", "harness.__main__"),            # the command line
)


def layer_of(module: str) -> int:
    """Index of the layer ``module`` belongs to (its longest matching prefix).

    >>> layer_of("harness.tasks.retrieval"), layer_of("harness.core.registry"), layer_of("harness")
    (6, 0, 0)
    """
    best, found = -1, None
    for i, prefixes in enumerate(LAYERS):
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and len(p) > best:
                best, found = len(p), i
    if found is None:
        raise KeyError(f"{module}: in no layer of harness.layers.LAYERS")
    return found
