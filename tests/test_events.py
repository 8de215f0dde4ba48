"""Event files of every format into an EventSet, and every way they can be wrong."""

from __future__ import annotations

import hashlib
import sys
import types

import numpy as np
import pytest

from ratiofactory.errors import DigestMismatch, InvalidEvents
from ratiofactory.events import EventSet, load_events

POINTER = "/observations/1/events"
OBSERVABLES = ("m4l", "cos_theta")


@pytest.fixture
def columns():
    rng = np.random.default_rng(7)
    return {
        "cos_theta": rng.uniform(-1, 1, 50),
        "m4l": rng.uniform(220, 2000, 50),
        "w": rng.exponential(1.0, 50),
        "unused": rng.normal(size=50),
    }


def expected_values(columns):
    return np.column_stack([columns["m4l"], columns["cos_theta"]])


def write_csv(path, names, rows):
    lines = [",".join(names)] + [",".join(repr(float(v)) for v in row) for row in rows]
    path.write_text("\n".join(lines) + "\n")


def load(base, name, observables=OBSERVABLES, **spec):
    return load_events(base, {"path": name, **spec}, observables, pointer=POINTER)


def test_npz_round_trip(tmp_path, columns):
    np.savez(tmp_path / "ev.npz", **columns)
    events = load(tmp_path, "ev.npz", weight="w")
    np.testing.assert_array_equal(events.values, expected_values(columns))
    np.testing.assert_array_equal(events.weights, columns["w"])
    assert events.values.dtype == np.float64
    assert events.values.flags.c_contiguous
    assert events.observables == OBSERVABLES
    assert events.source == "ev.npz"
    assert len(events) == 50
    assert not events.values.flags.writeable
    assert not events.weights.flags.writeable


def test_npz_without_weight_and_integer_columns(tmp_path):
    np.savez(
        tmp_path / "ev.npz",
        m4l=np.array([300, 400], dtype=np.int32),
        cos_theta=np.array([0.5, -0.5], dtype=np.float32),
    )
    events = load(tmp_path, "ev.npz")
    assert events.weights is None
    assert events.values.tolist() == [[300.0, 0.5], [400.0, -0.5]]


def test_npy_structured_round_trip(tmp_path, columns):
    table = np.zeros(50, dtype=[("w", "f8"), ("m4l", "f4"), ("cos_theta", "f8"), ("n", "i4")])
    for name in ("w", "m4l", "cos_theta"):
        table[name] = columns[name]
    np.save(tmp_path / "ev.npy", table)
    events = load(tmp_path, "ev.npy", weight="w")
    np.testing.assert_array_equal(events.values[:, 0], columns["m4l"].astype(np.float32))
    np.testing.assert_array_equal(events.values[:, 1], columns["cos_theta"])
    np.testing.assert_array_equal(events.weights, columns["w"])


def test_csv_round_trip(tmp_path, columns):
    names = ["unused", " cos_theta", "w", "m4l"]
    rows = np.column_stack([columns[n.strip()] for n in names])
    write_csv(tmp_path / "ev.csv", names, rows)
    events = load(tmp_path, "ev.csv", weight="w")
    np.testing.assert_array_equal(events.values, expected_values(columns))
    np.testing.assert_array_equal(events.weights, columns["w"])


def test_csv_with_no_rows_gives_zero_events(tmp_path):
    (tmp_path / "ev.csv").write_text("m4l,cos_theta\n")
    events = load(tmp_path, "ev.csv")
    assert events.values.shape == (0, 2)


def test_digest_depends_on_content_order_and_weights(tmp_path, columns):
    np.savez(tmp_path / "a.npz", **columns)
    write_csv(
        tmp_path / "b.csv",
        ["m4l", "cos_theta", "w"],
        np.column_stack([columns["m4l"], columns["cos_theta"], columns["w"]]),
    )
    a, b = load(tmp_path, "a.npz"), load(tmp_path, "b.csv")
    assert a.digest == b.digest
    assert len(a.digest) == 64
    assert load(tmp_path, "a.npz", weight="w").digest != a.digest
    assert load(tmp_path, "a.npz", ("cos_theta", "m4l")).digest != a.digest
    shifted = EventSet(a.values + 1e-9, None, OBSERVABLES, "x")
    assert shifted.digest != a.digest
    renamed = EventSet(a.values, None, ("m4l", "costheta"), "x")
    assert renamed.digest != a.digest


def test_digest_is_sha256_of_the_arrays(columns):
    values = expected_values(columns)
    events = EventSet(values, None, OBSERVABLES, "mem")
    header = (
        b'{"format": "ratiofactory-eventset-1", "observables": ["m4l", "cos_theta"], '
        b'"shape": [50, 2], "weighted": false}'
    )
    assert events.digest == hashlib.sha256(header + values.tobytes()).hexdigest()


def test_eventset_copies_writeable_input_and_keeps_read_only_input():
    mine = np.arange(6.0).reshape(3, 2)
    events = EventSet(mine, np.ones(3), OBSERVABLES, "mem")
    mine[0, 0] = 99.0
    assert mine.flags.writeable
    assert events.values[0, 0] == 0.0
    frozen = np.arange(6.0).reshape(3, 2)
    frozen.flags.writeable = False
    assert EventSet(frozen, None, OBSERVABLES, "mem").values is frozen


def test_eventset_rejects_inconsistent_shapes():
    with pytest.raises(ValueError, match=r"values must have shape \(N, 2\)"):
        EventSet(np.zeros((3, 3)), None, OBSERVABLES, "mem")
    with pytest.raises(ValueError, match=r"weights must have shape \(3,\)"):
        EventSet(np.zeros((3, 2)), np.ones(4), OBSERVABLES, "mem")


def test_unused_columns_are_not_loaded(tmp_path, columns):
    # an object column the channel does not need is never unpickled nor refused
    np.savez(
        tmp_path / "ev.npz",
        m4l=columns["m4l"],
        cos_theta=columns["cos_theta"],
        junk=np.array([{"a": 1}, None], dtype=object),
    )
    assert load(tmp_path, "ev.npz").values.shape == (50, 2)


def test_npz_object_column_refused(tmp_path, columns):
    np.savez(
        tmp_path / "ev.npz",
        m4l=np.array([1.0, {"evil": 1}], dtype=object),
        cos_theta=columns["cos_theta"][:2],
    )
    with pytest.raises(
        InvalidEvents,
        match=rf"^{POINTER}: ev\.npz: holds pickled/object "
        "arrays, which are refused",
    ):
        load(tmp_path, "ev.npz")


def test_pickle_file_named_npz_refused(tmp_path):
    import pickle

    (tmp_path / "ev.npz").write_bytes(pickle.dumps({"m4l": [1.0]}))
    with pytest.raises(InvalidEvents, match="pickled/object arrays, which are refused"):
        load(tmp_path, "ev.npz")


def test_npy_object_field_refused(tmp_path):
    table = np.zeros(2, dtype=[("m4l", "f8"), ("cos_theta", "O")])
    np.save(tmp_path / "ev.npy", table, allow_pickle=True)
    with pytest.raises(InvalidEvents, match="pickled/object arrays, which are refused"):
        load(tmp_path, "ev.npy")


def test_npy_plain_array_refused(tmp_path):
    np.save(tmp_path / "ev.npy", np.zeros((4, 2)))
    with pytest.raises(
        InvalidEvents,
        match=r"ev\.npy: holds a plain float64 array of shape "
        r"\(4, 2\); expected a structured array",
    ):
        load(tmp_path, "ev.npy")


def test_missing_observable_column(tmp_path, columns):
    np.savez(tmp_path / "ev.npz", m4l=columns["m4l"], w=columns["w"])
    with pytest.raises(
        InvalidEvents,
        match=rf"^{POINTER}: ev\.npz: column 'cos_theta' is "
        "missing; the file has columns 'm4l', 'w'$",
    ):
        load(tmp_path, "ev.npz")


def test_missing_csv_column(tmp_path):
    write_csv(tmp_path / "ev.csv", ["m4l", "cos"], [[300.0, 0.1]])
    with pytest.raises(
        InvalidEvents,
        match=r"ev\.csv: column 'cos_theta' is missing; the file "
        "has columns 'm4l', 'cos'",
    ):
        load(tmp_path, "ev.csv")


def test_non_finite_value_names_event_and_column(tmp_path, columns):
    cos = columns["cos_theta"].copy()
    cos[[17, 30]] = [np.nan, np.inf]
    np.savez(tmp_path / "ev.npz", m4l=columns["m4l"], cos_theta=cos)
    with pytest.raises(
        InvalidEvents,
        match=rf"^{POINTER}: ev\.npz: event 17 has non-finite "
        "cos_theta = nan$",
    ):
        load(tmp_path, "ev.npz")


def test_non_finite_in_csv(tmp_path):
    write_csv(tmp_path / "ev.csv", ["m4l", "cos_theta"], [[300.0, 0.1], [np.inf, 0.2]])
    with pytest.raises(InvalidEvents, match="event 1 has non-finite m4l = inf"):
        load(tmp_path, "ev.csv")


def test_weight_column_missing(tmp_path, columns):
    np.savez(tmp_path / "ev.npz", m4l=columns["m4l"], cos_theta=columns["cos_theta"])
    with pytest.raises(
        InvalidEvents, match="column 'weight' is missing; the file has columns 'm4l', 'cos_theta'"
    ):
        load(tmp_path, "ev.npz", weight="weight")


@pytest.mark.parametrize("bad", [-0.5, np.nan, np.inf])
def test_bad_weight_names_event(tmp_path, columns, bad):
    weights = columns["w"].copy()
    weights[23] = bad
    np.savez(tmp_path / "ev.npz", m4l=columns["m4l"], cos_theta=columns["cos_theta"], w=weights)
    with pytest.raises(
        InvalidEvents,
        match=rf"ev\.npz: event 23 has weight w = {bad}; "
        "weights must be finite and >= 0",
    ):
        load(tmp_path, "ev.npz", weight="w")


def test_zero_weights_are_allowed(tmp_path, columns):
    np.savez(
        tmp_path / "ev.npz", m4l=columns["m4l"], cos_theta=columns["cos_theta"], w=np.zeros(50)
    )
    assert load(tmp_path, "ev.npz", weight="w").weights.sum() == 0


def test_columns_of_different_lengths(tmp_path, columns):
    np.savez(tmp_path / "ev.npz", m4l=columns["m4l"], cos_theta=columns["cos_theta"][:49])
    with pytest.raises(
        InvalidEvents,
        match=r"ev\.npz: columns have different lengths "
        r"\(m4l: 50, cos_theta: 49\)",
    ):
        load(tmp_path, "ev.npz")


def test_short_csv_row(tmp_path):
    (tmp_path / "ev.csv").write_text("m4l,cos_theta\n300,0.1\n400\n")
    with pytest.raises(InvalidEvents, match=r"ev\.csv: cannot read the numbers"):
        load(tmp_path, "ev.csv")


def test_non_numeric_csv(tmp_path):
    (tmp_path / "ev.csv").write_text("m4l,cos_theta\n300,0.1\nabc,0.2\n")
    with pytest.raises(InvalidEvents, match=r"ev\.csv: cannot read the numbers"):
        load(tmp_path, "ev.csv")


def test_two_dimensional_column(tmp_path, columns):
    np.savez(tmp_path / "ev.npz", m4l=np.zeros((50, 2)), cos_theta=columns["cos_theta"])
    with pytest.raises(
        InvalidEvents,
        match=r"column 'm4l' has shape \(50, 2\); each column "
        "must be 1-D",
    ):
        load(tmp_path, "ev.npz")


def test_string_column(tmp_path, columns):
    np.savez(tmp_path / "ev.npz", m4l=np.array(["a"] * 50), cos_theta=columns["cos_theta"])
    with pytest.raises(InvalidEvents, match="column 'm4l' has type <U1; expected numbers"):
        load(tmp_path, "ev.npz")


def test_corrupt_npz(tmp_path):
    (tmp_path / "ev.npz").write_bytes(b"PK\x03\x04 definitely not a zip")
    with pytest.raises(InvalidEvents, match=r"ev\.npz: not a readable \.npz archive"):
        load(tmp_path, "ev.npz")


def test_unsupported_suffix(tmp_path):
    (tmp_path / "ev.h5").write_bytes(b"")
    with pytest.raises(
        InvalidEvents,
        match=r"ev\.h5: unsupported event file type '\.h5'; use "
        r"one of \.npz, \.npy, \.csv, \.root, \.parquet",
    ):
        load(tmp_path, "ev.h5")


def test_digest_mismatch_is_checked(tmp_path, columns):
    np.savez(tmp_path / "ev.npz", **columns)
    with pytest.raises(DigestMismatch, match=rf"^{POINTER}: sha256 of ev\.npz is"):
        load(tmp_path, "ev.npz", sha256="0" * 64)


@pytest.mark.parametrize(
    ("suffix", "module", "extra"), [(".root", "uproot", "root"), (".parquet", "pyarrow", "parquet")]
)
def test_optional_reader_missing(tmp_path, monkeypatch, suffix, module, extra):
    monkeypatch.setitem(sys.modules, module, None)  # makes the import fail
    (tmp_path / f"ev{suffix}").write_bytes(b"")
    with pytest.raises(InvalidEvents, match=rf"needs {module}: install ratiofactory\[{extra}\]"):
        load(tmp_path, f"ev{suffix}")


class _FakeTree:
    def __init__(self, arrays):
        self._arrays = arrays
        self.num_entries = len(next(iter(arrays.values()), []))

    def keys(self):
        return list(self._arrays)

    def arrays(self, names, library):
        assert library == "np"
        return {name: self._arrays[name] for name in names}


class _FakeRootFile:
    def __init__(self, trees):
        self._trees = trees

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def classnames(self):
        return {f"{name};1": "TTree" for name in self._trees} | {"hist;1": "TH1D"}

    def __getitem__(self, name):
        return self._trees[name]


def fake_uproot(monkeypatch, trees):
    module = types.ModuleType("uproot")
    module.open = lambda path: _FakeRootFile(trees)
    monkeypatch.setitem(sys.modules, "uproot", module)


def test_root_reader_selects_tree(tmp_path, monkeypatch, columns):
    fake_uproot(monkeypatch, {"events": _FakeTree(columns), "other": _FakeTree({})})
    (tmp_path / "ev.root").write_bytes(b"")
    events = load(tmp_path, "ev.root", tree="events", weight="w")
    np.testing.assert_array_equal(events.values, expected_values(columns))
    with pytest.raises(
        InvalidEvents,
        match=r"ev\.root: holds trees \['events', 'other'\]; "
        "name one with the 'tree' key",
    ):
        load(tmp_path, "ev.root")
    with pytest.raises(InvalidEvents, match="has no tree 'nominal'"):
        load(tmp_path, "ev.root", tree="nominal")


def test_root_reader_single_tree_and_jagged_branch(tmp_path, monkeypatch, columns):
    jagged = np.empty(50, dtype=object)
    jagged[:] = [np.zeros(2)] * 50
    fake_uproot(monkeypatch, {"t": _FakeTree({**columns, "m4l": jagged})})
    (tmp_path / "ev.root").write_bytes(b"")
    with pytest.raises(InvalidEvents, match="column 'm4l' holds Python objects"):
        load(tmp_path, "ev.root")


def test_root_round_trip_with_uproot(tmp_path, columns):
    uproot = pytest.importorskip("uproot")
    with uproot.recreate(tmp_path / "ev.root") as root_file:
        root_file["events"] = {name: columns[name] for name in ("m4l", "cos_theta", "w")}
    events = load(tmp_path, "ev.root", weight="w")
    np.testing.assert_array_equal(events.values, expected_values(columns))


def test_parquet_round_trip_with_pyarrow(tmp_path, columns):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    pq.write_table(pa.table(columns), tmp_path / "ev.parquet")
    events = load(tmp_path, "ev.parquet", weight="w")
    np.testing.assert_array_equal(events.values, expected_values(columns))
    np.testing.assert_array_equal(events.weights, columns["w"])
