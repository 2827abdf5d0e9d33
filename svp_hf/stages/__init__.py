"""SVP's stages, driven by one orchestrator: the typed stage settings (``settings``) and their translation from recipes
(``roles``), the model-against-data check before any work (``preflight``), training the proxy and scoring
(``proxy``), ``auto``'s strategy check, :class:`~svp_hf.stages.orchestrator.Pruner` (``orchestrator``) and training
dynamics recorded from a user's own loop (``recorder``)."""
