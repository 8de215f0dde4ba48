"""The workspace JSON schema 1.0.0: its files, the superset of pyhf, errors with pointers."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tarfile
import zipfile
from importlib import resources
from importlib.util import find_spec
from pathlib import Path

import jsonpatch
import jsonschema
import numpy as np
import pyhf
import pytest
import referencing

from ratiofactory import consistency, schema
from ratiofactory.errors import InvalidSpecification

REPO = Path(__file__).resolve().parents[1]
SBOTTOM = REPO.parent / "shared" / "data" / "pyhf-ins1748602-probability-models.tar.gz"
BASE_ID = "https://ratiofactory.readthedocs.io/schemas/1.0.0/"
SCHEMA_FILES = ("binned.json", "defs.json", "measurement.json", "unbinned.json", "workspace.json")
SHA = "0123456789abcdef" * 4

# pyhf 0.7.6's own validation (our reference here) uses jsonschema's deprecated RefResolver
pytestmark = pytest.mark.filterwarnings(
    "ignore:jsonschema.RefResolver is deprecated:DeprecationWarning"
)


def onnx_model(path: str, output: str = "ratio") -> dict:
    return {"onnx": {"path": path, "sha256": SHA}, "output": output}


def unbinned_workspace() -> dict:
    """A binned + unbinned workspace using every key of the schema."""
    return {
        "version": "1.0.0",
        "channels": [
            {
                "name": "CR",
                "samples": [
                    {
                        "name": "bkg",
                        "data": [50.0, 60.0],
                        "modifiers": [
                            {"name": "mu_bkg", "type": "normfactor", "data": None},
                            {"name": "bkg_stat", "type": "staterror", "data": [5.0, 6.0]},
                        ],
                    }
                ],
            }
        ],
        "unbinned_channels": [
            {
                "name": "SR_4l",
                "observables": [{"name": "m4l", "bounds": [220, 2000]}, {"name": "cos_theta"}],
                "reference": {
                    "events": {"path": "data/ref.npz", "sha256": SHA, "weight": "w", "tree": "t"}
                },
                "shape_normalisation": "reference",
                "samples": [
                    {
                        "name": "S",
                        "yield": 21.3,
                        "ratio": onnx_model("models/S.onnx", "probability"),
                        "modifiers": [
                            {
                                "name": "S_coefficient",
                                "type": "formula",
                                "data": {"expression": "mu - sqrt(mu)"},
                            },
                            {"name": "lumi", "type": "lumi", "data": None},
                            {
                                "name": "k_factor",
                                "type": "normsys",
                                "data": {"hi": 1.1, "lo": 0.92, "interpolation": "code4"},
                            },
                            {
                                "name": "k_factor",
                                "type": "ratiosys",
                                "data": {
                                    "hi": onnx_model("models/S_up.onnx", "log_ratio"),
                                    "lo": {"ensemble": [onnx_model("models/S_dn.onnx")]},
                                    "interpolation": "code1",
                                },
                            },
                        ],
                    },
                    {
                        "name": "B",
                        "yield": 0,
                        "ratio": {
                            "ensemble": [
                                onnx_model("models/B_0.onnx", "logit"),
                                onnx_model("models/B_1.onnx", "logit"),
                            ],
                            "aggregate": "mean",
                        },
                        "modifiers": [{"name": "mu_bkg", "type": "normfactor", "data": None}],
                    },
                ],
            }
        ],
        "observations": [
            {"name": "CR", "data": [52, 58]},
            {"name": "SR_4l", "events": {"path": "data/observed.npz"}},
        ],
        "measurements": [
            {
                "name": "meas",
                "config": {
                    "poi": "mu",
                    "parameters": [
                        {"name": "mu", "bounds": [[0.0, 5.0]]},
                        {"name": "lumi", "auxdata": [1.0], "sigmas": [0.02]},
                    ],
                },
            }
        ],
    }


def pyhf_workspace(model: pyhf.Model, observed: list[float]) -> dict:
    """A pyhf workspace dict around a pyhf model spec."""
    return {
        "version": "1.0.0",
        "channels": model.spec["channels"],
        "observations": [{"name": model.config.channels[0], "data": observed}],
        "measurements": [{"name": "meas", "config": {"poi": "mu", "parameters": []}}],
    }


def every_pyhf_modifier_workspace() -> dict:
    """A pyhf workspace with every pyhf modifier type."""
    modifiers = [
        {"name": "lumi", "type": "lumi", "data": None},
        {"name": "mu", "type": "normfactor", "data": None},
        {"name": "norm", "type": "normsys", "data": {"hi": 1.1, "lo": 0.9}},
        {"name": "shape", "type": "histosys", "data": {"hi_data": [6, 7], "lo_data": [4, 5]}},
        {"name": "free_shape", "type": "shapefactor", "data": None},
        {"name": "stat", "type": "staterror", "data": [0.5, 0.6]},
    ]
    return {
        "version": "1.0.0",
        "channels": [
            {
                "name": "SR",
                "samples": [
                    {"name": "sig", "data": [5.0, 6.0], "modifiers": modifiers},
                    {
                        "name": "bkg",
                        "data": [50.0, 52.0],
                        "modifiers": [{"name": "unc", "type": "shapesys", "data": [5.0, 6.0]}],
                    },
                ],
            }
        ],
        "observations": [{"name": "SR", "data": [55.0, 57.0]}],
        "measurements": [
            {
                "name": "meas",
                "config": {
                    "poi": "mu",
                    "parameters": [
                        {
                            "name": "lumi",
                            "auxdata": [1.0],
                            "sigmas": [0.02],
                            "inits": [1.0],
                            "bounds": [[0.5, 1.5]],
                        },
                        {"name": "mu", "inits": [1.0], "fixed": False},
                    ],
                },
            }
        ],
    }


# --- the schema files --------------------------------------------------------------------


def walk(node, path=()):
    """Every sub-schema (dict) of a schema with its path."""
    if isinstance(node, dict):
        yield path, node
        for key, value in node.items():
            yield from walk(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from walk(value, (*path, index))


@pytest.mark.parametrize("name", SCHEMA_FILES)
def test_schema_file_loads_via_importlib_resources_and_is_a_valid_schema(name):
    text = (resources.files("ratiofactory") / "schemas" / "1.0.0" / name).read_text("utf-8")
    on_disk = json.loads(text)
    assert schema.load_schema(name, version="1.0.0") == on_disk
    assert on_disk["$id"] == BASE_ID + name
    assert on_disk["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(on_disk)


def test_the_shipped_files_are_exactly_the_known_ones():
    directory = resources.files("ratiofactory") / "schemas" / "1.0.0"
    assert sorted(entry.name for entry in directory.iterdir()) == sorted(SCHEMA_FILES)
    assert schema.schema_versions() == ("1.0.0",)
    assert (REPO / "schemas" / "1.0.0" / "workspace.json").is_file()  # top-level symlink


def test_every_object_forbids_unknown_keys():
    objects = [
        (name, path)
        for name in SCHEMA_FILES
        for path, node in walk(schema.load_schema(name))
        if node.get("type") == "object"
    ]
    assert len(objects) >= 15
    for name, path in objects:
        node = schema.load_schema(name)
        for key in path:
            node = node[key]
        assert node.get("additionalProperties") is False, (name, path)


def test_every_ref_resolves_in_a_registry_of_ours_and_pyhfs_installed_schemas():
    pyhf_dir = resources.files("pyhf") / "schemas" / "1.0.0"
    contents = [schema.load_schema(name) for name in SCHEMA_FILES] + [
        json.loads(entry.read_text("utf-8"))
        for entry in pyhf_dir.iterdir()
        if entry.name.endswith(".json")
    ]
    registry = referencing.Registry().with_resources(
        (c["$id"], referencing.Resource.from_contents(c)) for c in contents
    )
    refs = [
        (name, node["$ref"])
        for name in SCHEMA_FILES
        for _, node in walk(schema.load_schema(name))
        if "$ref" in node
    ]
    assert any(ref.startswith("https://scikit-hep.org/pyhf/") for _, ref in refs)
    for name, ref in refs:
        resolved = registry.resolver(base_uri=BASE_ID + name).lookup(ref)
        assert isinstance(resolved.contents, dict), (name, ref)


def test_load_schema_returns_a_fresh_copy():
    first = schema.load_schema("defs.json")
    first["$defs"].clear()
    assert schema.load_schema("defs.json")["$defs"]["sha256"]["pattern"] == "^[0-9a-f]{64}$"


def test_load_schema_of_an_unknown_file_or_version():
    with pytest.raises(
        FileNotFoundError, match=re.escape("no schema 'model.json' in version 1.0.0")
    ):
        schema.load_schema("model.json")
    with pytest.raises(
        InvalidSpecification, match=re.escape("unknown workspace version '9.9.9'")
    ) as err:
        schema.load_schema(version="9.9.9")
    assert err.value.pointer == "/version"


def test_compiled_validator_is_cached():
    schema.validate(unbinned_workspace())
    assert schema._validator("1.0.0") is schema._validator("1.0.0")


VALIDATE_IN_SUBPROCESS = (
    "import json, ratiofactory, ratiofactory.schema as s; "
    "s.validate(json.loads({spec!r})); print(ratiofactory.__file__)"
)


def run_isolated(pythonpath: Path, cwd: Path) -> str:
    """Validate the example workspace in a fresh interpreter importing from ``pythonpath``."""
    code = VALIDATE_IN_SUBPROCESS.format(spec=json.dumps(unbinned_workspace()))
    env = {**os.environ, "PYTHONPATH": str(pythonpath)}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_schemas_load_from_a_zipped_package(tmp_path):
    """importlib.resources, not file-system paths: the package works from a zip archive."""
    archive = tmp_path / "ratiofactory.zip"
    package = REPO / "src" / "ratiofactory"
    with zipfile.ZipFile(archive, "w") as zipped:
        for file in package.rglob("*"):
            if file.is_file() and "__pycache__" not in file.parts:
                zipped.write(file, file.relative_to(package.parent).as_posix())
    location = run_isolated(archive, tmp_path)
    assert location.startswith(str(archive))


@pytest.mark.skipif(find_spec("hatchling") is None, reason="hatchling is needed to build a wheel")
def test_schemas_load_from_an_installed_wheel(tmp_path):
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    build = [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", tmp_path / "dist", REPO]
    subprocess.run(build, check=True, capture_output=True)
    (wheel,) = (tmp_path / "dist").glob("ratiofactory-*.whl")
    install = [*pip, "install", "--no-deps", "--no-compile", "--target", tmp_path / "site", wheel]
    subprocess.run(install, check=True, capture_output=True)
    location = run_isolated(tmp_path / "site", tmp_path)
    assert location == str(tmp_path / "site" / "ratiofactory" / "__init__.py")


# --- valid workspaces --------------------------------------------------------------------


SIMPLEMODELS = {
    "uncorrelated_background": lambda: pyhf.simplemodels.uncorrelated_background(
        [5.0, 6.0], [50.0, 52.0], [5.0, 6.0]
    ),
    "correlated_background": lambda: pyhf.simplemodels.correlated_background(
        [5.0], [50.0], [55.0], [45.0]
    ),
}


@pytest.mark.parametrize("make_model", SIMPLEMODELS.values(), ids=SIMPLEMODELS)
def test_pyhf_simplemodels_workspaces_validate(make_model):
    model = make_model()
    spec = pyhf_workspace(model, [52.0] * model.config.channel_nbins[model.config.channels[0]])
    pyhf.schema.validate(spec, "workspace.json")  # the reference: pyhf accepts it
    schema.validate(spec)
    consistency.check_consistency(spec)


def test_a_pyhf_workspace_with_every_pyhf_modifier_validates():
    spec = every_pyhf_modifier_workspace()
    pyhf.schema.validate(spec, "workspace.json")
    pyhf.Workspace(spec).model()  # and pyhf builds a model from it
    schema.validate(spec)
    consistency.check_consistency(spec)


def test_a_pyhf_workspace_built_with_numpy_arrays_validates_as_in_pyhf():
    spec = every_pyhf_modifier_workspace()
    sample = spec["channels"][0]["samples"][1]
    sample["data"] = np.array([50.0, 52.0])
    sample["modifiers"][0]["data"] = np.array([5.0, 6.0], dtype=np.float32)
    spec["observations"][0]["data"] = np.array([55, 57])
    pyhf.schema.validate(spec, "workspace.json")
    schema.validate(spec)
    consistency.check_consistency(spec)
    sample["data"] = np.array([[50.0, 52.0]])
    with pytest.raises(InvalidSpecification, match="is not of type 'number'") as err:
        schema.validate(spec)
    assert err.value.pointer == "/channels/0/samples/1/data/0"


def sbottom_workspaces():
    if not SBOTTOM.is_file():
        pytest.skip(f"published ATLAS sbottom workspaces not found at {SBOTTOM}")
    with tarfile.open(SBOTTOM) as archive:
        for region in "ABC":
            background = json.load(archive.extractfile(f"Region{region}/BkgOnly.json"))
            patch_name = f"Region{region}/patch.sbottom_1300_205_60.json"
            patch = json.load(archive.extractfile(patch_name))
            yield region, background, jsonpatch.apply_patch(background, patch)


def test_published_atlas_sbottom_workspaces_validate():
    """Background-only and signal-patched pyhf workspaces of ATLAS (inspire 1748602)."""
    checked = 0
    for region, background, signal in sbottom_workspaces():
        for spec in (background, signal):
            pyhf.schema.validate(spec, "workspace.json")
            schema.validate(spec)
            consistency.check_consistency(spec)
            checked += 1
        assert len(signal["channels"]) < len(background["channels"]), region
    assert checked == 6


def test_full_unbinned_and_binned_workspace_validates_but_is_no_pyhf_workspace():
    spec = unbinned_workspace()
    schema.validate(spec)
    consistency.check_consistency(spec)
    with pytest.raises(pyhf.exceptions.InvalidSpecification):
        pyhf.schema.validate(spec, "workspace.json")


def test_unbinned_only_workspace_validates():
    spec = unbinned_workspace()
    del spec["channels"]
    spec["observations"] = spec["observations"][1:]
    schema.validate(spec)
    consistency.check_consistency(spec)


def test_the_example_in_the_documentation_validates():
    text = (REPO / "docs" / "schema.md").read_text("utf-8")
    (example,) = re.findall(r"```json\n(.*?)```", text, flags=re.DOTALL)
    spec = json.loads(example)
    schema.validate(spec)
    consistency.check_consistency(spec)
    assert len(spec["channels"]) == len(spec["unbinned_channels"]) == 1


# --- violations and their pointers --------------------------------------------------------

UNBINNED = "/unbinned_channels/0"
SAMPLE = f"{UNBINNED}/samples/0"


def set_at(pointer: str, value):
    def mutate(spec):
        *parents, last = [int(p) if p.isdigit() else p for p in pointer.split("/")[1:]]
        node = spec
        for part in parents:
            node = node[part]
        if value is DELETE:
            del node[last]
        else:
            node[last] = value

    return mutate


DELETE = object()

VIOLATIONS = {
    "wrong output kind": (
        set_at(f"{UNBINNED}/samples/1/ratio/ensemble/1/output", "prob"),
        f"{UNBINNED}/samples/1/ratio/ensemble/1/output",
        "'prob' is not one of ['ratio', 'log_ratio', 'probability', 'logit']",
    ),
    "missing output": (
        set_at(f"{SAMPLE}/ratio/output", DELETE),
        f"{SAMPLE}/ratio",
        "'output' is a required property",
    ),
    "missing yield": (set_at(f"{SAMPLE}/yield", DELETE), SAMPLE, "'yield' is a required property"),
    "negative yield": (
        set_at(f"{SAMPLE}/yield", -0.5),
        f"{SAMPLE}/yield",
        "-0.5 is less than the minimum of 0",
    ),
    "yield not a number": (
        set_at(f"{SAMPLE}/yield", "21"),
        f"{SAMPLE}/yield",
        "'21' is not of type 'number'",
    ),
    "extra key on a sample": (
        set_at(f"{SAMPLE}/colour", "red"),
        SAMPLE,
        "Additional properties are not allowed ('colour' was unexpected)",
    ),
    "extra key at the top": (
        set_at("/comment", "x"),
        "",
        "Additional properties are not allowed ('comment' was unexpected)",
    ),
    "uppercase sha256": (
        set_at(f"{SAMPLE}/ratio/onnx/sha256", "A" * 64),
        f"{SAMPLE}/ratio/onnx/sha256",
        "is not a sha256 digest: 64 lowercase hexadecimal characters",
    ),
    "short sha256": (
        set_at(f"{UNBINNED}/reference/events/sha256", "abc"),
        f"{UNBINNED}/reference/events/sha256",
        "'abc' is not a sha256 digest",
    ),
    "absolute path": (
        set_at("/observations/1/events/path", "/etc/passwd"),
        "/observations/1/events/path",
        "'/etc/passwd' is not a relative path inside the workspace directory",
    ),
    "empty path": (
        set_at(f"{SAMPLE}/ratio/onnx/path", ""),
        f"{SAMPLE}/ratio/onnx/path",
        "'' should be non-empty",
    ),
    "empty ensemble": (
        set_at(f"{UNBINNED}/samples/1/ratio/ensemble", []),
        f"{UNBINNED}/samples/1/ratio/ensemble",
        "[] should be non-empty",
    ),
    "unknown aggregate": (
        set_at(f"{UNBINNED}/samples/1/ratio/aggregate", "median"),
        f"{UNBINNED}/samples/1/ratio/aggregate",
        "'median' is not one of ['mean']",
    ),
    "ensemble and onnx together": (
        set_at(f"{UNBINNED}/samples/1/ratio/onnx", {"path": "x.onnx"}),
        f"{UNBINNED}/samples/1/ratio",
        "Additional properties are not allowed ('onnx' was unexpected)",
    ),
    "unknown unbinned modifier type": (
        set_at(f"{SAMPLE}/modifiers/2/type", "histosys"),
        f"{SAMPLE}/modifiers/2/type",
        "'histosys' is not one of ['formula', 'lumi', 'normfactor', 'normsys', 'ratiosys']",
    ),
    "unknown binned modifier type": (
        set_at("/channels/0/samples/0/modifiers/0/type", "ratiosys"),
        "/channels/0/samples/0/modifiers/0/type",
        (
            "'ratiosys' is not one of ['histosys', 'lumi', 'normfactor', 'normsys', "
            "'shapefactor', 'shapesys', 'staterror', 'formula']"
        ),
    ),
    "binned modifier with wrong data": (
        set_at("/channels/0/samples/0/modifiers/0/data", [1.0]),
        "/channels/0/samples/0/modifiers/0/data",
        "[1.0] is not of type 'null'",
    ),
    "formula without expression": (
        set_at(f"{SAMPLE}/modifiers/0/data", {"formula": "mu"}),
        f"{SAMPLE}/modifiers/0/data",
        "'expression' is a required property",
    ),
    "lumi with another name": (
        set_at(f"{SAMPLE}/modifiers/1/name", "luminosity"),
        f"{SAMPLE}/modifiers/1/name",
        "'lumi' was expected",
    ),
    "normsys factor zero": (
        set_at(f"{SAMPLE}/modifiers/2/data/lo", 0),
        f"{SAMPLE}/modifiers/2/data/lo",
        "0 is less than or equal to the minimum of 0",
    ),
    "unknown interpolation code": (
        set_at(f"{SAMPLE}/modifiers/3/data/interpolation", "code4p"),
        f"{SAMPLE}/modifiers/3/data/interpolation",
        "'code4p' is not one of ['code0', 'code1', 'code4']",
    ),
    "ratiosys with a number": (
        set_at(f"{SAMPLE}/modifiers/3/data/hi", 1.1),
        f"{SAMPLE}/modifiers/3/data/hi",
        "1.1 is not of type 'object'",
    ),
    "observation with data and events": (
        set_at("/observations/1/data", [3.0]),
        "/observations/1",
        "Additional properties are not allowed ('data' was unexpected)",
    ),
    "observation with neither": (
        set_at("/observations/1/events", DELETE),
        "/observations/1",
        "'data' is a required property",
    ),
    "unknown shape_normalisation": (
        set_at(f"{UNBINNED}/shape_normalisation", "exact"),
        f"{UNBINNED}/shape_normalisation",
        "'exact' is not one of ['nominal', 'reference']",
    ),
    "one bound": (
        set_at(f"{UNBINNED}/observables/0/bounds", [220]),
        f"{UNBINNED}/observables/0/bounds",
        "[220] is too short",
    ),
    "no observables": (
        set_at(f"{UNBINNED}/observables", []),
        f"{UNBINNED}/observables",
        "[] should be non-empty",
    ),
    "reference without events": (
        set_at(f"{UNBINNED}/reference", {"path": "data/ref.npz"}),
        f"{UNBINNED}/reference",
        "'events' is a required property",
    ),
    "measurement parameter with unknown key": (
        set_at("/measurements/0/config/parameters/0/sigma", [1.0]),
        "/measurements/0/config/parameters/0",
        "Additional properties are not allowed ('sigma' was unexpected)",
    ),
    "wrong version": (set_at("/version", 1), "/version", "'1.0.0' was expected"),
    "no channel at all": (
        lambda spec: spec.update(channels=[], unbinned_channels=[]),
        "/channels",
        "a workspace needs at least one channel in 'channels' (binned) or 'unbinned_channels'",
    ),
}


@pytest.mark.parametrize(("mutate", "pointer", "message"), VIOLATIONS.values(), ids=VIOLATIONS)
def test_violation_names_pointer_and_expectation(mutate, pointer, message):
    spec = unbinned_workspace()
    mutate(spec)
    with pytest.raises(InvalidSpecification) as err:
        schema.validate(spec)
    assert err.value.pointer == pointer
    assert message in err.value.message
    assert str(err.value) == f"{pointer or '/'}: {err.value.message}"
    assert "\n" not in str(err.value)


def test_missing_channels_key_points_at_the_root():
    spec = unbinned_workspace()
    del spec["channels"], spec["unbinned_channels"]
    with pytest.raises(InvalidSpecification, match="needs at least one channel") as err:
        schema.validate(spec)
    assert err.value.pointer == ""


def test_long_values_are_abbreviated_in_one_line():
    spec = unbinned_workspace()
    spec["channels"][0]["samples"][0]["modifiers"] = "x" * 10_000
    with pytest.raises(InvalidSpecification) as err:
        schema.validate(spec)
    assert err.value.pointer == "/channels/0/samples/0/modifiers"
    assert "is not of type 'array'" in err.value.message
    assert len(str(err.value)) < 200


def test_pointer_escapes_slash_and_tilde():
    assert schema.json_pointer(["a/b", "c~d", 3]) == "/a~1b/c~0d/3"


def test_an_unknown_version_in_the_spec_is_named():
    spec = unbinned_workspace()
    spec["version"] = "2.0.0"
    with pytest.raises(
        InvalidSpecification, match=re.escape("unknown workspace version '2.0.0'")
    ) as err:
        schema.validate(spec)
    assert err.value.pointer == "/version"


def test_explicit_version_is_checked_against_the_spec():
    spec = unbinned_workspace()
    schema.validate(spec, version="1.0.0")
    spec["version"] = "0.9.0"
    with pytest.raises(InvalidSpecification, match=re.escape("'1.0.0' was expected")):
        schema.validate(spec, version="1.0.0")


def test_not_an_object():
    with pytest.raises(InvalidSpecification, match="is not of type 'object'") as err:
        schema.validate([1, 2])
    assert err.value.pointer == ""


def test_binned_violations_agree_with_pyhf():
    """Where pyhf's schema rejects a binned workspace, ours rejects it at the same place."""
    mutations = {
        "/channels/0/samples/0/data": "3",
        "/channels/0/samples/0/modifiers/2/data": {"hi": 1.1},
        "/channels/0/samples/0/extra": 1,
        "/observations/0/data": [],
        "/measurements/0/config/poi": 1,
    }
    for pointer, value in mutations.items():
        spec = every_pyhf_modifier_workspace()
        set_at(pointer, value)(spec)
        with pytest.raises(pyhf.exceptions.InvalidSpecification):
            pyhf.schema.validate(spec, "workspace.json")
        with pytest.raises(InvalidSpecification) as err:
            schema.validate(spec)
        assert pointer.startswith(err.value.pointer), (pointer, err.value.pointer)
        assert err.value.pointer.count("/") >= pointer.count("/") - 1
