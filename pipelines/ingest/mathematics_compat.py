"""The one place that makes DeepMind's `mathematics-dataset` run on numpy 2 and sympy >= 1.7.

The package (last released 2019) breaks on current libraries in three ways, and is not
deterministic across processes in two more. Everything is patched here, at import, without
editing the installed package and without changing numpy or sympy for anyone else:

1. `sample/polynomials.py` imports `base_solution_linear` from `sympy.solvers.diophantine`,
   which moved to `sympy.solvers.diophantine.diophantine`: we re-export it before import.
2. It uses `np.object` (removed in numpy 1.24) and 3. `ndarray.itemset` (removed in numpy 2):
   the module gets a private numpy proxy whose `zeros`/`empty` return an ndarray subclass that
   still has `itemset`, and which maps `object` to the builtin.
4. `composition.Context.pop` picks a symbol with `random.choice(list(a_set_of_str))`: set order
   follows PYTHONHASHSEED, so the same seed gave different questions in different processes.
5. `composition.expand_entities` shuffles `list(set_of_entities)`: set order follows object
   ids. Both now sort before drawing, so a seed fixes the question in every process.
"""

from __future__ import annotations

import importlib
import random
import sys
import types

import numpy

_loaded: dict[str, object] | None = None


class _ArrayWithItemset(numpy.ndarray):
    """ndarray that keeps numpy 1's `itemset`, for the package's own arrays only."""

    def itemset(self, index, value):  # noqa: D401 - numpy 1 API
        self[index] = value


class _NumpyProxy(types.ModuleType):
    """numpy as the package expects it: `np.object` and arrays with `itemset`."""

    object = object

    def __getattr__(self, name):
        return getattr(numpy, name)

    @staticmethod
    def zeros(*args, **kwargs):
        return numpy.zeros(*args, **kwargs).view(_ArrayWithItemset)

    @staticmethod
    def empty(*args, **kwargs):
        return numpy.empty(*args, **kwargs).view(_ArrayWithItemset)


def _patch_sympy_import() -> None:
    importlib.import_module("sympy.solvers.diophantine")
    package = sys.modules["sympy.solvers.diophantine"]  # the attribute is shadowed by a function
    if not hasattr(package, "base_solution_linear"):
        from sympy.solvers.diophantine.diophantine import base_solution_linear

        package.base_solution_linear = base_solution_linear


def _patch_determinism(composition) -> None:
    def pop(self):
        allowed = (
            composition._ALLOWED_SYMBOLS.difference(self._relation_symbols)
            .difference(self._self_symbols)
            .difference(self._child_symbols)
        )
        if not allowed:
            raise ValueError("Ran out of symbols")
        symbol = random.choice(sorted(allowed))
        self._self_symbols.add(symbol)
        return symbol

    def expand_entities(context, **kwargs):
        # The original, except that the shuffle starts from a fixed order. The key reads the
        # private fields: the public `handle`/`description` properties mark the entity used.
        kwargs = kwargs.copy()
        entities = set(context.child_entities)
        for key, value in kwargs.items():
            if isinstance(value, composition.Entity):
                entities.add(value)
                kwargs[key] = value.handle
        entities = sorted(entities, key=_entity_order)
        random.shuffle(entities)
        descriptions = []
        for entity in entities:
            descriptions.append(entity.child_description)
            if not entity.expression_used:
                descriptions.append(entity.description)
        return " ".join(text for text in descriptions if text), kwargs

    composition.Context.pop = pop
    composition.expand_entities = expand_entities


def _entity_order(entity) -> tuple[str, str, str]:
    return (entity._description, entity._child_description, _handle_text(entity._handle))


def _handle_text(handle) -> str:
    functions = getattr(handle, "functions", None)  # CompositionHandle refuses str()
    return " ".join(map(str, functions)) if functions is not None else str(handle)


def load() -> dict[str, object]:
    """Import the package with every fix applied; returns its `modules` and `composition`."""
    global _loaded
    if _loaded is None:
        _patch_sympy_import()
        from mathematics_dataset.sample import polynomials

        polynomials.np = _NumpyProxy("numpy")
        from mathematics_dataset.modules import modules
        from mathematics_dataset.util import composition

        _patch_determinism(composition)
        _loaded = {"modules": modules, "composition": composition}
    return _loaded


def seed_everything(seed: int) -> None:
    """Seed every random source the package draws from (python, numpy and sympy's own)."""
    import sympy.core.random

    random.seed(seed)
    numpy.random.seed(seed % 2**32)
    sympy.core.random.seed(seed)
