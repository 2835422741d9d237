"""The explorer's jupyter-scatter backend: every point of a 10^5 to 10^7 point map, drawn with WebGL.

jupyter-scatter (``jscatter``: an anywidget over regl-scatterplot) keeps one float32 row per point in the browser.
The explorer sends ``x, y`` scaled to [-1, 1] (one factor for both, so the map keeps its shape) and the colour
value (a palette code, or the margin scaled to [0, 1]) once, as an (n, 3) float32 array, and after that only what
changes:

- a new colouring sends one float32 a point (``cmal_color``), written into the rows already in the browser;
- a new batch sends the candidate and batch indices (``cmal_candidates``, ``cmal_batch``, 4 bytes each), drawn
  as rings and crosses (as the plotly backend draws them) on a 2-D canvas over the plot that follows pan and
  zoom, so the points are not redrawn: without a GPU (a headless browser, a remote desktop) one frame of a
  million points takes a second or more, the marks take milliseconds.

The widget (:func:`scatter_widget_class`) runs jupyter-scatter's front end, its JavaScript bundle from the
installed wheel, with a few lines appended that do the above; they also build the browser's rows directly instead
of through jupyter-scatter's deserializer (about a second per million points) and build the spatial index in a
worker from a transferred copy of the coordinates. Its Python side is the explorer's own, with jupyter-scatter's
trait names (:data:`JSCATTER_STATE`): importing jupyter-scatter's Python package costs 1.5 to 3 seconds
(matplotlib, pandas, scipy) and its data-frame API is not needed. This relies on jupyter-scatter 1.x (the
``widgets`` extra pins ``jupyter-scatter>=1.0,<2``; the tests check the trait names against the installed
version): its bundle ending in one ``export { ... as default }`` (checked by :func:`scatter_unavailable_reason`),
and the ``api`` property (regl-scatterplot) it sets on its container element.

In the browser, the widget's element gets the class ``cmal-scatter``, ``data-cmal-ready="1"`` once the points
are drawn, ``data-cmal-draws`` counting point draws and ``data-cmal-marks`` counting highlight updates painted,
and performance marks ``cmal-render``, ``cmal-rows``, ``cmal-api``, ``cmal-index``, ``cmal-drawn``, ``cmal-highlight``,
``cmal-marks`` time the steps (the browser tests and the benchmark use them).

What jupyter-scatter does not do here: no hover text at the pointer (the explorer's panel beside the plot shows
the point), no marker shapes per point (hence the canvas layer), no legend of its own (the explorer shows one
above the plot), and a lasso, a hover or a pan redraws all points (fast with a GPU; without one about a second
per frame at 10^6 points).

Examples
--------
>>> import numpy as np
>>> from cmal_widgets.explorer import ExplorerModel
>>> from cmal_widgets.explorer_scatter import ScatterPlot
>>> model = ExplorerModel(xy=np.random.default_rng(0).normal(size=(1000, 2)), labels=np.arange(1000) % 10)
>>> plot = ScatterPlot(model)
>>> plot.widget.points.shape, plot.widget.points.dtype.name
((1000, 3), 'float32')
>>> model.set_highlight(candidates=[1, 5, 7], batch=[5, 7])
>>> plot.set_highlight()
>>> plot.widget.cmal_batch.tolist()
[5, 7]
"""

from __future__ import annotations

import functools
import importlib.util
import re
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cmal_widgets.explorer import STATUS_COLORS

if TYPE_CHECKING:
    from cmal_widgets.explorer import ExplorerModel

__all__ = [
    "ARRAY_TRAITS",
    "JSCATTER_STATE",
    "MAP_TRAITS",
    "MARKS_STYLE",
    "ScatterPlot",
    "scatter_unavailable_reason",
    "scatter_widget_class",
]

#: How candidates (rings) and the batch (crosses) are drawn over the points: as the plotly backend draws them.
MARKS_STYLE = {
    "candidate_color": STATUS_COLORS["candidate"],
    "candidate_radius": 5.0,
    "candidate_width": 1.5,
    "batch_color": STATUS_COLORS["batch"],
    "batch_radius": 4.5,
    "batch_width": 2.0,
}

# Appended to jupyter-scatter's bundle in place of its default export (``__CMAL_BASE__`` is its name there).
_JS = r"""
// ---- cmal_widgets: the explorer's layer over jupyter-scatter ----------------------------------------------
// 1. Points: jupyter-scatter's deserializer builds each row with Array.from(subarray), about a second per
//    million rows; the rows are built directly here and drawn once (jupyter-scatter is handed an empty points
//    value, so it does not draw them a second time).
// 2. Colours: "cmal_color" (float32, one a point) is written into column 2 (valueA) and redrawn; coordinates
//    are not sent again.
// 3. Highlights: candidates (rings) and the batch (crosses) are drawn on a 2-D canvas over the plot, following
//    the camera, so a new batch never re-renders the million points (a frame that takes seconds without a GPU).
const cmalBase = __CMAL_BASE__;
const cmalSleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const CMAL_EMPTY = { view: new DataView(new ArrayBuffer(0)), dtype: "float32", shape: [0, 4] };
function cmalTyped(model, name, Type) {
  const v = model.get(name);
  if (!v || !v.view) return null;
  return new Type(v.view.buffer, v.view.byteOffset, v.view.byteLength / Type.BYTES_PER_ELEMENT);
}
function cmalRows(model) {
  const p = model.get("points");
  if (!p || !p.view || !p.shape[0]) return [];
  const [n, w] = p.shape;
  const a = new Float32Array(p.view.buffer, p.view.byteOffset, n * w);
  const color = cmalTyped(model, "cmal_color", Float32Array);
  const c = color && color.length === n ? color : null;
  const rows = new Array(n);
  for (let i = 0, k = 0; i < n; i++, k += w) rows[i] = [a[k], a[k + 1], c ? c[i] : a[k + 2], 0];
  return rows;
}
function cmalSpatialIndex(model) {
  // regl-scatterplot builds its spatial index (KDBush) in a worker from 10^6 cloned row arrays, about a second
  // of copying on the page's thread; a worker fed a transferred copy of x, y builds the same index meanwhile.
  const p = model.get("points");
  if (typeof createKDBushClass !== "function" || !p || !p.view || p.shape[0] < 100000) return Promise.resolve();
  const [n, w] = p.shape;
  const a = new Float32Array(p.view.buffer, p.view.byteOffset, n * w);
  const xy = new Float32Array(2 * n);
  for (let i = 0, k = 0; i < n; i++, k += w) {
    xy[2 * i] = a[k];
    xy[2 * i + 1] = a[k + 1];
  }
  const source = `const KDBush = (${createKDBushClass.toString()})();
    onmessage = (e) => {
      const xy = e.data.xy, n = xy.length / 2, index = new KDBush(n, 16);
      for (let i = 0; i < n; i++) index.add(xy[2 * i], xy[2 * i + 1]);
      index.finish();
      postMessage(index.data, [index.data]);
    };`;
  return new Promise((resolve) => {
    let worker;
    try {
      const url = URL.createObjectURL(new Blob([source], { type: "text/javascript" }));
      worker = new Worker(url, { name: "cmal KDBush" });
      URL.revokeObjectURL(url);
    } catch (err) {
      resolve();  // no workers here: regl-scatterplot builds the index itself
      return;
    }
    worker.onmessage = (e) => { worker.terminate(); resolve(e.data); };
    worker.onerror = () => { worker.terminate(); resolve(); };
    worker.postMessage({ xy }, [xy.buffer]);
  });
}
function cmalApi(el) {
  for (const d of el.querySelectorAll("div")) if (d.api) return d.api;
  return null;
}
async function cmalWaitApi(el, timeoutMs = 120000) {
  // jupyter-scatter creates its scatterplot in an animation frame after render().
  const t0 = performance.now();
  for (;;) {
    const api = cmalApi(el);
    if (api) return api;
    if (performance.now() - t0 > timeoutMs) return null;
    await cmalSleep(10);
  }
}
function cmalSprite(kind, radius, width, dpr) {
  // One mark as [dx, dy, alpha] triples in device pixels: a ring, or a cross on the diagonals, antialiased.
  const r = radius * dpr, w = width * dpr, ext = Math.ceil(r + w);
  const out = [];
  for (let dy = -ext; dy <= ext; dy++) {
    for (let dx = -ext; dx <= ext; dx++) {
      let d;
      if (kind === "ring") d = Math.abs(Math.hypot(dx, dy) - r);
      else if (Math.max(Math.abs(dx), Math.abs(dy)) > r + w / 2) continue;
      else d = Math.min(Math.abs(dx - dy), Math.abs(dx + dy)) / Math.SQRT2;
      const a = Math.min(1, Math.max(0, w / 2 + 0.5 - d));
      if (a > 0) out.push(dx, dy, Math.round(a * 255));
    }
  }
  return Int16Array.from(out);
}
function cmalRgb(hex) {
  const h = hex.replace("#", "");
  return [0, 2, 4].map((i) => parseInt(h.slice(i, i + 2), 16));
}
function cmalMarks(model, el, api) {
  // The marks are stamped into a bitmap and put on an overlay canvas at once: stroking 10^4 paths instead costs
  // hundreds of milliseconds of rasterization without a GPU.
  const plot = api.get("canvas");
  let layer = el.querySelector("canvas.cmal-marks");
  if (!layer) {
    layer = document.createElement("canvas");
    layer.className = "cmal-marks";
    Object.assign(layer.style, {
      position: "absolute", top: "0", left: "0", width: "100%", height: "100%", pointerEvents: "none",
    });
    plot.parentElement.appendChild(layer);
  }
  const dpr = window.devicePixelRatio || 1;
  const cw = Math.max(1, Math.round(plot.clientWidth * dpr)), ch = Math.max(1, Math.round(plot.clientHeight * dpr));
  if (layer.width !== cw || layer.height !== ch) {
    layer.width = cw;
    layer.height = ch;
  }
  const ctx = layer.getContext("2d");
  const rows = api.get("points");
  const xScale = api.get("xScale"), yScale = api.get("yScale");
  const cand = cmalTyped(model, "cmal_candidates", Uint32Array);
  const batch = cmalTyped(model, "cmal_batch", Uint32Array);
  if (!rows || !rows.length || !xScale || !yScale || !((cand && cand.length) || (batch && batch.length))) {
    ctx.clearRect(0, 0, cw, ch);
    return;
  }
  // Rows hold coordinates scaled to [-1, 1]; the scales map the data range onto the CSS pixels in view.
  const [x0, x1] = model.get("x_scale_domain"), [y0, y1] = model.get("y_scale_domain");
  const style = model.get("cmal_marks_style");
  const img = ctx.createImageData(cw, ch);
  const px = new Uint32Array(img.data.buffer);  // one RGBA pixel per element (little-endian: 0xAABBGGRR)
  const stamp = (indices, sprite, rgb, over) => {
    const color = (rgb[2] << 16) | (rgb[1] << 8) | rgb[0];
    for (const i of indices) {
      const row = rows[i];
      if (!row) continue;
      const cx = Math.round(xScale(x0 + ((row[0] + 1) / 2) * (x1 - x0)) * dpr);
      const cy = Math.round(yScale(y0 + ((row[1] + 1) / 2) * (y1 - y0)) * dpr);
      for (let k = 0; k < sprite.length; k += 3) {
        const x = cx + sprite[k], y = cy + sprite[k + 1];
        if (x < 0 || y < 0 || x >= cw || y >= ch) continue;
        const o = y * cw + x, a = sprite[k + 2];
        if (a > px[o] >>> 24 || (over && a > 127)) px[o] = ((a << 24) | color) >>> 0;
      }
    }
  };
  if (cand && cand.length) {
    const sprite = cmalSprite("ring", style.candidate_radius, style.candidate_width, dpr);
    stamp(cand, sprite, cmalRgb(style.candidate_color), false);
  }
  if (batch && batch.length) {
    const sprite = cmalSprite("cross", style.batch_radius, style.batch_width, dpr);
    stamp(batch, sprite, cmalRgb(style.batch_color), true);  // crosses over rings
  }
  ctx.putImageData(img, 0, 0);
}
async function cmalRender({ model, el }) {
  // Performance marks time the steps: "cmal-render", "cmal-rows", "cmal-api" (jupyter-scatter's scatterplot
  // exists), "cmal-index", "cmal-drawn" (points on screen),
  // "cmal-highlight" and "cmal-marks" (new highlights arrived, painted).
  performance.mark("cmal-render");
  el.classList.add("cmal-scatter");
  // jupyter-scatter sees an empty points value and does not draw; everything else passes through.
  const proxy = {
    get: (key) => (key === "points" ? CMAL_EMPTY : model.get(key)),
    set: (key, value) => model.set(key, value),
    on: (event, callback, context) => {
      if (event !== "change:points") model.on(event, callback, context);
    },
    off: (...args) => model.off(...args),
    save_changes: () => model.save_changes(),
    send: (...args) => model.send(...args),
    widget_manager: model.widget_manager,
  };
  // The rows and the spatial index are started before jupyter-scatter builds its view (DOM, toolbar, WebGL
  // programs), so that the index worker runs meanwhile.
  let prepared = { index: cmalSpatialIndex(model), rows: cmalRows(model) };
  performance.mark("cmal-rows");
  const cleanup = await cmalBase.render({ model: proxy, el });
  let api = null;
  let drawing = Promise.resolve();
  let marks = 0, draws = 0;
  const followMarks = () => {
    if (api && api.get("isPointsDrawn")) cmalMarks(model, el, api);
  };
  const drawMarks = () => {
    // New highlights: "data-cmal-marks" counts them once they are on the canvas (the browser tests wait on it).
    if (!api || !api.get("isPointsDrawn")) return;
    performance.mark("cmal-highlight");
    cmalMarks(model, el, api);
    performance.mark("cmal-marks");
    marks += 1;
    el.dataset.cmalMarks = String(marks);
  };
  const drawPoints = (full) => {
    // One draw at a time (regl-scatterplot refuses overlapping ones); the last request wins.
    drawing = drawing.then(async () => {
      if (!api) return;
      const opts = { zDataType: model.get("color_scale") === "categorical" ? "categorical" : "continuous" };
      let rows;
      if (full || !api.get("isPointsDrawn")) {
        const { index, rows: ready } = prepared || { index: cmalSpatialIndex(model), rows: cmalRows(model) };
        prepared = null;
        rows = ready;
        const sel = cmalTyped(model, "selection", Uint32Array);
        if (sel && sel.length) opts.select = Array.from(sel);
        opts.spatialIndex = await index;
        performance.mark("cmal-index");
      } else {
        rows = api.get("points");
        const color = cmalTyped(model, "cmal_color", Float32Array);
        if (color && color.length === rows.length) for (let i = 0; i < rows.length; i++) rows[i][2] = color[i];
        opts.preventFilterReset = true;
        opts.spatialIndex = api.get("spatialIndex");
      }
      await api.draw(rows, opts);
      performance.mark("cmal-drawn");
      draws += 1;
      el.dataset.cmalDraws = String(draws);
      if (full) el.dataset.cmalReady = "1";
      drawMarks();
    }).catch((err) => console.error("cmal_widgets explorer:", err));
    return drawing;
  };
  const onColor = () => {
    if (prepared) prepared.rows = cmalRows(model);  // not drawn yet: start from the new colours
    drawPoints(false);
  };
  const onPoints = () => {
    prepared = null;
    drawPoints(true);
  };
  model.on("change:cmal_color", onColor);
  model.on("change:points", onPoints);
  model.on("change:cmal_candidates", drawMarks);
  model.on("change:cmal_batch", drawMarks);
  model.on("change:cmal_marks_style", drawMarks);
  api = await cmalWaitApi(el);
  performance.mark("cmal-api");
  if (api) {
    // Marks follow every frame (pan, zoom, resize); a frame of the points costs far more than the marks.
    api.subscribe("draw", followMarks);
    drawPoints(true);
  }
  return () => {
    model.off("change:cmal_color", onColor);
    model.off("change:points", onPoints);
    model.off("change:cmal_candidates", drawMarks);
    model.off("change:cmal_batch", drawMarks);
    model.off("change:cmal_marks_style", drawMarks);
    if (typeof cleanup === "function") cleanup();
  };
}
export default { render: cmalRender };
"""
_EXPORT = re.compile(r"^export\s*\{\s*([A-Za-z_$][\w$]*)\s+as\s+default\s*\};?\s*$", re.MULTILINE)

#: jupyter-scatter 1.x widget state for a plain map: what its view reads, as its own ``Scatter`` would set it, minus
#: what :class:`ScatterPlot` sets per map (points, colours, sizes, ranges, selection). Checked against the installed
#: jupyter-scatter's widget traits by the tests.
JSCATTER_STATE: dict[str, Any] = {
    "annotations": None,
    "axes": False,
    "axes_color": [0, 0, 0, 1],
    "axes_grid": False,
    "axes_labels": False,
    "background_color": [1.0, 1.0, 1.0, 1.0],
    "background_image": None,
    "camera_distance": 1.0,
    "camera_is_fixed": False,
    "camera_rotation": 0.0,
    "camera_target": [0, 0],
    "camera_view": None,
    "color_histogram": None,
    "color_histogram_range": None,
    "color_hover": [0, 0, 0, 1],
    "color_selected": [0, 0.55, 1, 1],
    "color_title": None,
    "connect": False,
    "connection_color": [0, 0, 0, 0.1],
    "connection_color_by": None,
    "connection_color_hover": [0, 0, 0, 0.66],
    "connection_color_selected": [0, 0.55, 1, 1],
    "connection_opacity": 0.1,
    "connection_opacity_by": None,
    "connection_size": 2,
    "connection_size_by": None,
    "dom_element_id": "",
    "event_types": {"TOOLTIP": "tooltip", "VIEW_RESET": "view_reset", "VIEW_SAVE": "view_save"},
    "hovering": None,
    "label_align": "center",
    "label_offset": [0, 0],
    "label_scale_function": "asinh",
    "label_shadow_color": "#ffffff",
    "label_tile_size": 256,
    "label_tiles": ["0,0,0"],
    "labels": None,
    "lasso_brush_size": 24,
    "lasso_color": [0, 0.666666667, 1, 1],
    "lasso_initiator": False,
    "lasso_min_delay": 10,
    "lasso_min_dist": 3.0,
    "lasso_on_long_press": True,
    "lasso_type": "freeform",
    "legend": False,
    "legend_color": [0, 0, 0, 1],
    "legend_encoding": {},
    "legend_position": "top-left",
    "legend_size": "small",
    "mouse_mode": "lasso",
    "non_spatial_points_update": False,
    "opacity_by": None,
    "opacity_domain": {},
    "opacity_histogram": None,
    "opacity_histogram_range": None,
    "opacity_scale": None,
    "opacity_title": None,
    "opacity_unselected": 0.5,
    "prevent_filter_reset": False,
    "regl_scatterplot_options": {},
    "reticle": True,
    "reticle_color": [0, 0, 0, 0.1],
    "size_by": None,
    "size_domain": {},
    "size_histogram": None,
    "size_histogram_range": None,
    "size_scale": None,
    "size_scale_function": "asinh",
    "size_title": None,
    "toolbar_buttons": [
        "pan_zoom",
        "lasso",
        "lasso_type",
        "lasso_brush_size",
        "divider",
        "full_screen",
        "download",
        "reset",
    ],
    "tooltip_color": [1, 1, 1, 1],
    "tooltip_enable": False,
    "tooltip_histograms": False,
    "tooltip_histograms_ranges": {},
    "tooltip_histograms_size": "small",
    "tooltip_preview": None,
    "tooltip_preview_audio_controls": False,
    "tooltip_preview_audio_length": None,
    "tooltip_preview_audio_loop": False,
    "tooltip_preview_image_background_color": "auto",
    "tooltip_preview_image_height": None,
    "tooltip_preview_image_position": None,
    "tooltip_preview_image_size": None,
    "tooltip_preview_text_lines": 3,
    "tooltip_preview_type": "text",
    "tooltip_properties": ["x", "y", "color", "opacity", "size"],
    "tooltip_properties_non_visual_info": {},
    "tooltip_size": "small",
    "transition_points": False,
    "transition_points_duration": 3000,
    "view_download": None,
    "view_sync": None,
    "x_histogram_range": None,
    "x_scale": "linear",
    "x_title": None,
    "y_histogram_range": None,
    "y_scale": "linear",
    "y_title": None,
    "zoom_animation": 500,
    "zoom_level": 0.0,
    "zoom_on_filter": False,
    "zoom_on_selection": False,
    "zoom_padding": 0.33,
    "zoom_to_call_idx": 0,
}
#: Traits holding numpy arrays, sent as binary buffers (jupyter-scatter's ndarray format).
ARRAY_TRAITS = (
    "points",
    "selection",
    "filter",
    "point_order",
    "zoom_to",
    "view_data",
    "lasso_selection_polygon",
    "cmal_color",
    "cmal_candidates",
    "cmal_batch",
)
#: Other traits set per map.
MAP_TRAITS = (
    "color",
    "color_by",
    "color_scale",
    "color_domain",
    "size",
    "opacity",
    "width",
    "height",
    "x_domain",
    "y_domain",
    "x_scale_domain",
    "y_scale_domain",
    "x_histogram",
    "y_histogram",
    "cmal_marks_style",
)


def _compose_esm(bundle: str) -> str:
    """jupyter-scatter's bundle with its default export replaced by the wrapper above."""
    found = list(_EXPORT.finditer(bundle))
    if len(found) != 1:
        raise RuntimeError(
            "jupyter-scatter's bundle does not end in one `export { ... as default }` as 1.x does; "
            'pip install "jupyter-scatter>=1.0,<2" or use Explorer(..., backend="plotly").'
        )
    m = found[0]
    return bundle[: m.start()] + _JS.replace("__CMAL_BASE__", m.group(1)) + bundle[m.end() :]


def _jscatter_dir() -> Path:
    # find_spec locates the package without running its __init__ (which imports matplotlib, pandas and scipy).
    spec = importlib.util.find_spec("jscatter")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("jupyter-scatter is not installed")
    return Path(list(spec.submodule_search_locations)[0])


@functools.cache
def _front_end() -> tuple[str, str]:
    """The widget's JavaScript (jupyter-scatter's bundle plus the explorer's layer) and CSS."""
    root = _jscatter_dir()
    # The bundle ships in jupyter-scatter's wheel: nothing is downloaded, in the kernel or in the browser.
    esm = _compose_esm((root / "bundle.js").read_text(encoding="utf-8"))
    return esm, (root / "bundle.css").read_text(encoding="utf-8")


def scatter_unavailable_reason() -> str | None:
    """Why the scatter backend cannot be used here, or None if it can.

    The backend needs jupyter-scatter 1.x installed, with its front-end bundle in the layout it extends.
    """
    try:
        version = metadata.version("jupyter-scatter")
    except metadata.PackageNotFoundError:
        return "jupyter-scatter is not installed"
    if not version.startswith("1."):
        return f"jupyter-scatter {version} is installed, the explorer supports 1.x"
    try:
        _front_end()
    except (OSError, RuntimeError) as err:
        return f"jupyter-scatter {version}'s front end is not usable: {err}"
    return None


def _array_to_json(value: Any, widget: Any) -> dict[str, Any] | None:
    # jupyter-scatter's ndarray format: a binary buffer with dtype and shape; WebGL has no float64 or int64.
    if value is None:
        return None
    arr = np.asarray(value)
    if arr.dtype == np.float64:
        arr = arr.astype(np.float32)
    elif arr.dtype == np.int64:
        arr = arr.astype(np.int32)
    arr = np.ascontiguousarray(arr)
    return {"view": memoryview(arr), "dtype": str(arr.dtype), "shape": arr.shape}


def _array_from_json(value: Any, widget: Any) -> np.ndarray | None:
    if value is None:
        return None
    return np.frombuffer(value["view"], dtype=value["dtype"]).reshape(value["shape"])


@functools.cache
def scatter_widget_class() -> type:
    """The explorer's jupyter-scatter widget class (an anywidget; built on first use).

    It runs jupyter-scatter's front end (its JavaScript bundle, extended as described above) with a Python side
    of its own: importing jupyter-scatter's Python package costs 1.5 to 3 seconds (matplotlib, pandas, scipy),
    and the explorer needs none of its data-frame API. Synced traits: jupyter-scatter's (names and formats of
    1.x, :data:`JSCATTER_STATE`, :data:`ARRAY_TRAITS`, :data:`MAP_TRAITS`) plus ``cmal_color`` (float32 (n,),
    the colour column, None until it changes), ``cmal_candidates`` and ``cmal_batch`` (uint32 (k,) pool indices
    drawn as rings and crosses) and ``cmal_marks_style`` (their colours and sizes).
    """
    import anywidget
    import traitlets

    esm, css = _front_end()
    body: dict[str, Any] = {
        "__module__": __name__,
        "__doc__": "jupyter-scatter's front end with the explorer's colour column and highlight marks.",
        "_esm": esm,
        "_css": css,
    }
    for name in ARRAY_TRAITS:
        body[name] = traitlets.Any(None, allow_none=True).tag(
            sync=True, to_json=_array_to_json, from_json=_array_from_json
        )
    for name in MAP_TRAITS:
        body[name] = traitlets.Any(None, allow_none=True).tag(sync=True)
    for name, value in JSCATTER_STATE.items():
        body[name] = traitlets.Any(value, allow_none=True).tag(sync=True)
    return type("CmalScatterWidget", (anywidget.AnyWidget,), body)


def _rgba(color: str) -> list[float]:
    """``"#rrggbb"`` as the ``[r, g, b, a]`` floats jupyter-scatter takes."""
    h = color.lstrip("#")
    return [int(h[i : i + 2], 16) / 255 for i in (0, 2, 4)] + [1.0]


def _to_ndc(xy: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[float], list[float]]:
    """x and y scaled to [-1, 1] by one factor (the map keeps its shape), and the data ranges they span."""
    lo, hi = xy.min(axis=0), xy.max(axis=0)
    center, half = (lo + hi) / 2, float((hi - lo).max()) / 2 or 1.0
    x = ((xy[:, 0] - center[0]) / half).astype(np.float32)
    y = ((xy[:, 1] - center[1]) / half).astype(np.float32)
    ranges = [[float(c - half), float(c + half)] for c in center]
    return x, y, ranges[0], ranges[1]


def _histogram(v: np.ndarray, bins: int = 20) -> list[float]:
    """A 20-bin histogram of scaled coordinates, relative to its highest bin (as jupyter-scatter computes it)."""
    counts = np.bincount(np.minimum(((v + 1.0) * (bins / 2)).astype(np.int64), bins - 1), minlength=bins)
    return (counts / max(counts.max(), 1)).tolist()


class ScatterPlot:
    """An :class:`~cmal_widgets.explorer.ExplorerModel` drawn by jupyter-scatter, every point.

    The view :class:`~cmal_widgets.explorer.Explorer` builds for ``backend="scatter"``; it only converts the
    model's arrays into the widget's traits and relays lasso and hover events, the model stays the source of
    truth.

    Parameters
    ----------
    model : ExplorerModel
    width, height : int
        Plot size in pixels.

    Attributes
    ----------
    widget : anywidget.AnyWidget
        The plot widget (:func:`scatter_widget_class`, jupyter-scatter's front end): ``widget.points`` is (n, 3) float32
        (x and y scaled to [-1, 1], the colour value), ``widget.selection`` the outlined points.
    """

    def __init__(self, model: ExplorerModel, *, width: int = 620, height: int = 480) -> None:
        self.model = model
        n = model.n
        x, y, x_range, y_range = _to_ndc(model.xy)
        colors = self._color_traits()
        # x, y and the colour value: regl-scatterplot's valueB column is not used (highlights are marks).
        points = np.empty((n, 3), dtype=np.float32)
        points[:, 0], points[:, 1], points[:, 2] = x, y, colors.pop("cmal_color")
        candidates, batch = self._marks()
        self.widget = scatter_widget_class()(
            points=points,
            **colors,
            cmal_candidates=candidates,
            cmal_batch=batch,
            cmal_marks_style=MARKS_STYLE,
            # Smaller, fainter dots as the map fills up (5 pixels at 0.8 opacity is the plotly backend's look).
            size=4.0 if n < 100_000 else 2.5 if n < 500_000 else 1.5,
            opacity=0.8 if n < 200_000 else 0.6,
            width=int(width),
            height=int(height),
            selection=np.asarray(model.selected, dtype=np.uint32),
            x_domain=x_range,
            y_domain=y_range,
            x_scale_domain=x_range,
            y_scale_domain=y_range,
            # jupyter-scatter's view reads x and y histograms (for its tooltip) even with the tooltip off.
            x_histogram=_histogram(x),
            y_histogram=_histogram(y),
        )

    def _color_traits(self) -> dict[str, Any]:
        """The widget's colour traits and the colour column (``cmal_color``, float32 (n,)) for the model."""
        c = self.model.color_values()
        if c["categorical"]:
            return {
                "cmal_color": c["values"].astype(np.float32),
                "color": [_rgba(h) for h in c["palette"]],
                "color_by": "valueA",
                "color_scale": "categorical",
                "color_domain": {str(i): i for i in range(len(c["palette"]))},
            }
        from matplotlib import colormaps

        v = np.asarray(c["values"], dtype=np.float64)
        lo, hi = float(v.min()), float(v.max())
        scaled = (v - lo) / (hi - lo) if hi > lo else np.zeros_like(v)
        return {
            "cmal_color": scaled.astype(np.float32),
            "color": colormaps["viridis"](np.linspace(0, 1, 256)).tolist(),  # plotly's Viridis, as in that backend
            "color_by": "valueA",
            "color_scale": "linear",
            "color_domain": [lo, hi],
        }

    def _marks(self) -> tuple[np.ndarray, np.ndarray]:
        m = self.model
        return np.asarray(m.candidates, dtype=np.uint32), np.asarray(m.batch, dtype=np.uint32)

    def set_colors(self) -> None:
        """Send the model's colours: the palette or colour map, and one float32 a point (not the coordinates)."""
        traits = self._color_traits()
        with self.widget.hold_sync():
            for name, value in traits.items():
                setattr(self.widget, name, value)

    def set_highlight(self) -> None:
        """Send the candidates and the batch (pool indices, 4 bytes each), drawn as rings and crosses over the
        plot without redrawing its points."""
        candidates, batch = self._marks()
        # One message: the browser must never draw new candidates with the old batch.
        with self.widget.hold_sync():
            self.widget.cmal_candidates = candidates
            self.widget.cmal_batch = batch

    def set_selection(self, indices: np.ndarray) -> None:
        """Outline ``indices`` (pool indices, shape (k,)) as jupyter-scatter's selection."""
        new = np.asarray(indices, dtype=np.uint32)
        # A lasso arrives in the browser's order and comes back sorted: the same set is not sent again.
        if not np.array_equal(np.sort(self.selected()), np.sort(new)):
            self.widget.selection = new

    def selected(self) -> np.ndarray:
        """The pool indices selected in the browser, shape (k,), int64."""
        sel = self.widget.selection
        return np.empty(0, dtype=np.int64) if sel is None else np.asarray(sel, dtype=np.int64)

    def on_lasso(self, callback: Callable[[np.ndarray], Any]) -> None:
        """Call ``callback(indices)`` with the selected pool indices, shape (k,), when the browser's selection
        changes (a lasso, a click, Escape)."""

        def changed(change: dict[str, Any]) -> None:
            new = np.empty(0, dtype=np.int64) if change["new"] is None else np.asarray(change["new"], np.int64)
            if not np.array_equal(np.sort(new), self.model.selected):
                callback(new)

        self.widget.observe(changed, names="selection")

    def on_hover(self, callback: Callable[[int | None], Any]) -> None:
        """Call ``callback(index)`` with the hovered pool index, or None when the pointer leaves the points."""
        self.widget.observe(lambda change: callback(change["new"]), names="hovering")
