"""The RooFit variables of a model's parameters and the constraints of the unbinned-only ones."""

from __future__ import annotations

from typing import Any

from .naming import roofit_names

__all__ = ["RooParameters"]


class RooParameters:
    """One RooRealVar per parameter component, named as HistFactory would name it, with
    the model's initial value, bounds and fixed flag; Gaussian constraints
    (``alpha_<name>Constraint`` as HistFactory names them, or ``<name>_constraint``, on the
    global observable ``nom_<name>``) for the constrained
    parameters that HistFactory does not constrain (the unbinned-only ones and the luminosity).

    Objects are created once and kept alive here until imported into a workspace.
    """

    def __init__(self, root: Any, model: Any, spec: Any, auxdata: Any) -> None:
        self.root, self.model = root, model
        self.names = roofit_names(model, spec)
        self._vars: dict[str, Any] = {}
        self._constraints: dict[str, Any] = {}
        self._globs: dict[str, Any] = {}
        self._keep: list[Any] = []
        self._aux = _aux_values(model, auxdata)
        self._init = model.config.suggested_init()
        self._bounds = model.config.suggested_bounds()
        self._fixed = model.config.suggested_fixed()

    def var(self, name: str, component: int = 0) -> Any:
        """The RooRealVar of component ``component`` of parameter ``name``."""
        roofit = self.names[name][component]
        if roofit not in self._vars:
            index = self.model.config.par_slice(name).start + component
            lo, hi = self._bounds[index]
            var = self.root.RooRealVar(roofit, name, self._init[index], lo, hi)
            var.setConstant(bool(self._fixed[index]))
            self._vars[roofit] = var
        return self._vars[roofit]

    def settings(self, name: str, component: int = 0) -> tuple[float, tuple[float, float], bool]:
        """(initial value, bounds, fixed) of a parameter component, as the model suggests."""
        index = self.model.config.par_slice(name).start + component
        return self._init[index], tuple(self._bounds[index]), bool(self._fixed[index])

    def constraint(self, name: str) -> Any | None:
        """The Gaussian constraint of scalar parameter ``name`` (None if unconstrained)."""
        paramset = self.model.config.param_set(name)
        if not paramset.constrained:
            return None
        roofit = self.names[name][0]
        if roofit not in self._constraints:
            R = self.root
            var = self.var(name)
            aux, sigma = self._aux[name], float(paramset.width()[0])
            # HistFactory's names for alpha_ parameters (shared ones then are one RooFit object);
            # other names avoid HistFactory's own lumiConstraint/nominalLumi
            pdf_name = f"{roofit}Constraint" if roofit.startswith("alpha_") else f"{roofit}_constraint"
            glob_name, sigma_name = f"nom_{roofit}", f"sigma_{roofit}"
            reach = 10 * sigma + abs(aux)
            glob = R.RooRealVar(glob_name, glob_name, aux, aux - reach, aux + reach)
            glob.setConstant(True)
            width = R.RooConstVar(sigma_name, sigma_name, sigma)
            self._constraints[roofit] = R.RooGaussian(pdf_name, pdf_name, glob, var, width)
            self._globs[roofit] = glob
            self._keep.append(width)
        return self._constraints[roofit]

    @property
    def global_observables(self) -> list[Any]:
        return list(self._globs.values())


def _aux_values(model: Any, auxdata: Any) -> dict[str, float]:
    """Auxiliary measurement of each scalar constrained parameter, from the data vector's auxdata."""
    values, position = {}, 0
    for name in model.config.auxdata_order:
        n = len(model.config.param_set(name).auxdata)
        if n == 1:
            values[name] = float(auxdata[position])
        position += n
    return values
