"""Top-k overlap: the share of one scoring's top k examples that the other scoring also ranks in its top k."""

import datasets
import evaluate

from svp_hf.correlation import top_k_overlap

_DESCRIPTION = """
Top-k overlap between two scorings of the same examples: |top_k(predictions) & top_k(references)| / k, where top_k
is exactly the subset svp_hf.select keeps (highest scores first unless descending=False, ties broken by seed). In
Selection via Proxy it measures how much of the target's own selection the proxy's selection recovers.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `float`): one scoring, e.g. the proxy's scores.
    references (`list` of `float`): the other scoring of the same examples, in the same order.
    k (`int`, optional): the size of the selections compared.
    fraction (`float`, optional): or the share of the examples selected (give exactly one of k and fraction).
    descending (`bool`, defaults to `True`): whether the highest scores are selected (False: the lowest, as margin).
    seed (`int`, defaults to 0): tie-breaking seed, as in svp_hf.select.
Returns:
    top_k_overlap (`float`): the overlap in [0, 1].
Examples:
    >>> metric = evaluate.load("svp_hf/metrics/top_k_overlap")
    >>> metric.compute(predictions=[0.9, 0.8, 0.1, 0.2], references=[0.7, 0.1, 0.9, 0.2], k=2)
    {'top_k_overlap': 0.5}
"""

_CITATION = """
@inproceedings{coleman2020selection,
  title={Selection via Proxy: Efficient Data Selection for Deep Learning},
  author={Coleman, Cody and Yeh, Christopher and Mussmann, Stephen and Mirzasoleiman, Baharan and Bailis, Peter and
          Liang, Percy and Leskovec, Jure and Zaharia, Matei},
  booktitle={International Conference on Learning Representations},
  year={2020}
}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class TopKOverlap(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Value("float64"), "references": datasets.Value("float64")}),
        )

    def _compute(self, predictions, references, k=None, fraction=None, descending=True, seed=0):
        value = top_k_overlap(predictions, references, k=k, fraction=fraction, descending=descending, seed=seed)
        return {"top_k_overlap": value}
