"""Active learning via proxy: the unlabelled pool (``pool``), the selection rounds (``loop``) and the labelling session
with real labellers (``labelling``). The job itself is :mod:`svp_hf.jobs.active` (``python -m svp_hf.active``)."""
