"""Workspace algebra on plain dicts: combine, prune, rename, sort.

Every function takes specifications (dicts, e.g. ``Workspace.spec`` or a pyhf workspace
loaded with ``json.load``), never modifies them, and returns a new specification that
has passed :func:`ratiofactory.schema.validate` and
:func:`ratiofactory.consistency.check_consistency`. Binned (pyhf) and unbinned channels are
handled alike; a channel name is unique across both kinds.

Join modes of :func:`combine`, as pyhf's:

- ``"none"``: the workspaces may share no channel, observation or measurement name;
- ``"outer"``: shared names are allowed when the two items are identical; measurements
  of the same name must have the same POI and their parameter settings are merged
  (a parameter configured differently on the two sides is an error);
- ``"left outer"`` / ``"right outer"``: for a shared name the left (right) item wins.

``merge_channels=True`` (outer joins only) merges same-named channels sample by sample.

File references (``{"path": ...}``) are relative to a workspace's directory. When the
two workspaces live in different directories, :func:`combine` rewrites the paths of
both to the combined workspace's directory (``base_dir``, the left one's by default);
a file outside that directory cannot be referenced safely and is refused. sha256
digests are kept.

>>> left = {"version": "1.0.0",
...     "channels": [{"name": "SR", "samples": [{"name": "s", "data": [5.0],
...         "modifiers": [{"name": "mu", "type": "normfactor", "data": None}]}]}],
...     "observations": [{"name": "SR", "data": [6.0]}],
...     "measurements": [{"name": "m", "config": {"poi": "mu", "parameters": []}}]}
>>> right = rename(left, channels={"SR": "CR"})
>>> [c["name"] for c in combine(left, right, join="outer")["channels"]]
['SR', 'CR']
>>> combine(left, left)
Traceback (most recent call last):
...
ratiofactory.algebra.InvalidWorkspaceOperation: combine (join='none'): both workspaces define channel 'SR'; rename one of them or choose join='outer', 'left outer' or 'right outer'
"""

from __future__ import annotations

from .checks import InvalidWorkspaceOperation
from .combine import JOINS, combine, rebase_paths, sorted_spec
from .names import prune, rename, reserved_names

__all__ = ["JOINS", "InvalidWorkspaceOperation", "combine", "prune", "rebase_paths", "rename",
           "reserved_names", "sorted_spec"]
