"""IPython start-up file of every kernel the docs build starts (conf.py points IPYTHONDIR at a copy of it).

Progress bars: ``tqdm.auto`` would draw an ipywidgets bar, which a page cannot show, and tqdm's text bar would
leave every update on the page; here a bar prints one line when it closes, its final state
("rounds: 100%|...| 30/30 [02:47<00:00]"). Bars that clear themselves (``leave=False``) print nothing.

Figures become HTML that calls the site's own copy of plotly.js (``_static/plotly.min.js``, added to notebook
pages by conf.py): no CDN, and one copy of the library for the whole site instead of 4.8 MB inlined in every page.
plotly's built-in HTML renderers cannot do this: they inline plotly.js or fetch it, and always add a MathJax
``<script>`` from a CDN.
"""

import io
import sys

import plotly.io as pio
import tqdm.auto
import tqdm.std
from plotly.io.base_renderers import MimetypeRenderer

# The text column of a page is about 720 px wide. A figure drawn wider for JupyterLab (two panels side by side)
# would be cut off there, so it gives up its fixed width and fills the column instead.
COLUMN_PX = 720


class SiteRenderer(MimetypeRenderer):
    def to_mimebundle(self, fig_dict):  # noqa: ANN001, ANN201 - plotly's renderer interface
        layout = fig_dict.get("layout", {})
        if (layout.get("width") or 0) > COLUMN_PX:
            fig_dict = {**fig_dict, "layout": {k: v for k, v in layout.items() if k != "width"}}
        return {
            "text/html": pio.to_html(
                fig_dict,
                include_plotlyjs=False,
                include_mathjax=False,
                full_html=False,
                default_width="100%",
                default_height=525,
                validate=False,
            )
        }


pio.renderers["cmal-site"] = SiteRenderer()
pio.renderers.default = "cmal-site"


class SiteTqdm(tqdm.std.tqdm):
    def __init__(self, *args, **kwargs):  # noqa: ANN002, ANN003 - tqdm's signature
        kwargs["file"] = self._cmal_buffer = io.StringIO()
        kwargs.setdefault("ascii", False)  # a StringIO has no encoding, which would make tqdm draw with "#"
        self._cmal_done = False
        super().__init__(*args, **kwargs)

    def close(self) -> None:
        show = not (self._cmal_done or self.disable) and self.leave  # close() itself sets disable
        super().close()
        if not show:
            return
        self._cmal_done = True
        lines = self._cmal_buffer.getvalue().replace("\r", "\n").split("\n")
        final = next((line.rstrip() for line in reversed(lines) if line.strip()), "")
        if final:
            sys.stderr.write(final + "\n")


def site_trange(*args, **kwargs):  # noqa: ANN002, ANN003, ANN201
    return SiteTqdm(range(*args), **kwargs)


tqdm.auto.tqdm, tqdm.auto.trange = SiteTqdm, site_trange
