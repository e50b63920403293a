"""Orchestration: one run (``runner``), a sweep of them (``executors``: local loop or Ray), and
the named suites (``suites``). Names no task: each task module owns its rules."""
