"""A tiny name -> object registry with a decorator, used for every pluggable piece of svp_hf.

Selection methods, model families and learning-rate schedules are all registered the same way, so adding one is a
decorated function in one place, never a new branch in an if/elif chain.
"""

from __future__ import annotations

from typing import Dict, Generic, Iterator, List, Optional, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to registered objects; unknown names raise a `KeyError` listing what is available."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: Dict[str, T] = {}

    def register(self, name: str, obj: Optional[T] = None):
        """Register `obj` under `name`; used bare it is a decorator: ``@registry.register("name")``."""

        def _add(item: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._items[name] = item
            return item

        return _add(obj) if obj is not None else _add

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise KeyError(f"Unknown {self.kind} {name!r}; available: {', '.join(sorted(self._items))}") from None

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._items))

    def names(self) -> List[str]:
        return sorted(self._items)

    def items(self):
        return sorted(self._items.items())


__all__ = ["Registry"]
