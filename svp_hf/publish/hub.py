"""Hub stage: publish a pruned dataset (its ``output_dir/dataset`` folder: card, splits, scores, plots) as a Hub
dataset repository with ``huggingface_hub``.

Every check the Hub would otherwise fail on half-way runs first, before anything is created or uploaded: a token is
available and valid, the repository's namespace is the user's or one of their organizations', and an existing
repository is replaced only when asked (``overwrite=True``).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import tempfile
from typing import Iterator, Optional, Sequence, Tuple, Union

import datasets
import huggingface_hub
from datasets import Dataset, DatasetDict
from huggingface_hub import HfApi, get_session, get_token
from huggingface_hub.utils import HFValidationError, validate_repo_id

from ..config.checks import DEFAULT_MAX_SHARD_SIZE, parse_size
from ..errors import SVPConfigError
from ..record import selection_record
from ..version import __version__
from .card import dataset_card
from .output import DATASET_DIR, PLOTS_DIR, RESULT_NAMES, TMP_PREFIX, check_complete, write_dataset_folder

REPO_TYPE = "dataset"
# Stands in for the user's namespace when a bare name is checked before the Hub is asked who the user is.
_PLACEHOLDER_NAMESPACE = "user"
# How long the one probe of the Hub waits for an answer before the run reads the local cache only.
HUB_PROBE_SECONDS = 5.0
# Names that are never Hub ids, whatever they look like.
_LOCAL_PREFIXES = ("builtin:",)


# Where huggingface_hub finds a token besides the one given (and the file `hf auth login` saves).
TOKEN_VARIABLES = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")
# No Hub token is shorter; a shorter value found in the environment is not redacted from text (it would garble it).
MIN_TOKEN_LENGTH = 8


def known_tokens(*given: Optional[str]) -> list:
    """Every token value a run may hold, to redact from whatever it records: the ones `given` (``hub_token``), those
    of the environment (:data:`TOKEN_VARIABLES`) and the saved one, longest first (so that a token holding another is
    replaced whole)."""
    found = {t for t in given if t}
    for token in [*(os.environ.get(v) for v in TOKEN_VARIABLES), get_token()]:
        if token and len(token) >= MIN_TOKEN_LENGTH:
            found.add(token)
    return sorted(found, key=len, reverse=True)


# --- reaching the Hub ------------------------------------------------------------------------------------------------


def names_on_hub(names: Sequence[Optional[str]]) -> list:
    """The entries of `names` that would be fetched from the Hub: ``namespace/name`` ids (models, after any
    ``config:`` prefix and ``,key=value`` options) and ``hf://`` paths that are no local path."""
    found = []
    for name in names:
        if not isinstance(name, str) or name.startswith(_LOCAL_PREFIXES):
            continue
        bare = name.split(":", 1)[1] if name.startswith("config:") else name
        bare = bare.split(",", 1)[0]
        if bare.startswith("hf://") or (bare.count("/") == 1 and not os.path.exists(bare) and "://" not in bare):
            found.append(name)
    return found


@functools.lru_cache(maxsize=1)
def unreachable_hub_reason() -> Optional[str]:
    """Why the Hub cannot be reached from this process (one probe, answered in :data:`HUB_PROBE_SECONDS` at most,
    through the same HTTP client, proxies and endpoint as every Hub call), or ``None`` when it answers or the
    libraries are offline already (``HF_HUB_OFFLINE=1``)."""
    if huggingface_hub.constants.HF_HUB_OFFLINE:
        return None
    try:
        get_session().head(huggingface_hub.constants.ENDPOINT, timeout=HUB_PROBE_SECONDS)
    except Exception as err:  # any transport error (no DNS, no route, refused, timed out): the Hub is out of reach
        return f"{type(err).__name__}: {err}"
    return None


def offline_if_unreachable(names: Sequence[Optional[str]]) -> Optional[str]:
    """When some of `names` would be fetched from the Hub and the Hub cannot be reached, switch this process (and
    the processes it starts) to offline mode, as ``HF_HUB_OFFLINE=1`` does: what the local cache holds is read, and
    anything else fails at once with the libraries' offline error, instead of after each request's retries. Returns
    the reason the Hub is unreachable, or ``None`` (nothing changed)."""
    if not names_on_hub(names):
        return None
    reason = unreachable_hub_reason()
    if reason is not None:
        os.environ["HF_HUB_OFFLINE"] = "1"
        huggingface_hub.constants.HF_HUB_OFFLINE = True  # read at call time by huggingface_hub and transformers
        datasets.config.HF_HUB_OFFLINE = True  # and by datasets
    return reason


def check_repo_id(repo_id) -> None:
    """A clear error, before any network call, when `repo_id` is not a valid Hub dataset id (``name`` or
    ``namespace/name``)."""
    if not isinstance(repo_id, str) or not repo_id.strip():
        raise SVPConfigError(f"a Hub dataset id is needed (hub_dataset_id / repo_id), got {repo_id!r}")
    full = repo_id if "/" in repo_id else f"{_PLACEHOLDER_NAMESPACE}/{repo_id}"
    try:
        validate_repo_id(full)
    except HFValidationError as err:
        raise SVPConfigError(f"invalid Hub dataset id {repo_id!r}: {err}") from None
    if full.count("/") != 1:
        raise SVPConfigError(f"invalid Hub dataset id {repo_id!r}: use 'name' or 'namespace/name'")


def check_hub_target(repo_id: str, *, token: Optional[str] = None, overwrite: bool = False) -> Tuple[HfApi, str]:
    """Check that `repo_id` can be pushed to, before any upload; returns the API client and the full repo id.

    Raises :class:`SVPConfigError` when there is no token, the token is rejected, the namespace belongs to someone
    else, or the repository exists and `overwrite` is not set. A bare name (``"cifar10-pruned"``) is put in the
    user's namespace.
    """
    check_repo_id(repo_id)  # before the Hub is asked anything
    token = token or get_token()
    if not token:
        raise SVPConfigError(
            "no Hugging Face token: log in with `hf auth login`, set HF_TOKEN, or pass a token (hub_token / token=)"
        )
    api = HfApi(token=token)
    try:
        user = api.whoami()
    except Exception as err:  # rejected token, offline mode, no network: say so before anything is uploaded
        raise SVPConfigError(
            f"could not check the Hugging Face token with the Hub ({type(err).__name__}: {err})"
        ) from err
    name = user["name"]
    orgs = [org["name"] for org in user.get("orgs") or []]
    if "/" not in repo_id:
        repo_id = f"{name}/{repo_id}"
    try:
        validate_repo_id(repo_id)
    except HFValidationError as err:
        raise SVPConfigError(f"invalid Hub dataset id {repo_id!r}: {err}") from None
    namespace = repo_id.split("/")[0]
    if namespace not in [name, *orgs]:
        raise SVPConfigError(
            f"cannot push to {repo_id!r}: namespace {namespace!r} is neither yours ({name!r}) nor one of your "
            f"organizations ({', '.join(repr(o) for o in orgs) or 'none'})"
        )
    if api.repo_exists(repo_id, repo_type=REPO_TYPE) and not overwrite:
        raise SVPConfigError(
            f"the Hub dataset {repo_id!r} already exists; set hub_overwrite: true (overwrite=True) to replace its "
            "contents, or choose another id"
        )
    return api, repo_id


@contextlib.contextmanager
def dataset_folder(
    result: Union[str, os.PathLike, Dataset, DatasetDict],
    repo_id: Optional[str] = None,
    max_shard_size=DEFAULT_MAX_SHARD_SIZE,
) -> Iterator[str]:
    """The folder to upload for `result`: an output_dir's ``dataset/`` (its card re-rendered with `repo_id`), a
    dataset folder as it is, or an in-memory (pruned) ``Dataset``/``DatasetDict`` written to a temporary folder in
    parquet shards of at most `max_shard_size`."""
    if isinstance(result, (Dataset, DatasetDict)):
        splits = dict(result) if isinstance(result, DatasetDict) else {"train": result}
        with tempfile.TemporaryDirectory(prefix="svp-hub-") as tmp:
            first = next(iter(splits.values()))
            metrics = {
                "svp_hf_version": __version__,
                "splits": {k: len(v) for k, v in splits.items()},
                "n_selected": len(first),
                **(selection_record(first) or {}),
            }
            card = str(dataset_card(metrics, repo_id=repo_id, has_scores=False))
            write_dataset_folder(tmp, splits, card, max_shard_size=max_shard_size)
            yield tmp
        return
    folder, output_dir = _local_folder(result)
    if output_dir is not None:
        _refresh_card(output_dir, repo_id)
    yield folder


def _local_folder(path: Union[str, os.PathLike]) -> Tuple[str, Optional[str]]:
    """The dataset folder at `path` and, when `path` is an output_dir, that output_dir."""
    path = os.fspath(path)
    if _is_output_dir(path):
        check_complete(path)  # never upload a result a failed or killed run left incomplete or mixed
        return os.path.join(path, DATASET_DIR), path
    if os.path.isfile(os.path.join(path, "README.md")) and os.path.isdir(os.path.join(path, "data")):
        parent = os.path.dirname(os.path.abspath(path))
        if os.path.basename(os.path.abspath(path)) == DATASET_DIR and _is_output_dir(parent):
            check_complete(parent)  # the dataset folder of an output_dir: the same check
        return path, None
    raise SVPConfigError(
        f"{path!r} is neither an svp_hf output_dir (with dataset/README.md) nor a dataset folder (README.md and data/)"
    )


def _is_output_dir(path: str) -> bool:
    """Whether `path` holds (the remains of) an svp_hf result: a result file next to dataset/, or a temporary
    folder of one."""
    if not os.path.isdir(os.path.join(path, DATASET_DIR)):
        return False
    names = os.listdir(path)
    return (
        any(n in RESULT_NAMES and n != DATASET_DIR for n in names)
        or any(n.startswith(TMP_PREFIX) for n in names)
        or (
            os.path.isfile(os.path.join(path, DATASET_DIR, "README.md"))
            and not os.path.isdir(os.path.join(path, "data"))
        )
    )


def _refresh_card(output_dir: str, repo_id: Optional[str]) -> None:
    """Re-render an output_dir's card from its metrics.json so its loading snippet names `repo_id`: the local folder
    stays exactly what was uploaded."""
    metrics_path = os.path.join(output_dir, "metrics.json")
    if repo_id is None or not os.path.isfile(metrics_path):
        return
    with open(metrics_path, encoding="utf-8") as f:
        metrics = json.load(f)
    folder = os.path.join(output_dir, DATASET_DIR)
    figures = [
        f for f in metrics.get("report_figures") or [] if os.path.isfile(os.path.join(folder, PLOTS_DIR, f["filename"]))
    ]
    dataset_card(metrics, figures, repo_id=repo_id).save(os.path.join(folder, "README.md"))


def push_to_hub(
    result: Union[str, os.PathLike, Dataset, DatasetDict],
    repo_id: str,
    *,
    private: Optional[bool] = None,
    token: Optional[str] = None,
    overwrite: bool = False,
    commit_message: Optional[str] = None,
    max_shard_size=DEFAULT_MAX_SHARD_SIZE,
) -> str:
    """Upload a pruned dataset with its card, scores and plots to the Hub dataset `repo_id`; returns its URL.

    `result` is an ``output_dir`` written by ``python -m svp_hf.coreset`` (its ``dataset/`` folder is uploaded), a
    dataset folder, or a ``Dataset``/``DatasetDict`` (e.g. from :func:`svp_hf.prune`). The checks of
    :func:`check_hub_target` run before anything is created or uploaded, and an output_dir (or its ``dataset/``) must
    hold a complete result (see :func:`svp_hf.publish.output.check_complete`: a run that failed or was killed while writing
    leaves an incomplete one, refused with a clear error); with `overwrite`, files of the previous
    version that the new one does not have are deleted in the same commit. A ``Dataset``/``DatasetDict`` is written
    in parquet shards of at most `max_shard_size` (an output_dir was sharded when it was written).
    """
    if not isinstance(result, (Dataset, DatasetDict)):
        _local_folder(result)  # a wrong path fails before the Hub is asked anything
    parse_size(max_shard_size)
    api, repo_id = check_hub_target(repo_id, token=token, overwrite=overwrite)
    with dataset_folder(result, repo_id, max_shard_size) as folder:
        url = api.create_repo(repo_id, repo_type=REPO_TYPE, private=private, exist_ok=overwrite)
        api.upload_folder(
            repo_id=repo_id,
            repo_type=REPO_TYPE,
            folder_path=folder,
            commit_message=commit_message or "Upload dataset pruned with svp_hf",
            delete_patterns=["*"] if overwrite else None,
        )
    return str(url)


__all__ = [
    "push_to_hub",
    "check_hub_target",
    "check_repo_id",
    "dataset_folder",
    "names_on_hub",
    "offline_if_unreachable",
    "unreachable_hub_reason",
    "known_tokens",
]
