"""IPython start-up file of every kernel the docs build starts (conf.py points IPYTHONDIR at a copy of it).

Progress bars: ``tqdm.auto`` would draw an ipywidgets bar, which a page cannot show; here it is tqdm's text bar,
whose updates the build collapses to the final line ("rounds: 100%|...| 30/30 [...]").

Figures become HTML that calls the site's own copy of plotly.js (``_static/plotly.min.js``, added to notebook
pages by conf.py): no CDN, and one copy of the library for the whole site instead of 4.8 MB inlined in every page.
plotly's built-in HTML renderers cannot do this: they inline plotly.js or fetch it, and always add a MathJax
``<script>`` from a CDN.
"""

import plotly.io as pio
import tqdm.auto
import tqdm.std
from plotly.io.base_renderers import MimetypeRenderer


class SiteRenderer(MimetypeRenderer):
    def to_mimebundle(self, fig_dict):  # noqa: ANN001, ANN201 - plotly's renderer interface
        return {"text/html": pio.to_html(fig_dict, include_plotlyjs=False, include_mathjax=False, full_html=False,
                                         default_width="100%", default_height=525, validate=False)}


pio.renderers["cmal-site"] = SiteRenderer()
pio.renderers.default = "cmal-site"

tqdm.auto.tqdm, tqdm.auto.trange = tqdm.std.tqdm, tqdm.std.trange
