"""Rules of a workspace that the JSON schema cannot express: ``consistency.check_consistency``.

Every broken spec below is valid under the JSON schema (asserted), so each rule is
checked by ``check_consistency`` alone, which must name the offending JSON pointer.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from ratiofactory import consistency, schema
from ratiofactory.errors import InvalidSpecification


def model(path: str) -> dict:
    return {"onnx": {"path": path}, "output": "ratio"}


def unbinned_sample(name: str, modifiers: list | None = None) -> dict:
    return {
        "name": name,
        "yield": 10.0,
        "ratio": model(f"{name}.onnx"),
        "modifiers": modifiers or [],
    }


def binned_sample(name: str, data: list) -> dict:
    return {"name": name, "data": data, "modifiers": []}


def workspace() -> dict:
    """Two binned channels (3 and 1 bins) and one unbinned channel, all consistent."""
    ratiosys = {"hi": model("up.onnx"), "lo": model("dn.onnx")}
    return {
        "version": "1.0.0",
        "channels": [
            {
                "name": "CR",
                "samples": [
                    {
                        "name": "bkg",
                        "data": [50.0, 60.0, 70.0],
                        "modifiers": [
                            {
                                "name": "shape",
                                "type": "histosys",
                                "data": {
                                    "hi_data": [51.0, 61.0, 71.0],
                                    "lo_data": [49.0, 59.0, 69.0],
                                },
                            },
                            {"name": "stat", "type": "staterror", "data": [1.0, 1.0, 1.0]},
                        ],
                    },
                    binned_sample("other", [1.0, 2.0, 3.0]),
                ],
            },
            {"name": "VR", "samples": [binned_sample("bkg", [20.0])]},
        ],
        "unbinned_channels": [
            {
                "name": "SR",
                "observables": [{"name": "m4l", "bounds": [220.0, 2000.0]}, {"name": "cos_theta"}],
                "samples": [
                    unbinned_sample(
                        "S",
                        [
                            {"name": "k", "type": "normsys", "data": {"hi": 1.1, "lo": 0.9}},
                            {"name": "k", "type": "ratiosys", "data": ratiosys},
                        ],
                    ),
                    unbinned_sample("B"),
                ],
            }
        ],
        "observations": [
            {"name": "CR", "data": [52, 58, 71]},
            {"name": "VR", "data": [19]},
            {"name": "SR", "events": {"path": "observed.npz"}},
        ],
        "measurements": [{"name": "meas", "config": {"poi": "mu", "parameters": []}}],
    }


def duplicate_channel(spec):
    spec["channels"].append({**spec["channels"][1], "name": "CR"})


def binned_and_unbinned_share_a_name(spec):
    spec["unbinned_channels"][0]["name"] = "VR"


def duplicate_unbinned_sample(spec):
    spec["unbinned_channels"][0]["samples"][1]["name"] = "S"


def duplicate_binned_sample(spec):
    spec["channels"][0]["samples"][1]["name"] = "bkg"


def duplicate_observable(spec):
    spec["unbinned_channels"][0]["observables"][1]["name"] = "m4l"


def duplicate_measurement(spec):
    spec["measurements"].append({"name": "meas", "config": {"poi": "k", "parameters": []}})


def missing_observation(spec):
    del spec["observations"][1]


def events_of_unknown_channel(spec):
    spec["observations"].append({"name": "SR_typo", "events": {"path": "observed.npz"}})


def second_observation(spec):
    spec["observations"].append({"name": "SR", "events": {"path": "more.npz"}})


def unbinned_observed_with_data(spec):
    spec["observations"][2] = {"name": "SR", "data": [3.0, 4.0]}


def binned_observed_with_events(spec):
    spec["observations"][1] = {"name": "VR", "events": {"path": "vr.npz"}}


def observation_with_too_few_bins(spec):
    spec["observations"][0]["data"] = [52, 58]


def sample_with_other_bins(spec):
    spec["channels"][0]["samples"][1]["data"] = [1.0, 2.0, 3.0, 4.0]


def histosys_with_other_bins(spec):
    spec["channels"][0]["samples"][0]["modifiers"][0]["data"]["lo_data"] = [49.0]


def staterror_with_other_bins(spec):
    spec["channels"][0]["samples"][0]["modifiers"][1]["data"] = [1.0, 1.0]


def duplicate_unbinned_modifier(spec):
    modifiers = spec["unbinned_channels"][0]["samples"][0]["modifiers"]
    modifiers.append({"name": "k", "type": "normsys", "data": {"hi": 1.2, "lo": 0.8}})


def duplicate_binned_modifier(spec):
    modifiers = spec["channels"][0]["samples"][0]["modifiers"]
    modifiers.append({"name": "stat", "type": "staterror", "data": [2.0, 2.0, 2.0]})


def reference_normalisation_without_reference(spec):
    spec["unbinned_channels"][0]["shape_normalisation"] = "reference"


def reversed_bounds(spec):
    spec["unbinned_channels"][0]["observables"][0]["bounds"] = [2000.0, 220.0]


def empty_bounds(spec):
    spec["unbinned_channels"][0]["observables"][0]["bounds"] = [220.0, 220.0]


def nan_yield(spec):
    spec["unbinned_channels"][0]["samples"][1]["yield"] = math.nan


def infinite_bin(spec):
    spec["channels"][0]["samples"][1]["data"][2] = math.inf


RULES = {
    "duplicate channel": (
        duplicate_channel,
        "/channels/2/name",
        "duplicate channel name 'CR': already used at /channels/0/name",
    ),
    "binned and unbinned channel with one name": (
        binned_and_unbinned_share_a_name,
        "/unbinned_channels/0/name",
        "duplicate channel name 'VR': already used at /channels/1/name",
    ),
    "duplicate unbinned sample": (
        duplicate_unbinned_sample,
        "/unbinned_channels/0/samples/1/name",
        "duplicate sample name 'S': already used at /unbinned_channels/0/samples/0/name",
    ),
    "duplicate binned sample": (
        duplicate_binned_sample,
        "/channels/0/samples/1/name",
        "duplicate sample name 'bkg': already used at /channels/0/samples/0/name",
    ),
    "duplicate observable": (
        duplicate_observable,
        "/unbinned_channels/0/observables/1/name",
        "duplicate observable name 'm4l': already used at /unbinned_channels/0/observables/0/name",
    ),
    "duplicate measurement": (
        duplicate_measurement,
        "/measurements/1/name",
        "duplicate measurement name 'meas': already used at /measurements/0/name",
    ),
    "missing observation": (
        missing_observation,
        "/observations",
        "no observation of channel 'VR' (/channels/1)",
    ),
    "events of an unknown channel": (
        events_of_unknown_channel,
        "/observations/3/name",
        "observation of unknown channel 'SR_typo'; the channels are 'CR', 'VR', 'SR'",
    ),
    "second observation of a channel": (
        second_observation,
        "/observations/3/name",
        "second observation of channel 'SR' (first at /observations/2)",
    ),
    "unbinned channel observed with data": (
        unbinned_observed_with_data,
        "/observations/2/data",
        "channel 'SR' (/unbinned_channels/0) is unbinned: observe it with 'events'",
    ),
    "binned channel observed with events": (
        binned_observed_with_events,
        "/observations/1/events",
        "channel 'VR' (/channels/1) is binned: observe it with 'data'",
    ),
    "observation with the wrong number of bins": (
        observation_with_too_few_bins,
        "/observations/0/data",
        "2 bins observed, but channel 'CR' (/channels/0) has 3 bins",
    ),
    "sample with the wrong number of bins": (
        sample_with_other_bins,
        "/channels/0/samples/1/data",
        "4 bins, but the first sample of channel 'CR' has 3",
    ),
    "histosys with the wrong number of bins": (
        histosys_with_other_bins,
        "/channels/0/samples/0/modifiers/0/data/lo_data",
        "1 bins, but the first sample of channel 'CR' has 3",
    ),
    "staterror with the wrong number of bins": (
        staterror_with_other_bins,
        "/channels/0/samples/0/modifiers/1/data",
        "2 bins, but the first sample of channel 'CR' has 3",
    ),
    "same unbinned modifier twice": (
        duplicate_unbinned_modifier,
        "/unbinned_channels/0/samples/0/modifiers/2",
        (
            "modifier 'k' of type 'normsys' appears twice on this sample "
            "(first at /unbinned_channels/0/samples/0/modifiers/0)"
        ),
    ),
    "same binned modifier twice": (
        duplicate_binned_modifier,
        "/channels/0/samples/0/modifiers/2",
        "modifier 'stat' of type 'staterror' appears twice on this sample",
    ),
    "reference normalisation without a reference sample": (
        reference_normalisation_without_reference,
        "/unbinned_channels/0/shape_normalisation",
        "shape_normalisation 'reference' needs a reference sample",
    ),
    "reversed bounds": (
        reversed_bounds,
        "/unbinned_channels/0/observables/0/bounds",
        "lower bound 2000.0 must be below upper bound 220.0",
    ),
    "empty bounds": (
        empty_bounds,
        "/unbinned_channels/0/observables/0/bounds",
        "lower bound 220.0 must be below upper bound 220.0",
    ),
    "NaN yield": (nan_yield, "/unbinned_channels/0/samples/1/yield", "nan is not a finite number"),
    "infinite bin": (infinite_bin, "/channels/0/samples/1/data/2", "inf is not a finite number"),
}


def test_the_base_workspace_is_consistent():
    spec = workspace()
    schema.validate(spec)
    consistency.check_consistency(spec)


@pytest.mark.parametrize(("break_rule", "pointer", "message"), RULES.values(), ids=RULES)
def test_rule_names_pointer_and_problem(break_rule, pointer, message):
    spec = workspace()
    break_rule(spec)
    schema.validate(spec)  # the schema alone cannot see it
    with pytest.raises(InvalidSpecification) as err:
        consistency.check_consistency(spec)
    assert err.value.pointer == pointer
    assert message in err.value.message
    assert str(err.value) == f"{pointer}: {err.value.message}"


def test_same_name_with_different_modifier_types_is_one_systematic():
    """A normsys and a ratiosys named alike on one sample: rate and shape of one effect."""
    spec = workspace()
    modifiers = spec["unbinned_channels"][0]["samples"][0]["modifiers"]
    assert {(m["name"], m["type"]) for m in modifiers} == {("k", "normsys"), ("k", "ratiosys")}
    consistency.check_consistency(spec)


def test_reference_normalisation_with_a_reference_sample():
    spec = workspace()
    channel = spec["unbinned_channels"][0]
    channel["shape_normalisation"] = "reference"
    channel["reference"] = {"events": {"path": "reference.npz"}}
    schema.validate(spec)
    consistency.check_consistency(spec)


def test_non_finite_values_in_numpy_arrays():
    spec = workspace()
    spec["channels"][1]["samples"][0]["data"] = np.array([np.nan])
    with pytest.raises(InvalidSpecification, match="nan is not a finite number") as err:
        consistency.check_consistency(spec)
    assert err.value.pointer == "/channels/1/samples/0/data/0"


def test_one_sided_infinite_bounds_are_rejected_as_non_finite():
    spec = workspace()
    spec["unbinned_channels"][0]["observables"][0]["bounds"] = [220.0, math.inf]
    with pytest.raises(InvalidSpecification, match="inf is not a finite number") as err:
        consistency.check_consistency(spec)
    assert err.value.pointer == "/unbinned_channels/0/observables/0/bounds/1"


def test_data_of_a_removed_binned_channel_is_ignored_as_in_pyhf():
    """Published pyhf patches remove a channel and keep its observed data."""
    spec = workspace()
    del spec["channels"][1]
    consistency.check_consistency(spec)
    spec["observations"].append({"name": "CR", "data": [1, 2, 3]})
    with pytest.raises(InvalidSpecification, match="second observation of channel 'CR'"):
        consistency.check_consistency(spec)


def test_json_pointer_of_names_with_slashes():
    spec = workspace()
    spec["unbinned_channels"][0]["observables"][1]["name"] = "m4l"
    spec["unbinned_channels"][0]["name"] = "SR/4l"
    spec["observations"][2]["name"] = "SR/4l"
    with pytest.raises(InvalidSpecification) as err:
        consistency.check_consistency(spec)
    assert err.value.pointer == "/unbinned_channels/0/observables/1/name"


def test_no_file_is_opened(tmp_path, monkeypatch):
    """Paths name files that do not exist: the check is on the data only."""
    monkeypatch.chdir(tmp_path)
    spec = workspace()
    consistency.check_consistency(spec)
    assert list(tmp_path.iterdir()) == []
