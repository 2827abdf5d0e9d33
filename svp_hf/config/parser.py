"""Recipes in and out: flat YAML files parsed into the dataclasses with transformers' ``HfArgumentParser``
(``python -m svp_hf.coreset RECIPE.yaml --key value ...``: the recipe's keys become defaults, command-line flags win),
the command line's own checks, the resolved recipe a run saves, and the redaction of secrets."""

from __future__ import annotations

import argparse
import json
import os
import re
import typing
from dataclasses import fields
from typing import Any, Dict, List, Optional, Sequence, Tuple

import yaml
from transformers import HfArgumentParser

from ..errors import SVPConfigError
from .arguments import SECRET_KEYS, ActiveArguments, DataArguments, RunArguments, SelectionArguments
from .coercion import _SPLIT, _split_items
from .recipe_files import bundled_recipes, resolve_recipe

RECIPE_DATACLASSES = (DataArguments, SelectionArguments, RunArguments)


ACTIVE_DATACLASSES = (DataArguments, SelectionArguments, RunArguments, ActiveArguments)


def recipe_keys(dataclass_types: Sequence[type] = RECIPE_DATACLASSES) -> List[str]:
    return [f.name for dc in dataclass_types for f in fields(dc)]


def read_recipe(path: str, keys: Optional[Sequence[str]] = None, *, job: str = "this job") -> Dict[str, Any]:
    """A recipe file's keys and values, checked against `keys` (default: every key of every job); a bundled recipe's
    name (``quickstart``, ``recipes/quickstart.yaml``) not found on disk reads the copy shipped with svp_hf
    (:mod:`svp_hf.config.recipe_files`)."""
    path = resolve_recipe(path)
    if not os.path.isfile(path):
        raise SVPConfigError(f"recipe {path!r} not found (recipes shipped with svp_hf: {', '.join(bundled_recipes())})")
    with open(path, "rb") as f:
        raw = f.read()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise SVPConfigError(
            f"recipe {path!r} is not UTF-8 text (byte {raw[err.start]:#04x} on line {line}): save it as UTF-8"
        ) from None
    try:
        recipe = yaml.safe_load(text) if not path.endswith(".json") else json.loads(text)
    except (yaml.YAMLError, json.JSONDecodeError) as err:
        raise SVPConfigError(f"recipe {path!r} is not valid YAML: {err}") from None
    if recipe is None:
        recipe = {}
    if not isinstance(recipe, dict):
        raise SVPConfigError(f"recipe {path!r} must be a mapping of keys to values, got {type(recipe).__name__}")
    known = set(keys if keys is not None else recipe_keys(ACTIVE_DATACLASSES))
    unknown = sorted(set(map(str, recipe)) - known)
    if unknown:
        raise SVPConfigError(f"unknown recipe key(s) {unknown} in {path!r} for {job}; its keys: {sorted(known)}")
    return recipe


def _flag_names(argv: Sequence[str]) -> List[str]:
    """The keys named by ``--flag`` / ``--flag=value`` tokens, dashes read as underscores (as HfArgumentParser does)."""
    return [a[2:].split("=", 1)[0].replace("-", "_") for a in argv if a.startswith("--") and len(a) > 2]


def _nullable(kind):
    """`kind` (int or float) that also reads ``none``/``null`` as ``None`` (the dataclass then checks whether the key
    may be null)."""

    def parse(text: str):
        return None if str(text).strip().lower() in ("none", "null") else kind(text)

    parse.__name__ = kind.__name__  # argparse names the type in its errors
    return parse


class RecipeParser(HfArgumentParser):
    """``HfArgumentParser`` for ``[RECIPE.yaml] [--key value ...]``: exact key names only (no abbreviations, which
    would let a mistyped ``--hub_tok SECRET`` through), and a usage line that shows the recipe."""

    def __init__(
        self,
        dataclass_types,
        prog: Optional[str] = None,
        description: Optional[str] = None,
        keys: Optional[Sequence[str]] = None,
    ):
        super().__init__(
            list(dataclass_types),
            prog=prog,
            usage=f"{prog or 'python -m svp_hf.JOB'} [RECIPE.yaml] [--key value ...]",
            description=description,
            allow_abbrev=False,
        )
        self.add_argument(
            "recipe",
            nargs="?",
            metavar="RECIPE.yaml",
            help="A YAML recipe whose keys are the flags below (recipes/*.yaml); flags given after it override it.",
        )
        for action in self._actions:  # `--key none` (or null) on the command line is YAML's null, as in a recipe
            if action.type in (int, float):
                action.type = _nullable(action.type)
        if keys is not None:  # --help lists the keys the job reads, and only those
            for action in self._actions:
                if action.dest not in keys and action.dest not in ("help", "recipe"):
                    action.help = argparse.SUPPRESS

    def error(self, message: str):
        """A bad flag or value is an :class:`SVPConfigError` like any other bad input (the jobs exit 2)."""
        raise SVPConfigError(message)


def parse_args(
    argv: Optional[Sequence[str]] = None,
    dataclass_types: Sequence[type] = RECIPE_DATACLASSES,
    *,
    keys: Optional[Sequence[str]] = None,
    prog: Optional[str] = None,
    job: str = "this job",
) -> Tuple[Any, ...]:
    """Parse ``[RECIPE.yaml] [--key value ...]`` into instances of `dataclass_types`; flags override the recipe.

    `keys` are the recipe keys the job reads (default: every field of `dataclass_types`); any other key, in the recipe
    or on the command line, is refused by name (its value is never echoed: it may be a secret)."""
    argv = list(argv or [])
    keys = list(keys if keys is not None else recipe_keys(dataclass_types))
    parser = RecipeParser(dataclass_types, prog=prog, keys=keys)
    recipe, recipe_path = {}, None
    if argv and not argv[0].startswith("-"):
        recipe_path = argv.pop(0)
        recipe = read_recipe(recipe_path, keys, job=job)
    check_single_dash(argv, keys, job)
    argv = split_list_flags(argv, list_separators(dataclass_types))
    flags = _flag_names(argv)
    unread = [f for f in flags if f not in keys and f not in ("help", "h")]
    if unread:
        raise SVPConfigError(f"unknown argument(s) {['--' + f for f in unread]} for {job}; its keys: {sorted(keys)}")
    parser.set_defaults(**recipe)
    *parsed, remaining = parser.parse_args_into_dataclasses(args=argv, return_remaining_strings=True)
    instances = parsed[: len(dataclass_types)]
    extra = parsed[len(dataclass_types)] if len(parsed) > len(dataclass_types) else None  # the `recipe` positional
    strays = [a for a in remaining if not a.startswith("-")]
    if extra is not None and getattr(extra, "recipe", None) is not None:
        strays.insert(
            0, extra.recipe
        )  # a value without a key that argparse took for the recipe: not the first argument
    if strays:
        raise stray_values_error(argv, strays, job, first="the recipe" if recipe_path else None)
    leftover = [a.split("=", 1)[0] for a in remaining if a.startswith("-")]
    if leftover:
        raise SVPConfigError(f"unknown argument(s) {leftover} for {job}; its keys: {sorted(keys)}")
    return tuple(instances)


def list_separators(dataclass_types: Sequence[type]) -> Dict[str, str]:
    """Each list-valued key of `dataclass_types` and the characters its items are split on (:data:`_SPLIT`); keys
    whose items are never split (``labels_from``: paths) are left out."""
    found = {}
    for dc in dataclass_types:
        hints = typing.get_type_hints(dc)
        for f in fields(dc):
            annotation = hints[f.name]
            if typing.get_origin(annotation) is typing.Union:
                annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
            if typing.get_origin(annotation) in (list, List) and _SPLIT.get(f.name, ", "):
                found[f.name] = _SPLIT.get(f.name, ", ")
    return found


def split_list_flags(argv: Sequence[str], separators: Dict[str, str]) -> List[str]:
    """`argv` with the values of list-valued flags split as the same text is in a recipe: ``--class_names a,b`` and
    ``--class_names=a,b`` read as ``--class_names a b`` (argparse would keep ``a,b`` as one item)."""
    out: List[str] = []
    splitting = None
    for token in argv:
        if token.startswith("--"):
            name, has_value, value = token[2:].partition("=")
            splitting = separators.get(name.replace("-", "_"))
            if splitting is not None and has_value:
                out.append(f"--{name}")
                out.extend(_split_items(value, splitting) or [value])
                splitting = None  # `--key=value` takes no further values
                continue
            out.append(token)
        elif splitting is not None:
            out.extend(_split_items(token, splitting) or [token])
        else:
            out.append(token)
    return out


_SINGLE_DASH = re.compile(r"^-[A-Za-z_]")


def _is_number(text: str) -> bool:
    try:
        float(text)  # a value such as -inf or -1e3, not a flag
    except ValueError:
        return False
    return True


def check_single_dash(argv: Sequence[str], keys: Sequence[str], job: str) -> None:
    """A clear error for a key written with one dash (``-hub_token X``): argparse would read it as ``-h`` followed by
    text, or take its value for a value without a key. The value after ``=`` is never echoed."""
    for token in argv:
        if _SINGLE_DASH.match(token) and token != "-h" and not _is_number(token):
            name = token[1:].split("=", 1)[0].replace("-", "_")
            fix = (
                f"write --{name}" if name in keys else f"and {name!r} is not a key of {job} (its keys: {sorted(keys)})"
            )
            raise SVPConfigError(f"unknown argument '-{name}': keys take two dashes; {fix}")


def stray_values_error(
    argv: Sequence[str], strays: Sequence[str], job: str, first: Optional[str] = None
) -> SVPConfigError:
    """The error for values without a key among the flags `argv` (`first`: what came before them, if anything): it
    says how many and where, never what they are (one may be a secret, e.g. the token of ``--hub_token= hf_...``,
    with a space after ``=``)."""
    where = ""
    position = next((i for i, a in enumerate(argv) if a == strays[0]), None)
    if position == 0 and first:
        where = f", the first right after {first}"
    elif position:
        before = argv[position - 1]
        if before.startswith("--"):
            before = before.split("=", 1)[0] + ("=" if "=" in before else "")
            where = f", the first right after {before!r}" + (" (no space after '=')" if before.endswith("=") else "")
        else:
            where = ", the first after another value"
    return SVPConfigError(
        f"{len(strays)} value(s) without a key on the command line of {job}{where}, not shown (a value may be a "
        "secret): only the first argument may be a recipe; every other value follows its key, as --key value or "
        "--key=value"
    )


def resolved_recipe(*instances, keys: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    """The recipe a run actually used (every key the job reads, defaults included), without secrets: saved with the
    output so that the run can be reproduced."""
    values = {}
    for instance in instances:
        values.update({f.name: getattr(instance, f.name) for f in fields(instance)})
    wanted = keys if keys is not None else list(values)
    return {k: values[k] for k in wanted if k in values and k not in SECRET_KEYS}


def redact(text: str, secrets: Sequence[Optional[str]]) -> str:
    """`text` with every occurrence of each secret replaced by ``***``."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def redact_values(obj: Any, secrets: Sequence[Optional[str]]) -> Any:
    """`obj` with every secret's value replaced by ``***`` in each string it holds (keys and values of mappings, items
    of lists and tuples, at any depth); anything else as it is."""
    if not any(secrets):
        return obj
    if isinstance(obj, str):
        return redact(obj, secrets)
    if isinstance(obj, dict):
        return {redact_values(k, secrets): redact_values(v, secrets) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        items = [redact_values(v, secrets) for v in obj]
        return type(obj)(*items) if hasattr(obj, "_fields") else type(obj)(items)  # a named tuple takes fields
    return obj
