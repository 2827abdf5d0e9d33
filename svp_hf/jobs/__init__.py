"""The jobs: the job frame every command shares (``pipeline``: recipe, output folder, resume, metrics, publishing),
the core-set job (``coreset``), the active-learning job (``active``) and the ``svp-hf`` command line (``cli``)."""
