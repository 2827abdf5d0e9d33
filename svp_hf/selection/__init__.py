"""Selection as pure functions of scores: the per-example signals recorded while training (``signals``), the score
methods computed from them (``methods``), ranking a score column into kept rows (``ranking``), the registered
strategies (``strategies``, k-centers included) and agreement between rankings (``correlation``). Nothing here trains."""
