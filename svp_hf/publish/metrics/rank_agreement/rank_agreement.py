"""Rank agreement between two scorings of the same examples: Spearman's rho, Kendall's tau-b and top-k overlap."""

import datasets
import evaluate

from svp_hf.selection.correlation import kendall, spearman, top_k_overlap

_DESCRIPTION = """
How much two scorings of the same examples agree on their ranking, e.g. a proxy model's and a target model's selection
scores in Selection via Proxy (Coleman et al., ICLR 2020). Spearman's rho is Pearson's correlation of the average
ranks; Kendall's tau-b counts concordant minus discordant pairs, corrected for ties; both lie in [-1, 1], and infinite
scores rank like any other extreme value. Given `k` or `fraction`, also the top-k overlap
|top_k(predictions) & top_k(references)| / k, where top_k is exactly the subset svp_hf.select keeps (highest scores
first unless descending=False, ties broken by seed).
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `float`): one scoring, e.g. the proxy's scores.
    references (`list` of `float`): the other scoring of the same examples, in the same order.
    k (`int`, optional): the size of the selections compared for top-k overlap.
    fraction (`float`, optional): or the share of the examples selected (at most one of k and fraction).
    descending (`bool`, defaults to `True`): whether the highest scores are selected (False: the lowest, as margin).
    seed (`int`, defaults to 0): tie-breaking seed, as in svp_hf.select.
Returns:
    spearman (`float`): Spearman's rank correlation coefficient.
    kendall (`float`): Kendall's tau-b.
    top_k_overlap (`float`, only with k or fraction): the overlap of the two top-k selections, in [0, 1].
Examples:
    >>> metric = evaluate.load(svp_hf.publish.metrics.metric_path("rank_agreement"))
    >>> metric.compute(predictions=[0.9, 0.8, 0.1, 0.2], references=[0.7, 0.1, 0.9, 0.2], k=2)
    {'spearman': -0.4, 'kendall': -0.333..., 'top_k_overlap': 0.5}
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
class RankAgreement(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("float64"), "references": datasets.Value("float64")}
            ),
        )

    def _compute(self, predictions, references, k=None, fraction=None, descending=True, seed=0):
        result = {"spearman": spearman(predictions, references), "kendall": kendall(predictions, references)}
        if k is not None or fraction is not None:
            result["top_k_overlap"] = top_k_overlap(
                predictions, references, k=k, fraction=fraction, descending=descending, seed=seed
            )
        return result
