"""svp_hf.utils.log: main-process logging, with the process named only when there is more than one."""

import logging

from svp_hf.utils.log import get_logger


def test_a_single_process_logs_without_a_rank_prefix(caplog):
    logger = get_logger("svp_hf.test_log")
    with caplog.at_level(logging.INFO, logger="svp_hf.test_log"):
        logger.info("scored 10 rows")
        logger.debug("not shown at INFO")
    assert [r.getMessage() for r in caplog.records] == ["scored 10 rows"]
