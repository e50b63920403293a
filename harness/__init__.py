"""vlbench: compare multimodal image-text models side by side.

Importing this package is cheap: no torch, no model code. See docs/architecture.md.
"""

__version__ = "0.1.0"
