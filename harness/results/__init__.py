"""What a run leaves behind: records (``records``), the store they live in (``store``), the
embedding cache (``cache``) and the one file-identity cache that names files by content
(``identity``)."""
