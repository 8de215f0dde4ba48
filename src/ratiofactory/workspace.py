"""The workspace: a validated JSON specification plus the directory its files live in.

>>> import ratiofactory
>>> ws = ratiofactory.Workspace({
...     "version": "1.0.0",
...     "channels": [{"name": "SR", "samples": [
...         {"name": "signal", "data": [5.0], "modifiers": [{"name": "mu", "type": "normfactor", "data": None}]},
...         {"name": "background", "data": [50.0], "modifiers": []}]}],
...     "observations": [{"name": "SR", "data": [55.0]}],
...     "measurements": [{"name": "meas", "config": {"poi": "mu", "parameters": []}}]})
>>> model = ws.model()
>>> model.config.par_names
['mu']
>>> round(float(model.logpdf([1.0], ws.data(model))[0]), 6)
-2.92412
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pyhf

from . import consistency, jsontext, schema
from .binned_formulas import BinnedParameters, split_binned_formulas
from .compile import compile_unbinned_channel
from .config import ModelConfig
from .errors import InvalidModel, InvalidSpecification
from .files import file_references, open_file_ref, read_text, sha256_file
from .model import Model, array_namespace
from .parameterised import check_parameterised
from .parameters import (
    FormulaParameterWarning,
    binned_formula_requirements,
    binned_requirements,
    check_shared_parameters,
    formula_lookalikes,
    make_paramsets,
    unbinned_requirements,
)
from .ratio_cache import RatioCache

__all__ = ["Workspace", "file_references"]

_FROM_MEASUREMENT: Any = object()

_PYHF_ERRORS = tuple(
    error for error in vars(pyhf.exceptions).values()
    if isinstance(error, type) and issubclass(error, Exception)
)
"""Every exception class pyhf defines (pyhf 0.7 has no common base class)."""


def _first_line(err: BaseException) -> str:
    text = str(err).strip() or type(err).__name__
    return text.splitlines()[0]


#: interpolation codes pyhf's binned modifiers accept (pyhf asserts on others)
_INTERPCODES = {"normsys": ("code1", "code4"), "histosys": ("code0", "code2", "code4p")}


def _checked_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """``modifier_settings`` for pyhf, checked: pyhf fails with a bare AssertionError."""
    for kind, options in settings.items():
        if kind not in _INTERPCODES or not isinstance(options, Mapping) or set(options) - {"interpcode"}:
            raise InvalidModel(
                f"modifier_settings[{kind!r}] = {options!r}: expected {{'normsys': {{'interpcode': ...}}, "
                "'histosys': {'interpcode': ...}}"
            )
        code = options.get("interpcode")
        if code not in _INTERPCODES[kind]:
            raise InvalidModel(
                f"modifier_settings[{kind!r}]['interpcode'] = {code!r}: pyhf's {kind} accepts "
                f"{', '.join(_INTERPCODES[kind])}"
            )
    return {kind: dict(options) for kind, options in settings.items()}


def _check_configured_parameters(
    user_parameters: list[Mapping[str, Any]], paramsets: Mapping[str, Any], poi: str, pointer: str
) -> None:
    """Every parameter the measurement configures exists (its POI aside: a background-only
    workspace configures the POI its signal patch adds). A typo would drop the settings."""
    for index, entry in enumerate(user_parameters):
        if entry["name"] not in paramsets and entry["name"] != poi:
            raise InvalidModel(
                f"{pointer}/config/parameters/{index}/name: the measurement configures parameter "
                f"{entry['name']!r}, which no modifier uses, so its settings would be ignored; "
                f"the parameters are {', '.join(sorted(paramsets))}"
            )


class Workspace:
    """A ratiofactory (or pyhf) workspace.

    ``spec`` is deep-copied and never modified; file paths in it are relative to
    ``base_dir`` (the directory of the workspace file when loaded with :meth:`load`).

    >>> import pyhf
    >>> spec = {"version": "1.0.0", "channels": [{"name": "SR", "samples": [
    ...     {"name": "signal", "data": [5.0], "modifiers": [{"name": "mu", "type": "normfactor", "data": None}]},
    ...     {"name": "background", "data": [50.0], "modifiers": []}]}],
    ...     "observations": [{"name": "SR", "data": [62.0]}],
    ...     "measurements": [{"name": "meas", "config": {"poi": "mu", "parameters": []}}]}
    >>> ws = Workspace(spec)
    >>> ws.channels, ws.measurement_names
    (['SR'], ['meas'])
    >>> model = ws.model()
    >>> lnL = float(model.logpdf([1.0], ws.data(model))[0])
    >>> round(lnL, 6)
    -3.411524
    >>> import math
    >>> round(62 * math.log(55) - 55 - math.lgamma(63), 6)  # ln Pois(62 | 5 + 50)
    -3.411524
    >>> lnL == float(pyhf.Workspace(spec).model().logpdf([1.0], [62.0])[0])  # same as pyhf
    True
    """

    def __init__(self, spec: Mapping[str, Any], *, base_dir: str | Path | None = None, validate: bool = True):
        jsontext.check_depth(spec)  # before deepcopy, which recurses
        self._spec = copy.deepcopy(schema.plain_value(dict(spec)))  # numpy values as JSON's
        self.base_dir = Path(base_dir if base_dir is not None else ".").resolve()
        if validate:
            schema.validate(self._spec)
            consistency.check_consistency(self._spec)
        self._digest: str | None = None

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, validate: bool = True) -> Workspace:
        """Read a workspace JSON file; its directory becomes the base of relative paths."""
        path = Path(path)
        spec = jsontext.loads(read_text(path, "the workspace file"), str(path))
        if not isinstance(spec, dict):
            raise InvalidSpecification(f"a workspace is a JSON object, got {type(spec).__name__}", source=str(path))
        return cls(spec, base_dir=path.parent, validate=validate)

    @property
    def spec(self) -> dict[str, Any]:
        """A copy of the specification."""
        return copy.deepcopy(self._spec)

    @property
    def channels(self) -> list[str]:
        """Names of all channels, binned then unbinned."""
        return [c["name"] for c in self._spec.get("channels", [])] + [
            c["name"] for c in self._spec.get("unbinned_channels", [])
        ]

    @property
    def measurement_names(self) -> list[str]:
        return [m["name"] for m in self._spec["measurements"]]

    def _measurement(self, name: str | None) -> tuple[Mapping[str, Any], str]:
        measurements = self._spec["measurements"]
        if name is None:
            return measurements[0], "/measurements/0"
        for index, measurement in enumerate(measurements):
            if measurement["name"] == name:
                return measurement, f"/measurements/{index}"
        raise InvalidModel(
            f"no measurement named '{name}'; measurements: {', '.join(self.measurement_names)}"
        )

    def _observations(self) -> dict[str, tuple[Mapping[str, Any], str]]:
        return {o["name"]: (o, f"/observations/{i}") for i, o in enumerate(self._spec["observations"])}

    def model(
        self,
        measurement_name: str | None = None,
        *,
        poi_name: str | None = _FROM_MEASUREMENT,
        cache: bool | RatioCache = True,
        modifier_settings: Mapping[str, Any] | None = None,
    ) -> Model:
        """Compile the model of a measurement (the first one by default).

        ``poi_name`` overrides the measurement's POI (``None`` for no POI);
        ``cache=False`` evaluates every ONNX model afresh instead of using the on-disk
        cache; ``modifier_settings`` go to pyhf's binned model unchanged.
        """
        measurement, m_pointer = self._measurement(measurement_name)
        user_parameters = measurement["config"].get("parameters", [])
        poi = measurement["config"]["poi"] if poi_name is _FROM_MEASUREMENT else poi_name
        poi = None if poi == "" else poi  # pyhf's convention: "" is a measurement without a POI
        binned_specs = self._spec.get("channels", [])
        unbinned_specs = self._spec.get("unbinned_channels", [])

        binned_reqs = [binned_requirements(c, f"/channels/{i}") for i, c in enumerate(binned_specs)]
        unbinned_reqs = [binned_formula_requirements(c, f"/channels/{i}") for i, c in enumerate(binned_specs)]
        unbinned_reqs += [unbinned_requirements(c, f"/unbinned_channels/{i}") for i, c in enumerate(unbinned_specs)]
        unbinned_only = check_shared_parameters(binned_reqs, unbinned_reqs)
        for line in formula_lookalikes([*binned_reqs, *unbinned_reqs], user_parameters, poi):
            warnings.warn(line, FormulaParameterWarning, stacklevel=2)

        binned = None
        paramsets: dict[str, Any] = {}
        pyhf_channels, formulas = split_binned_formulas(binned_specs)
        if binned_specs:
            binned_names = {name for reqs in binned_reqs for name in reqs}
            kwargs = {} if modifier_settings is None else {"modifier_settings": _checked_settings(modifier_settings)}
            try:
                binned = pyhf.Model(
                    {"channels": pyhf_channels, "parameters": user_parameters},
                    poi_name=poi if poi in binned_names else None,
                    validate=False,
                    **kwargs,
                )
            except _PYHF_ERRORS as err:
                raise InvalidModel(
                    f"{m_pointer}: the binned channels do not form a pyhf model "
                    f"({type(err).__name__}: {_first_line(err)})"
                ) from None
            placeholders = {f.placeholder for f in formulas}
            paramsets.update(
                {n: binned.config.param_set(n) for n in binned.config.par_order if n not in placeholders}
            )
        paramsets.update(make_paramsets(unbinned_only, user_parameters))
        _check_configured_parameters(user_parameters, paramsets, measurement["config"]["poi"], m_pointer)

        if cache is True:
            ratio_cache = RatioCache()
        elif cache is False:
            ratio_cache = None
        else:
            ratio_cache = cache
        observations = self._observations()
        channels = []
        for index, spec in enumerate(unbinned_specs):
            observation, o_pointer = observations.get(spec["name"], (None, ""))
            channels.append(
                compile_unbinned_channel(
                    spec, f"/unbinned_channels/{index}", observation, o_pointer, self.base_dir, ratio_cache
                )
            )
        try:
            config = ModelConfig(
                paramsets,
                poi_name=poi,
                binned_channels=binned.config.channels if binned else [],
                binned_nbins=binned.config.channel_nbins if binned else {},
                unbinned_channels=[c.name for c in channels],
                unbinned_nevents={c.name: c.n_events for c in channels},
                binned_auxdata_order=binned.config.auxdata_order if binned else (),
            )
        except InvalidModel as err:
            raise InvalidModel(f"{m_pointer}/config/poi: {err}") from None
        _check_parameterised_ratios(channels, config)
        binned_parameters = None
        if binned is not None:
            binned_parameters = BinnedParameters(
                binned.config.par_order,
                {n: binned.config.par_slice(n) for n in binned.config.par_order},
                {n: config.par_slice(n) for n in config.par_order},
                formulas,
            )
        return Model(config=config, binned=binned, channels=channels, binned_parameters=binned_parameters)

    def data(self, model: Model, include_auxdata: bool = True) -> Any:
        """The observed data vector of ``model``: binned counts, per-event weights
        (1 for observed events, 0 for reference events) and auxdata."""
        xp = array_namespace()
        observations = self._observations()
        parts: list[Any] = []  # assembled in numpy: on jax one transfer, no compiled eager ops
        for name in model.config.binned_channels:
            parts.append(np.asarray(observations[name][0]["data"], dtype=np.float64))
        for channel in model.unbinned_channels:
            parts.append(np.asarray(channel.observed_weights, dtype=np.float64))
            parts.append(np.zeros(channel.n_reference))
        if include_auxdata:
            parts.append(np.asarray(model.config.auxdata, dtype=np.float64))
        return xp.asarray(np.concatenate(parts))

    # -- workspace algebra (ratiofactory.algebra on the specs; file paths stay valid) --

    @classmethod
    def combine(
        cls, left: Workspace, right: Workspace | Mapping[str, Any], join: str = "none", merge_channels: bool = False
    ) -> Workspace:
        """Combine two workspaces (``right`` may be a plain pyhf spec) in ``left``'s directory;
        see :func:`ratiofactory.algebra.combine` for the join modes."""
        from . import algebra

        right_spec, right_dir = (right.spec, right.base_dir) if isinstance(right, Workspace) else (right, None)
        spec = algebra.combine(
            left.spec, right_spec, join=join, merge_channels=merge_channels,
            left_base_dir=left.base_dir, right_base_dir=right_dir,
        )
        return cls(spec, base_dir=left.base_dir)

    def prune(self, **names: Any) -> Workspace:
        """A workspace without the named items (see :func:`ratiofactory.algebra.prune`)."""
        from . import algebra

        return Workspace(algebra.prune(self._spec, **names), base_dir=self.base_dir)

    def rename(self, **renames: Any) -> Workspace:
        """A workspace with items renamed (see :func:`ratiofactory.algebra.rename`)."""
        from . import algebra

        return Workspace(algebra.rename(self._spec, **renames), base_dir=self.base_dir)

    def sorted(self) -> Workspace:
        """A workspace with its lists in alphabetical order (see :func:`ratiofactory.algebra.sorted_spec`)."""
        from . import algebra

        return Workspace(algebra.sorted_spec(self._spec), base_dir=self.base_dir)

    def digest(self) -> str:
        """sha256 of the workspace: of its JSON serialised as ``pyhf digest`` does (sorted
        keys, UTF-8), continued, for each file it references in document order, with the
        reference's JSON pointer and the file's sha256 (hex). A pure pyhf workspace
        references no files, so its digest is ``pyhf digest``'s.

        >>> spec = {"version": "1.0.0", "channels": [{"name": "SR", "samples": [
        ...     {"name": "b", "data": [50.0], "modifiers": []}]}],
        ...     "observations": [{"name": "SR", "data": [55.0]}],
        ...     "measurements": [{"name": "m", "config": {"poi": "", "parameters": []}}]}
        >>> import pyhf
        >>> Workspace(spec).digest() == pyhf.utils.digest(pyhf.Workspace(spec))
        True
        """
        if self._digest is None:
            h = hashlib.sha256(json.dumps(self._spec, sort_keys=True, ensure_ascii=False).encode("utf-8"))
            for pointer, ref in file_references(self._spec):
                path = open_file_ref(self.base_dir, ref, pointer=pointer)
                h.update(pointer.encode())
                h.update(sha256_file(path).encode())
            self._digest = h.hexdigest()
        return self._digest

    def __repr__(self) -> str:
        return f"Workspace(channels={self.channels}, measurements={self.measurement_names})"


def _check_parameterised_ratios(channels: list[Any], config: ModelConfig) -> None:
    """Parameterised ratios r(x | θ) checked at the parameters' inits and finite bounds."""
    if not any(s.parameterised for c in channels for s in c.samples):
        return
    inits, bounds = config.suggested_init(), config.suggested_bounds()
    values = {}
    for name in config.par_order:
        i = config.par_slice(name).start
        values[name] = [inits[i], *(b for b in bounds[i] if np.isfinite(b) and b != inits[i])]
    check_parameterised(channels, values)
