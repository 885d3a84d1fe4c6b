"""The look of the project's HTML reports, shared by the pipeline's report
(components/evaluation/report_html.py) and the public one
(components/evaluation/public_report.py): one style sheet, tables and inline images.

Self-contained pages: plots are data URIs and nothing is fetched from outside.
"""

import base64
import html
from typing import List, Optional

STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1000px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.45}
h1{font-size:1.6em}h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:1.8em}
table{border-collapse:collapse;margin:.6em 0;font-size:.9em}td,th{border:1px solid #ccc;
padding:.25em .6em;text-align:left;vertical-align:top}th{background:#f3f5f7}
img{max-width:100%;display:block;margin:.8em 0}.headline{display:flex;gap:1em;flex-wrap:wrap}
.card{flex:1 1 280px;border-radius:8px;padding:1em;border:1px solid #ccc}
.card h2{border:none;margin:0 0 .3em 0;font-size:1.15em}.big{font-size:2em;font-weight:600}
.pass,.meets,.beats{background:#eaf6ec;border-color:#7bc38a}.fail,.below,.behind{background:#fdf0e6;
border-color:#e3a06b}.inconclusive,.unknown{background:#f4f4f4}.level{background:#eef3fa;
border-color:#8aa9d6}small{color:#555}
.private{background:#fdecea;border:2px solid #c62828;border-radius:8px;padding:.8em 1em}
"""



def table(header: List[str], rows: List[List[str]]) -> str:
  head = "".join(f"<th>{h}</th>" for h in header)
  body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
  return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def image(png: Optional[bytes], alt: str) -> str:
  if not png:
    return ""
  data = base64.b64encode(png).decode("ascii")
  return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'
