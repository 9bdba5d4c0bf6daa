"""Chart specs built once for every session that draws the same chart of the same data.

Ten sessions on one view refresh on timers that keep the phase of their first draw, so the
sessions that signed in together ask for the same charts in the same instant, and each built
them again: Altair combining the layers (a quarter of the server's script time under
``bench.soak``), then its conversion to a Vega-Lite dict. ``shared(builder, ...)`` keys the
finished spec by the builder and a fingerprint of every argument (frames by the hash of their
values, index and dtypes), so a session gets the spec another built only when it would have
built the very same one; a session that asks while the spec is being built waits for it
rather than building it a second time on the same cores.

The cache lives in this module, not in ``st.cache_data``, which a client's ``clear_cache``
message empties. Arguments it cannot fingerprint make the chart unshared, never wrong.
"""

from __future__ import annotations

import dataclasses
import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future
from typing import NamedTuple

import altair as alt
import pandas as pd
from streamlit.elements.vega_charts import _convert_altair_to_vega_lite_spec

from ui.charts import has_zoom, unvalidated

# Each entry is a spec of a few hundred rows of chart data: a few hundred KB at most.
KEPT = 64


class Spec(NamedTuple):
    """A chart as Streamlit sends it: its Vega-Lite dict (datasets as Arrow bytes), and
    whether it carries the zoom interval. Shared between sessions: never change it."""

    spec: dict
    zoomable: bool


class _Unshareable(TypeError):
    pass


def spec_of(chart: alt.TopLevelMixin) -> Spec:
    """The spec Streamlit's ``st.altair_chart`` would send for ``chart``."""
    return Spec(_convert_altair_to_vega_lite_spec(unvalidated(chart)), has_zoom(chart))


class SharedSpecs:
    """The last ``kept`` specs (or other values shared between sessions) by key, each built by
    one caller while the others wait."""

    def __init__(self, kept: int = KEPT):
        self.kept = kept
        self._lock = threading.Lock()
        self._done: OrderedDict[tuple, Spec] = OrderedDict()
        self._building: dict[tuple, Future] = {}
        self.built = self.reused = 0

    def get(self, key: tuple, build: Callable[[], Spec]) -> Spec:
        with self._lock:
            if key in self._done:
                self._done.move_to_end(key)
                self.reused += 1
                return self._done[key]
            building = self._building.get(key)
            if building is None:
                building = self._building[key] = Future()
                mine = True
            else:
                self.reused += 1
                mine = False
        if not mine:
            return building.result()
        try:
            spec = build()
        except BaseException as error:
            with self._lock:
                del self._building[key]
            building.set_exception(error)
            raise
        with self._lock:
            self.built += 1
            self._done[key] = spec
            while len(self._done) > self.kept:
                self._done.popitem(last=False)
            del self._building[key]
        building.set_result(spec)
        return spec


SPECS = SharedSpecs()


def shared(builder: Callable[..., alt.TopLevelMixin], *args, **kwargs) -> Spec:
    """The spec of ``builder(*args, **kwargs)``, built once for equal arguments."""
    try:
        key = (builder.__module__, builder.__qualname__, fingerprint(args), fingerprint(kwargs))
    except _Unshareable:
        return spec_of(builder(*args, **kwargs))
    return SPECS.get(key, lambda: spec_of(builder(*args, **kwargs)))


def fingerprint(value) -> object:
    """A hashable value equal for two arguments exactly when a chart builder would draw them
    alike; raises ``_Unshareable`` for a kind of value it does not know."""
    if value is None or isinstance(value, (bool, int, float, str, bytes, pd.Timestamp)):
        return (type(value).__name__, value)
    if isinstance(value, (tuple, list)):
        return (type(value).__name__, *map(fingerprint, value))
    if isinstance(value, dict):
        return ("dict", *((fingerprint(k), fingerprint(v)) for k, v in value.items()))
    if isinstance(value, pd.DataFrame):
        return ("frame", tuple(map(str, value.columns)), tuple(map(str, value.dtypes)), _digest(value))
    if isinstance(value, pd.Series):
        return ("series", str(value.name), str(value.dtype), _digest(value))
    owner = getattr(value, "__self__", None)  # a bound method, such as View.wall
    if owner is not None and dataclasses.is_dataclass(owner) and owner.__dataclass_params__.frozen:
        return ("method", value.__qualname__, repr(owner))
    raise _Unshareable(type(value).__name__)


def _digest(data: pd.DataFrame | pd.Series) -> bytes:
    try:
        rows = pd.util.hash_pandas_object(data, index=True).to_numpy()
    except TypeError as error:  # a cell holding a list, say
        raise _Unshareable(str(error)) from None
    return hashlib.blake2b(rows.tobytes(), digest_size=16).digest() + len(data).to_bytes(8, "little")
