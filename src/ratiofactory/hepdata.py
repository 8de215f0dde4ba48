"""HEPData submissions: the likelihood bundle as an additional resource, results as tables.

A submission directory holds ``submission.yaml`` (one YAML document for the record, then
one per table), one data file per table and the bundle that :func:`ratiofactory.publish.pack`
writes, named in the record's ``additional_resources`` with its sha256. Tables come from the
JSON that the analysis commands write with ``-o`` (``fit``, ``scan``, ``cls``,
``upper-limit``, ``significance``, ``impacts``), recognised by their keys, or from a fit and
a profile scan computed here when no result is given.

The format is HEPData's submission format (schemas 1.1.1 of ``hepdata-validator``, which
:func:`validate_submission` runs when it is installed: ``pip install ratiofactory[hepdata]``).

>>> scan = {"poi": "mu", "poi_values": [0.0, 1.0, 2.0], "tmu": [1.2, 0.0, 0.9],
...         "bestfit_poi": 1.05, "twice_nll_min": -3.5}
>>> table = result_table(scan)
>>> table.name, table.data["independent_variables"][0]["header"]["name"]
('Profile likelihood scan of mu', 'mu')
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import InvalidFile, RatiofactoryError

__all__ = ["SUBMISSION", "HepDataTable", "result_table", "validate_submission",
           "verify_submission", "write_submission"]

SUBMISSION = "submission.yaml"
#: labels of the expected bands, in the order of :data:`ratiofactory.infer.BANDS`
BAND_LABELS = ("expected -2 sigma", "expected -1 sigma", "expected median",
               "expected +1 sigma", "expected +2 sigma")
RESOURCE_PREFIX = "ratiofactory likelihood bundle"


@dataclass(frozen=True)
class HepDataTable:
    """One HEPData table: its ``name`` (≤ 64 characters), ``description``, ``data`` (the
    data file's content: independent and dependent variables) and the file it goes to."""

    name: str
    description: str
    data: dict[str, Any]
    data_file: str


#: HEPData's value of a missing entry (a string value, as hepdata_lib writes one)
MISSING = "-"


def _number(value: Any) -> float | None:
    """``value`` as a finite float, None where the result holds none (JSON null, NaN)."""
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _entry(value: Any) -> str | float:
    if isinstance(value, str):
        return value
    number = _number(value)
    return MISSING if number is None else number


def _values(values: Iterable[Any]) -> list[dict[str, Any]]:
    """HEPData value entries; null/NaN (a root finder's untested point, a fit's error on a
    bound) become the missing value ``"-"``."""
    return [{"value": _entry(v)} for v in values]


def _variable(name: str, values: Iterable[Any], errors: Iterable[list[dict[str, Any]]] | None = None,
              qualifiers: Mapping[str, Any] | None = None) -> dict[str, Any]:
    entries = _values(values)
    if errors is not None:
        for entry, errs in zip(entries, errors, strict=True):
            if errs:
                entry["errors"] = errs
    variable: dict[str, Any] = {"header": {"name": name}, "values": entries}
    if qualifiers:
        variable["qualifiers"] = [{"name": k, "value": _entry(v)} for k, v in qualifiers.items()]
    return variable


def _table(name: str, description: str, data_file: str, independent: dict[str, Any],
           *dependent: dict[str, Any]) -> HepDataTable:
    return HepDataTable(name[:64], description, {"independent_variables": [independent],
                                                 "dependent_variables": list(dependent)}, data_file)


def _fit_table(result: Mapping[str, Any]) -> HepDataTable:
    names, values, errors = result["parameters"], result["values"], result.get("errors")
    minos, fixed = result.get("minos") or {}, result.get("fixed") or [False] * len(names)
    errs = []
    for i, name in enumerate(names):
        row = []
        hesse = None if errors is None or fixed[i] else _number(errors[i])  # None on a bound
        if hesse is not None:
            row.append({"symerror": hesse, "label": "Hesse"})
        lo, hi = (_number(v) for v in minos.get(name, (None, None)))
        if lo is not None and hi is not None:
            row.append({"asymerror": {"minus": lo, "plus": hi}, "label": "MINOS"})
        errs.append(row)
    poi = result.get("poi")
    on_bound = result.get("at_bound") or {}
    description = (f"Maximum-likelihood estimates of the parameters{f' (POI {poi})' if poi else ''};"
                   f" -2 ln L at the minimum = {float(result['twice_nll']):.10g}.")
    if on_bound:
        description += (" On a bound (no Hesse error: not a parabolic minimum): "
                        + ", ".join(f"{n} ({side})" for n, side in on_bound.items()) + ".")
    return _table("Best-fit parameters", description, "bestfit.yaml",
                  _variable("Parameter", names), _variable("Best-fit value", values, errs))


def _scan_table(result: Mapping[str, Any]) -> HepDataTable:
    poi = result["poi"]
    description = (f"Profile-likelihood scan: t_mu = -2 ln[L({poi}, profiled) / L(best fit)];"
                   f" best fit {poi} = {float(result['bestfit_poi']):.6g}.")
    for interval in result.get("intervals", []):
        opens = interval.get("open_ends") or [[False, False]] * len(interval["intervals"])
        pieces = ", ".join(f"[{'< ' if a else ''}{lo:.6g}, {'> ' if b else ''}{hi:.6g}]"
                           for (lo, hi), (a, b) in zip(interval["intervals"], opens, strict=True))
        if any(a or b for a, b in opens):
            pieces += " (open: the interval goes on beyond the scan)"
        description += f" {100 * interval['cl']:.2f} % CL interval (t_mu < {interval['threshold']:.4g}): {pieces}."
    return _table(f"Profile likelihood scan of {poi}", description, f"scan_{poi}.yaml",
                  _variable(poi, result["poi_values"]), _variable("t_mu", result["tmu"]))


def _limit_table(result: Mapping[str, Any]) -> HepDataTable:
    poi, level = result["poi"], float(result["level"])
    description = (f"Upper limits on {poi} at CLs = {level:g} ({100 * (1 - level):g} % CL),"
                   f" test statistic {result['test_stat']}, {result['method']}.")
    return _table(f"Upper limits on {poi}", description, f"upper_limit_{poi}.yaml",
                  _variable("Limit", ["observed", *BAND_LABELS]),
                  _variable(f"{poi} upper limit", _limits(result), qualifiers={"CL": 1 - level}))


def _limits(result: Mapping[str, Any]) -> list[Any]:
    """Observed and expected limits; one beyond the search range as ``"> hi"``/``"< lo"``
    (``outside_range``), another null as the missing value."""
    limits: list[Any] = [result["observed"], *result["expected"]]
    outside = result.get("outside_range") or [None] * len(limits)
    lo, hi = (result.get("search_range") or (None, None))[:2]
    for k, where in enumerate(outside):
        end = _number(hi if where == "above" else lo)
        if where in ("above", "below") and end is not None:
            limits[k] = f"{'>' if where == 'above' else '<'} {end:g}"
    return limits


def _cls_curve_table(result: Mapping[str, Any]) -> HepDataTable:
    poi = result["poi"]
    expected = list(zip(*result["cls_expected"], strict=True))  # (n_mu, 5) -> 5 columns
    return _table(f"CLs versus {poi}", f"Observed and expected CLs at each tested {poi} value.",
                  f"cls_{poi}.yaml", _variable(poi, result["poi_values"]),
                  _variable("CLs observed", result["cls_observed"]),
                  *(_variable(f"CLs {label}", column) for label, column in zip(BAND_LABELS, expected, strict=True)))


def _hypotest_table(result: Mapping[str, Any]) -> HepDataTable:
    poi, value = result["poi"], float(result["poi_value"])
    rows = ["observed", *BAND_LABELS]
    return _table(f"CLs at {poi} = {value:g}", f"Asymptotic hypothesis test of {poi} = {value:g}"
                  f" ({result['test_stat']}).", f"cls_{poi}_{value:g}.yaml", _variable("Result", rows),
                  _variable("CLs", [result["cls"], *result["expected_cls"]]),
                  _variable("CLs+b", [result["clsb"], *result["expected_clsb"]]),
                  _variable("CLb", [result["clb"], *result["expected_clb"]]))


def _significance_table(result: Mapping[str, Any]) -> HepDataTable:
    poi = result["poi"]
    return _table("Discovery significance", f"Discovery test q0 ({poi} = 0 rejected); expected at"
                  f" {poi} = {float(result['poi_alt']):g}.", "significance.yaml",
                  _variable("Result", ["observed", "expected"]),
                  _variable("p0", [result["pvalue"], result["expected_pvalue"]]),
                  _variable("Z", [result["significance"], result["expected_significance"]]))


def _impacts_table(result: Mapping[str, Any]) -> HepDataTable:
    rows = result["rows"]
    columns = [("pull", "Pull"), ("constraint", "Constraint"), ("hessian", "Hessian impact"),
               ("prefit_up", "Pre-fit impact up"), ("prefit_down", "Pre-fit impact down"),
               ("postfit_up", "Post-fit impact up"), ("postfit_down", "Post-fit impact down")]
    dependent = [_variable(title, [r.get(key) for r in rows]) for key, title in columns]
    error = _number(result["poi_error"])
    shown = f" ± {error:.3g}" if error is not None else " (on its bound: no Hesse error)"
    return _table(f"Impacts on {result['poi']}", f"Pulls, constraints and impacts on {result['poi']}"
                  f" = {float(result['poi_value']):.6g}{shown}, ranked.",
                  f"impacts_{result['poi']}.yaml", _variable("Parameter", [r["name"] for r in rows]),
                  *dependent)


#: (keys that identify a result kind, its table makers), first match wins
_KINDS: tuple[tuple[frozenset[str], tuple[Callable[[Mapping[str, Any]], HepDataTable], ...]], ...] = (
    (frozenset({"parameters", "values", "twice_nll"}), (_fit_table,)),
    (frozenset({"poi_values", "tmu", "bestfit_poi"}), (_scan_table,)),
    (frozenset({"observed", "expected", "cls_observed"}), (_limit_table, _cls_curve_table)),
    (frozenset({"cls", "clsb", "clb", "expected_cls"}), (_hypotest_table,)),
    (frozenset({"q0", "pvalue", "significance"}), (_significance_table,)),
    (frozenset({"rows", "poi_value", "poi_error"}), (_impacts_table,)),
)


def result_tables(result: Mapping[str, Any], *, source: str = "result") -> list[HepDataTable]:
    """The HEPData tables of one result JSON (what ``fit -o``, ``scan -o``, ... write)."""
    for keys, makers in _KINDS:
        if keys <= result.keys():
            try:
                return [make(result) for make in makers]
            except (KeyError, TypeError, ValueError) as err:
                raise InvalidFile(f"{source}: not a complete ratiofactory result ({err})") from None
    raise InvalidFile(f"{source}: not a ratiofactory result JSON (fit, scan, cls, upper-limit,"
                      " significance or impacts output)")


def result_table(result: Mapping[str, Any]) -> HepDataTable:
    """The main HEPData table of one result JSON."""
    return result_tables(result)[0]


def _computed_results(workspace_path: Path, measurement: str | None) -> list[dict[str, Any]]:
    """A fit (MINOS on the POI) and a profile scan over μ̂ ± 3σ within the bounds."""
    import numpy as np

    from . import infer
    from .workspace import Workspace

    ws = Workspace.load(workspace_path)
    model = ws.model(measurement)
    data = ws.data(model)
    poi, poi_index = model.config.poi_name, model.config.poi_index
    if not poi or poi_index is None:
        raise RatiofactoryError(f"{workspace_path}: the measurement has no POI; give result files")
    best = infer.fit(model, data, minos=[poi])
    lo, hi = model.config.suggested_bounds()[poi_index]
    width = 3 * max(best.poi_error, 1e-3)
    grid = np.linspace(max(lo, best.poi_value - width), min(hi, best.poi_value + width), 21)
    scan = infer.profile_scan(model, data, grid)
    payload = scan.to_dict()
    payload["intervals"] = [infer.interval(scan, cl).to_dict() for cl in (infer.CL_1SIGMA, infer.CL_2SIGMA)]
    return [best.to_dict(), payload]


def _yaml() -> Any:
    try:
        import yaml
    except ImportError:  # pragma: no cover (pyyaml comes with the hepdata extra)
        raise RatiofactoryError("HEPData output needs PyYAML: pip install 'ratiofactory[hepdata]'") from None
    return yaml


def _resource_description(bundle: str, digest: str) -> str:
    return (f"{RESOURCE_PREFIX} (workspace JSON, ONNX ratio models, event files, MANIFEST.json);"
            f" sha256: {digest}; check with `ratiofactory verify {bundle}`, re-run with"
            f" `ratiofactory unpack {bundle} DIR` and `ratiofactory fit DIR/<workspace>.json`.")


def write_submission(workspace_path: str | os.PathLike[str], directory: str | os.PathLike[str],
                     results: Sequence[Mapping[str, Any]] = (), *, measurement: str | None = None,
                     comment: str = "") -> dict[str, Any]:
    """Write a HEPData submission of ``workspace_path`` into the new or empty ``directory``.

    ``results`` are result JSONs (dicts) of the analysis commands; without any, a fit and a
    profile scan of the measurement's POI are computed. Returns a summary: the directory,
    the bundle's name and sha256, the table names, and whether ``hepdata-validator`` ran.
    """
    from . import publish
    from .files import sha256_file

    target = Path(directory)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise InvalidFile(f"{target}: the HEPData directory must be new or empty")
    results = list(results) or _computed_results(Path(workspace_path), measurement)
    tables = [t for i, r in enumerate(results) for t in result_tables(r, source=f"result {i + 1}")]
    _unique_files(tables)
    yaml = _yaml()
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:  # written aside, moved into place at the end: never a half-written submission
        bundle = Path(workspace_path).stem + ".tar.gz"
        publish.pack(workspace_path, staging / bundle)
        digest = sha256_file(staging / bundle)
        record = {"comment": comment or f"Likelihood of {Path(workspace_path).name}, published with ratiofactory.",
                  "additional_resources": [{"location": bundle,
                                            "description": _resource_description(bundle, digest)}]}
        documents = [record] + [{"name": t.name, "description": t.description, "keywords": [],
                                 "data_file": t.data_file} for t in tables]
        for t in tables:
            (staging / t.data_file).write_text(yaml.safe_dump(t.data, sort_keys=False), encoding="utf-8")
        (staging / SUBMISSION).write_text(yaml.safe_dump_all(documents, sort_keys=False, explicit_start=True),
                                          encoding="utf-8")
        validated = validate_submission(staging)
        if target.exists():
            target.rmdir()
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return {"directory": str(target), "bundle": bundle, "sha256": digest,
            "tables": [t.name for t in tables], "validated": validated}


def _unique_files(tables: list[HepDataTable]) -> None:
    seen: dict[str, HepDataTable] = {}
    for t in tables:
        if t.data_file in seen:
            raise InvalidFile(f"two results give the table file {t.data_file!r} ({seen[t.data_file].name!r}"
                              f" and {t.name!r}); give each result once")
        seen[t.data_file] = t


def validate_submission(directory: str | os.PathLike[str]) -> bool:
    """Run ``hepdata-validator`` on a submission directory; False when it is not installed.

    Raises :class:`~ratiofactory.errors.InvalidFile` with the validator's messages when the
    submission is not valid.
    """
    with warnings.catch_warnings():  # hepdata-validator 0.3 uses jsonschema's deprecated
        warnings.simplefilter("ignore", DeprecationWarning)  # RefResolver and leaves files
        warnings.simplefilter("ignore", ResourceWarning)  # open for the garbage collector
        try:
            from hepdata_validator.full_submission_validator import FullSubmissionValidator
        except ImportError:
            return False
        validator = FullSubmissionValidator()
        if validator.validate(directory=str(directory)):
            return True
    messages = [f"{Path(name).name}: {m.message}" for name, ms in validator.get_messages().items() for m in ms]
    raise InvalidFile(f"{directory}: not a valid HEPData submission: " + "; ".join(messages[:5]))


def _bundles(directory: Path) -> list[tuple[str, str]]:
    """(location, recorded sha256) of every ratiofactory bundle the submission lists."""
    from .files import read_text

    yaml = _yaml()
    text = read_text(directory / SUBMISSION, "the submission")  # size limit, UTF-8 checked
    try:
        documents = list(yaml.safe_load_all(text))
    except yaml.YAMLError as err:
        raise InvalidFile(f"{directory / SUBMISSION}: cannot read ({err})") from None
    found = []
    for doc in documents:
        resources = doc.get("additional_resources", []) if isinstance(doc, dict) else []
        for index, res in enumerate(resources if isinstance(resources, list) else [resources]):
            if not isinstance(res, dict):
                raise InvalidFile(f"{directory / SUBMISSION}: additional_resources[{index}] is not a mapping")
            text = str(res.get("description", ""))
            if text.startswith(RESOURCE_PREFIX) and "sha256: " in text:
                found.append((str(res.get("location", "")), text.split("sha256: ", 1)[1][:64]))
    return found


def verify_submission(directory: str | os.PathLike[str]) -> dict[str, Any]:
    """Verify an unpacked HEPData submission: its format (when ``hepdata-validator`` is
    installed) and each ratiofactory bundle it lists, against the sha256 in the resource's
    description and with :func:`ratiofactory.publish.verify`."""
    from . import publish
    from .files import resolve_path, sha256_file

    path = Path(directory)
    bundles = _bundles(path)
    if not bundles:
        raise InvalidFile(f"{path / SUBMISSION}: lists no ratiofactory bundle among its additional resources")
    verified = []
    for location, recorded in bundles:
        bundle = resolve_path(path, location, pointer=f"{SUBMISSION} additional_resources")
        actual = sha256_file(bundle)
        if actual != recorded:
            raise InvalidFile(f"{bundle}: sha256 {actual} differs from the {recorded} recorded in {SUBMISSION}")
        verified.append(publish.verify(bundle))
    return {"submission": str(path), "validated": validate_submission(path), "bundles": verified}
