"""svp_hf: Selection via Proxy (Coleman et al., ICLR 2020) for the Hugging Face ecosystem.

A small, cheap proxy model ranks the training examples; the selected subset trains the large target model.
"""

__version__ = "0.1.0"

from .api import choose, prune, score, select, selected_indices  # noqa: E402
from .active_learning import active_learn  # noqa: E402
from .correlation import compare_scores, kendall, spearman, top_k_overlap  # noqa: E402
from .data import BUILTIN_DATASETS, load_data  # noqa: E402
from .errors import SVPConfigError, SVPRuntimeError  # noqa: E402
from .active_learning import ask, labelled_set, tell  # noqa: E402  (active learning with real labellers)
from .methods import METHODS, get_method, list_methods, register_method  # noqa: E402
from .hub import push_to_hub  # noqa: E402
from .models import FAMILIES, create_model, list_families, register_family, resolve_family  # noqa: E402
from .output import load_scores  # noqa: E402
from .signals import SIGNALS, register_signal  # noqa: E402
from .strategies import STRATEGIES, list_strategies  # noqa: E402

__all__ = [
    "__version__",
    "prune",
    "score",
    "select",
    "selected_indices",
    "choose",
    "STRATEGIES",
    "list_strategies",
    "SIGNALS",
    "register_signal",
    "active_learn",
    "load_data",
    "BUILTIN_DATASETS",
    "SVPConfigError",
    "SVPRuntimeError",
    "METHODS",
    "get_method",
    "list_methods",
    "register_method",
    "FAMILIES",
    "create_model",
    "list_families",
    "register_family",
    "resolve_family",
    "push_to_hub",
    "load_scores",
    "compare_scores",
    "spearman",
    "kendall",
    "top_k_overlap",
    "ask",
    "tell",
    "labelled_set",
]
