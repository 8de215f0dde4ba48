"""The model configuration: parameter order, slices, inits, bounds, constraints.

It has the public interface of ``pyhf.Model.config`` so that code written for pyhf
(including ``pyhf.infer``) works with ratiofactory models. For a workspace with binned
channels the parameters of pyhf's binned model come first, in pyhf's order, followed by
the parameters that only unbinned channels use, in order of first appearance.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from typing import Any

import pyhf

from .errors import InvalidModel

__all__ = ["ModelConfig"]


class ModelConfig:
    """Parameters and data layout of a :class:`~ratiofactory.model.Model`."""

    def __init__(
        self,
        paramsets: Mapping[str, pyhf.parameters.paramset],
        *,
        poi_name: str | None,
        binned_channels: Sequence[str],
        binned_nbins: Mapping[str, int],
        unbinned_channels: Sequence[str],
        unbinned_nevents: Mapping[str, int],
        binned_auxdata_order: Sequence[str] = (),
    ) -> None:
        self.par_order: list[str] = list(paramsets)
        self.par_map: dict[str, dict[str, Any]] = {}
        start = 0
        for name, paramset in paramsets.items():
            stop = start + paramset.n_parameters
            self.par_map[name] = {"slice": slice(start, stop), "paramset": paramset}
            start = stop
        self.npars = start
        self.parameters = sorted(self.par_map)
        # pyhf's auxdata first, in pyhf's order, then the unbinned-only constrained parameters
        unbinned_aux = [
            n for n in self.par_order if self.param_set(n).constrained and n not in binned_auxdata_order
        ]
        self.auxdata_order = [*binned_auxdata_order, *unbinned_aux]
        self.auxdata = [a for n in self.auxdata_order for a in self.param_set(n).auxdata]
        self.binned_channels = list(binned_channels)
        self.channel_nbins = dict(binned_nbins)
        self.unbinned_channels = list(unbinned_channels)
        self.channel_nevents = dict(unbinned_nevents)
        self.channels = [*self.binned_channels, *self.unbinned_channels]
        self.nmaindata = sum(self.channel_nbins.values()) + sum(self.channel_nevents.values())
        self.nauxdata = len(self.auxdata)
        self._poi_name: str | None = None
        self._poi_index: int | None = None
        self.set_poi(poi_name)

    @property
    def poi_name(self) -> str | None:
        """Name of the parameter of interest (None for a model without one)."""
        return self._poi_name

    @property
    def poi_index(self) -> int | None:
        """Index of the parameter of interest in the parameter vector."""
        return self._poi_index

    def set_poi(self, name: str | None) -> None:
        """Make ``name`` the parameter of interest (None unsets it)."""
        if name is None:
            self._poi_name, self._poi_index = None, None
            return
        if name not in self.par_map:
            close = difflib.get_close_matches(name, self.par_order, n=3)
            hint = f"did you mean {' or '.join(map(repr, close))}? " if close else ""
            raise InvalidModel(
                f"the parameter of interest '{name}' is not a parameter of the model: no modifier uses it "
                f"({hint}a background-only workspace needs a signal patch first, e.g. -p on the command line); "
                f"parameters: {', '.join(self.par_order)}"
            )
        if self.param_set(name).n_parameters != 1:
            raise InvalidModel(f"the parameter of interest '{name}' must be a single number")
        self._poi_name, self._poi_index = name, self.par_slice(name).start

    def par_slice(self, name: str) -> slice:
        """Slice of the parameter vector holding parameter ``name``."""
        return self.par_map[name]["slice"]

    def param_set(self, name: str) -> pyhf.parameters.paramset:
        """The pyhf paramset object of parameter ``name``."""
        return self.par_map[name]["paramset"]

    @property
    def par_names(self) -> list[str]:
        """Parameter names, vector parameters expanded as ``name[i]`` like pyhf's."""
        names = []
        for name in self.par_order:
            paramset = self.param_set(name)
            if paramset.is_scalar:
                names.append(name)
            else:
                names.extend(f"{name}[{i}]" for i in range(paramset.n_parameters))
        return names

    def suggested_init(self) -> list[float]:
        """Initial values of all parameters."""
        return [v for n in self.par_order for v in self.param_set(n).suggested_init]

    def suggested_bounds(self) -> list[tuple[float, float]]:
        """Bounds of all parameters."""
        return [tuple(b) for n in self.par_order for b in self.param_set(n).suggested_bounds]

    def suggested_fixed(self) -> list[bool]:
        """Whether each parameter is fixed by default."""
        return [f for n in self.par_order for f in self.param_set(n).suggested_fixed]

    def __repr__(self) -> str:
        return (
            f"ModelConfig(npars={self.npars}, poi={self.poi_name!r}, "
            f"channels={self.channels}, nauxdata={self.nauxdata})"
        )
