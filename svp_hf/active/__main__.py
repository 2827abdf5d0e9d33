"""``python -m svp_hf.active RECIPE.yaml``: the active-learning job (:mod:`svp_hf.jobs.active`)."""

from ..jobs.active import main

if __name__ == "__main__":
    main()
