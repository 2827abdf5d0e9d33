"""``python -m svp_hf.coreset RECIPE.yaml`` (or ``accelerate launch -m svp_hf.coreset ...``): the core-set job
(:mod:`svp_hf.jobs.coreset`)."""

from .jobs.coreset import main

if __name__ == "__main__":
    main()
