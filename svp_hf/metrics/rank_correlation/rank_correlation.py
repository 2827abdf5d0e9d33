"""Spearman's rho and Kendall's tau-b between two scorings of the same examples (svp_hf's numpy implementation)."""

import datasets
import evaluate

from svp_hf.correlation import kendall, spearman

_DESCRIPTION = """
Rank correlation between two scorings of the same examples, e.g. a proxy model's and a target model's selection
scores in Selection via Proxy (Coleman et al., ICLR 2020). Spearman's rho is Pearson's correlation of the average
ranks; Kendall's tau-b counts concordant minus discordant pairs, corrected for ties. Both lie in [-1, 1]; infinite
scores rank like any other extreme value.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `float`): one scoring, e.g. the proxy's scores.
    references (`list` of `float`): the other scoring of the same examples, in the same order.
Returns:
    spearman (`float`): Spearman's rank correlation coefficient.
    kendall (`float`): Kendall's tau-b.
Examples:
    >>> metric = evaluate.load("svp_hf/metrics/rank_correlation")
    >>> metric.compute(predictions=[0.1, 0.4, 0.3], references=[1, 3, 2])
    {'spearman': 1.0, 'kendall': 1.0}
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
class RankCorrelation(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Value("float64"), "references": datasets.Value("float64")}),
        )

    def _compute(self, predictions, references):
        return {"spearman": spearman(predictions, references), "kendall": kendall(predictions, references)}
