"""What a run leaves behind and shares: the output folder (``output``), the report (``report``), the dataset card
(``card``), pushing to the Hub (``hub``), the ``evaluate`` modules (``metrics``) and the templates."""
