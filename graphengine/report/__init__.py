"""Reports a person can look at: a self-contained HTML page and attribution graphs.

- :func:`write_html` / :func:`render_html`: tokens as a heatmap, the layer × position grid with
  the top (and k-best) paths drawn through it, the per-layer K/Q/V/skip flow, exact summary figures.
- :func:`attribution_graph`: the union of the best paths of chosen tokens rolled up into
  (layer, position, component) nodes and weighted edges, as DOT, networkx or circuit-tracer JSON.

See docs/report.md for the JSON schema versions.
"""

from .attribution import GRAPH_SCHEMA_VERSION, AttributionGraph, attribution_graph
from .figures import figures, report_backward, start_node
from .html import REPORT_SCHEMA_VERSION, render_html, write_html

__all__ = ["write_html", "render_html", "figures", "report_backward", "start_node", "attribution_graph",
           "AttributionGraph", "GRAPH_SCHEMA_VERSION", "REPORT_SCHEMA_VERSION"]
