"""svp_hf.coreset's command line: exit codes."""

import pytest

from svp_hf import coreset

from .conftest import REPO

QUICKSTART = str(REPO / "recipes" / "quickstart.yaml")


def test_a_runtime_failure_exits_3_not_2(tmp_path, capsys):
    argv = [QUICKSTART, "--output_dir", str(tmp_path / "out"), "--proxy_epochs", "1", "--max_train_samples", "200",
            "--learning_rate", "1e30", "--strategy", "top", "--method", "entropy"]
    with pytest.raises(SystemExit) as exit_info:
        coreset.main(argv)
    assert exit_info.value.code == 3
    err = capsys.readouterr().err
    assert "svp_hf.coreset: error: proxy 'resnet20' produced NaN scores ('entropy' for 200 of 200 rows" in err
