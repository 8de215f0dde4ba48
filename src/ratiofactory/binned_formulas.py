"""Formula coefficients f(θ) on pyhf binned samples.

pyhf has no modifier whose factor is a function of parameters (pyhf issue #850), yet a
histogram channel of an interference analysis needs the same coefficients μ − √μ, √μ,
1 − √μ as the NSBI channel it is combined with. The binned likelihood stays pyhf's own
computation:

1. pyhf builds the binned channels with every ``formula`` modifier replaced by a
   *placeholder* ``normfactor`` with a hidden name (:data:`PLACEHOLDER_PREFIX` + the
   modifier's JSON pointer);
2. at every evaluation, :class:`BinnedParameters` builds pyhf's parameter vector from
   the model's: the model's parameters in their pyhf slots, and in each placeholder's
   slot the value of its formula at the model's parameters.

The placeholders are not parameters of the model: they are absent from ``par_order``,
fits, impacts and every output. A spec without binned formulas gives pyhf the model's
leading parameters unchanged (``pars[:n]``), so its results are pyhf's bit for bit.
On jax, gradients flow through the formula into the parameters it uses.

>>> channels = [{"name": "SR", "samples": [
...     {"name": "S", "data": [4.0], "modifiers": [
...         {"name": "f_S", "type": "formula", "data": {"expression": "mu - sqrt(mu)"}}]},
...     {"name": "B", "data": [50.0], "modifiers": []}]}]
>>> pyhf_channels, formulas = split_binned_formulas(channels)
>>> (channel,) = pyhf_channels
>>> signal, background = channel["samples"]
>>> (placeholder,) = signal["modifiers"]
>>> placeholder["name"], placeholder["type"]
('__formula__/channels/0/samples/0/modifiers/0', 'normfactor')
>>> str(formulas[0].expression), formulas[0].pointer
('mu - sqrt(mu)', '/channels/0/samples/0/modifiers/0')
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .expressions import Expression, parse_expression

__all__ = ["PLACEHOLDER_PREFIX", "BinnedFormula", "BinnedParameters", "split_binned_formulas"]

PLACEHOLDER_PREFIX = "__formula__"
"""Start of the hidden name of a formula's placeholder normfactor in pyhf's model."""


@dataclass(frozen=True)
class BinnedFormula:
    """One ``formula`` modifier of a binned sample and the name of its placeholder."""

    placeholder: str
    expression: Expression
    pointer: str


def split_binned_formulas(
    channels: Sequence[Mapping[str, Any]], pointer: str = "/channels"
) -> tuple[list[dict[str, Any]], list[BinnedFormula]]:
    """pyhf channel specs with each ``formula`` modifier replaced by a placeholder
    normfactor, and the formulas (``channels`` is not modified)."""
    out = copy.deepcopy([dict(c) for c in channels])
    formulas = []
    for c_idx, channel in enumerate(out):
        for s_idx, sample in enumerate(channel["samples"]):
            modifiers = sample.get("modifiers", [])
            for m_idx, modifier in enumerate(modifiers):
                if modifier["type"] != "formula":
                    continue
                where = f"{pointer}/{c_idx}/samples/{s_idx}/modifiers/{m_idx}"
                expression = parse_expression(
                    modifier["data"]["expression"], pointer=f"{where}/data/expression"
                )
                placeholder = PLACEHOLDER_PREFIX + where
                formulas.append(BinnedFormula(placeholder, expression, where))
                modifiers[m_idx] = {"name": placeholder, "type": "normfactor", "data": None}
    return out, formulas


class BinnedParameters:
    """Builds pyhf's parameter vector from the model's parameter vector.

    ``pyhf_par_order``/``pyhf_slices``: pyhf's parameter names and their slices;
    ``model_slices``: the model's slice of each non-placeholder name.
    """

    def __init__(
        self,
        pyhf_par_order: Sequence[str],
        pyhf_slices: Mapping[str, slice],
        model_slices: Mapping[str, slice],
        formulas: Sequence[BinnedFormula],
    ) -> None:
        self.formulas = tuple(formulas)
        self.npars = sum(s.stop - s.start for s in pyhf_slices.values())
        by_placeholder = {f.placeholder: f for f in self.formulas}
        self._plan: list[tuple[slice | None, BinnedFormula | None]] = []
        for name in pyhf_par_order:
            if name in by_placeholder:
                self._plan.append((None, by_placeholder[name]))
            elif self._plan and self._plan[-1][0] is not None and self._plan[-1][0].stop == model_slices[name].start:
                self._plan[-1] = (slice(self._plan[-1][0].start, model_slices[name].stop), None)
            else:
                self._plan.append((model_slices[name], None))
        self._index = {
            name: model_slices[name].start for f in self.formulas for name in f.expression.parameters
        }
        self.identity = not self.formulas and all(
            model_slices[n] == pyhf_slices[n] for n in pyhf_par_order
        )

    def __call__(self, pars: Any, xp: Any) -> Any:
        """pyhf's parameter vector (the formulas evaluated at ``pars``)."""
        if self.identity:
            return pars[: self.npars]
        values = {name: pars[index] for name, index in self._index.items()}
        pieces = []
        for part, formula in self._plan:
            if formula is None:
                pieces.append(pars[part])
            else:
                value = formula.expression.evaluate(values, xp)
                pieces.append(xp.reshape(xp.asarray(value, dtype=xp.float64), (1,)))
        return xp.concatenate(pieces)

    def values(self, pars: Any, xp: Any) -> dict[str, Any]:
        """Each formula's value at ``pars``, by its modifier's JSON pointer."""
        values = {name: pars[index] for name, index in self._index.items()}
        return {f.pointer: f.expression.evaluate(values, xp) for f in self.formulas}
