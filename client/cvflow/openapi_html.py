"""An OpenAPI 3.x document as a readable HTML reference, with the standard library alone.

One renderer for both servers: the hub's ``/api/docs`` wraps :func:`reference` in the site's
layout, the runner's ``/docs`` serves :func:`page` (the same body with a small inline stylesheet).
Operations are grouped by tag behind a table of contents; each has an anchor (``#op-`` and its
``operationId``), its method and path, summary and description, who may call it (the
``x-cvflow-access`` extension and the security requirement), its parameters, request body and
responses (schemas shown as nested properties, ``$ref`` resolved down to :data:`MAX_DEPTH`
levels and never round a cycle), and the error codes each answer can carry. No script runs and
nothing is loaded from elsewhere. Every string from the document is escaped.
"""

from __future__ import annotations

import json
import re
from html import escape
from typing import Any

#: How deep nested schemas are drawn; deeper ones are named, not expanded.
MAX_DEPTH = 5

_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
_CODE_SPAN = re.compile(r"`([^`]+)`")
_ERROR_ITEM = re.compile(r"`(\w+)`: ([^;]*)")


def _text(value: Any) -> str:
    """Escaped text, with ``code`` spans (the documents' only markup) as ``<code>``."""
    return _CODE_SPAN.sub(r"<code>\1</code>", escape(str(value)))


def _anchor(value: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]*[^A-Za-z0-9_-][^A-Za-z0-9_]*", "-", value).strip("-") or "x"


def operations(spec: dict[str, Any]) -> list[tuple[str, str, str, dict[str, Any]]]:
    """``(tag, method, path, operation)`` for every operation, in the document's order."""
    out = []
    for path, item in (spec.get("paths") or {}).items():
        for method in _METHODS:
            op = item.get(method) if isinstance(item, dict) else None
            if isinstance(op, dict):
                tags = op.get("tags") or ["other"]
                out.append((str(tags[0]), method, str(path), op))
    return out


def _resolve(spec: dict[str, Any], ref: str) -> dict[str, Any] | None:
    if not ref.startswith("#/"):
        return None
    node: Any = spec
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node if isinstance(node, dict) else None


def _type(schema: dict[str, Any]) -> str:
    if "$ref" in schema:
        return str(schema["$ref"]).rsplit("/", 1)[-1]
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = " or ".join(str(k) for k in kind)
    if kind == "array" and isinstance(schema.get("items"), dict):
        return f"array of {_type(schema['items'])}"
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return " or ".join(_type(s) for s in schema[key] if isinstance(s, dict))
    text = str(kind) if kind else ("object" if "properties" in schema else "any")
    return f"{text} ({schema['format']})" if "format" in schema else text


class _Schemas:
    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec

    def render(self, schema: Any, depth: int = 0, seen: tuple[str, ...] = ()) -> str:
        """The schema's type line and, for objects and arrays, its members as a nested list."""
        if not isinstance(schema, dict):
            return ""
        kind = f'<span class="api-type">{_text(_type(schema))}</span>'
        return kind + self._notes(schema) + self.members(schema, depth, seen)

    def _notes(self, schema: dict[str, Any]) -> str:
        notes = []
        if schema.get("description"):
            notes.append(_text(schema["description"]))
        if "default" in schema:
            notes.append(f"default <code>{escape(json.dumps(schema['default']))}</code>")
        if isinstance(schema.get("enum"), list):
            notes.append("one of " + ", ".join(f"<code>{escape(str(v))}</code>" for v in schema["enum"]))
        for key, word in (("minimum", "at least"), ("maximum", "at most"),
                          ("minLength", "length at least"), ("maxLength", "length at most"), ("pattern", "pattern")):
            if key in schema:
                notes.append(f"{word} <code>{escape(str(schema[key]))}</code>")
        return f' <span class="api-note">{"; ".join(notes)}</span>' if notes else ""

    def members(self, schema: dict[str, Any], depth: int, seen: tuple[str, ...]) -> str:
        if "$ref" in schema:
            ref = str(schema["$ref"])
            target = _resolve(self.spec, ref)
            if target is None:
                return ""
            if ref in seen or depth >= MAX_DEPTH:
                return f' <span class="api-note">(as above: <code>{escape(ref.rsplit("/", 1)[-1])}</code>)</span>'
            inner = self._notes(target) + self.members(target, depth, (*seen, ref))
            return inner
        if depth >= MAX_DEPTH:
            return ""
        items = []
        required = set(schema.get("required") or ())
        for name, prop in (schema.get("properties") or {}).items():
            mark = ' <span class="api-required">required</span>' if name in required else ""
            items.append(f"<li><code>{escape(str(name))}</code>{mark} {self.render(prop, depth + 1, seen)}</li>")
        if isinstance(schema.get("items"), dict):
            inner = self.members(schema["items"], depth + 1, seen)
            if inner:
                items.append(f"<li>each item:{inner}</li>")
        for key, word in (("anyOf", "any of"), ("oneOf", "one of"), ("allOf", "all of")):
            subs = [s for s in schema.get(key) or () if isinstance(s, dict) and s.get("type") != "null"]
            if len(subs) > 1 or (subs and self.members(subs[0], depth + 1, seen)):
                rendered = "".join(f"<li>{self.render(s, depth + 1, seen)}</li>" for s in subs)
                items.append(f'<li>{word}:<ul class="api-schema">{rendered}</ul></li>')
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict) and extra:
            items.append(f"<li>each other key: {self.render(extra, depth + 1, seen)}</li>")
        return f'<ul class="api-schema">{"".join(items)}</ul>' if items else ""


def _access(op: dict[str, Any]) -> str:
    parts = []
    access = op.get("x-cvflow-access")
    if isinstance(access, dict):
        facts = [f"scope <code>{escape(str(access.get('scope')))}</code>"]
        if access.get("role"):
            facts.append(f"role: {escape(str(access['role']))}")
        if access.get("target"):
            facts.append(f"target: <code>{escape(str(access['target']))}</code>")
        parts.append(", ".join(facts))
    security = op.get("security")
    if security is None:
        if isinstance(access, dict):
            parts.append("no token needed")
    elif any(not req for req in security):
        parts.append("a token is optional")
    else:
        parts.append("needs a token")
    if not parts:
        return ""
    return f'<p class="api-access"><strong>Who may call it:</strong> {"; ".join(parts)}</p>'


def _error_codes(response: dict[str, Any]) -> list[tuple[str, str]]:
    """The error codes a response names: its examples' keys, or ```code`: text`` in its description."""
    out: list[tuple[str, str]] = []
    for media in (response.get("content") or {}).values():
        for name, example in (media.get("examples") or {}).items():
            value = example.get("value") if isinstance(example, dict) else None
            message = value.get("error", {}).get("message", "") if isinstance(value, dict) else ""
            out.append((str(name), str(message)))
    if not out:
        out = [(m.group(1), m.group(2).strip()) for m in _ERROR_ITEM.finditer(str(response.get("description", "")))]
    return out


def _operation(spec: dict[str, Any], schemas: _Schemas, anchor: str, method: str, path: str,
               op: dict[str, Any]) -> str:
    html = [f'<article class="api-op" id="{anchor}">',
            f'<h3><a class="api-anchor" href="#{anchor}"><span class="api-method api-{method}">{method.upper()}</span>'
            f" <code>{escape(path)}</code></a></h3>"]
    if op.get("summary"):
        html.append(f'<p class="api-summary">{_text(op["summary"])}</p>')
    if op.get("description"):
        html.append(f"<p>{_text(op['description'])}</p>")
    html.append(_access(op))
    params = [p for p in op.get("parameters") or () if isinstance(p, dict)]
    if params:
        rows = "".join(
            f"<tr><td><code>{escape(str(p.get('name')))}</code></td><td>{escape(str(p.get('in')))}</td>"
            f"<td>{'yes' if p.get('required') else 'no'}</td><td>{schemas.render(p.get('schema') or {}, 1)}</td>"
            f"<td>{_text(p.get('description') or '')}</td></tr>" for p in params)
        html.append('<h4>Parameters</h4><table class="api-params"><thead><tr><th>Name</th><th>In</th>'
                    f"<th>Required</th><th>Type</th><th>Description</th></tr></thead><tbody>{rows}</tbody></table>")
    body = op.get("requestBody")
    if isinstance(body, dict):
        html.append("<h4>Request body</h4>")
        for ctype, media in (body.get("content") or {}).items():
            html.append(f'<div class="api-media"><p><code>{escape(str(ctype))}</code></p>'
                        f"{schemas.render((media or {}).get('schema') or {})}</div>")
    responses = op.get("responses") or {}
    if responses:
        html.append('<h4>Responses</h4><dl class="api-responses">')
        for status, response in responses.items():
            if not isinstance(response, dict):
                continue
            codes = _error_codes(response) if str(status)[:1] in ("4", "5") else []
            html.append(f"<dt><code>{escape(str(status))}</code></dt><dd>")
            if codes:
                html.append('<ul class="api-errors">' + "".join(
                    f"<li><code>{escape(c)}</code>: {_text(t)}</li>" for c, t in codes) + "</ul>")
            else:
                html.append(f"<p>{_text(response.get('description', ''))}</p>")
                for ctype, media in (response.get("content") or {}).items():
                    html.append(f'<div class="api-media"><p><code>{escape(str(ctype))}</code></p>'
                                f"{schemas.render((media or {}).get('schema') or {})}</div>")
            html.append("</dd>")
        html.append("</dl>")
    html.append("</article>")
    return "\n".join(h for h in html if h)


def reference(spec: dict[str, Any], *, json_url: str | None = None) -> str:
    """The reference as an HTML fragment: a title, a table of contents, the operations by tag,
    and the table of error codes when the document lists them (``x-error-codes``)."""
    info = spec.get("info") or {}
    schemas = _Schemas(spec)
    ops = operations(spec)
    tags: dict[str, list[tuple[str, str, str, dict[str, Any]]]] = {}
    used: set[str] = set()
    for tag, method, path, op in ops:
        anchor = "op-" + _anchor(str(op.get("operationId") or f"{method}-{path}"))
        while anchor in used:
            anchor += "-2"
        used.add(anchor)
        tags.setdefault(tag, []).append((anchor, method, path, op))
    html = ['<div class="api-ref">',
            f'<h1>{escape(str(info.get("title", "API")))} API reference</h1>',
            f'<p class="api-version">Version <code>{escape(str(info.get("version", "")))}</code>'
            + (f' · <a href="{escape(json_url)}">the OpenAPI document</a>' if json_url else "") + "</p>"]
    for para in str(info.get("description", "")).split("\n\n"):
        if para.strip():
            html.append(f"<p>{_text(para.strip())}</p>")
    toc = ['<nav class="api-toc" aria-labelledby="api-toc-h"><h2 id="api-toc-h">Contents</h2><ul>']
    for tag, entries in tags.items():
        toc.append(f'<li><a href="#tag-{_anchor(tag)}">{escape(tag)}</a><ul>')
        for a, m, p, op in entries:
            summary = f" \N{EN DASH} {_text(op['summary'])}" if op.get("summary") else ""
            toc.append(f'<li><a href="#{a}"><span class="api-method api-{m}">{m.upper()}</span>'
                       f" <code>{escape(p)}</code></a>{summary}</li>")
        toc.append("</ul></li>")
    codes = spec.get("x-error-codes")
    if isinstance(codes, dict) and codes:
        toc.append('<li><a href="#error-codes">Error codes</a></li>')
    toc.append("</ul></nav>")
    html += toc
    for tag, entries in tags.items():
        html.append(f'<section class="api-tag" id="tag-{_anchor(tag)}" aria-labelledby="tag-{_anchor(tag)}-h">'
                    f'<h2 id="tag-{_anchor(tag)}-h">{escape(tag)}</h2>')
        html += [_operation(spec, schemas, *entry) for entry in entries]
        html.append("</section>")
    if isinstance(codes, dict) and codes:
        rows = "".join(f"<tr><td><code>{escape(str(c))}</code></td><td>{escape(str(v.get('status', '')))}</td>"
                       f"<td>{_text(v.get('description', ''))}</td></tr>"
                       for c, v in sorted(codes.items()) if isinstance(v, dict))
        html.append('<section class="api-tag" id="error-codes" aria-labelledby="error-codes-h">'
                    '<h2 id="error-codes-h">Error codes</h2><p>Every error body is '
                    '<code>{"error": {"code": ..., "message": ...}}</code>.</p><table class="api-params"><thead><tr>'
                    f"<th>Code</th><th>Status</th><th>Meaning</th></tr></thead><tbody>{rows}</tbody></table></section>")
    html.append("</div>")
    return "\n".join(html)


STYLE = """
body{font:16px/1.5 system-ui,sans-serif;margin:0 auto;max-width:60rem;padding:1rem;color:#1b1f24}
code{font-family:ui-monospace,monospace;font-size:.92em;background:#f3f4f6;padding:0 .2em;border-radius:3px}
a{color:#0b57d0}
.api-op{border-top:1px solid #d8dee4;padding:.5rem 0}
.api-op h3 a{color:inherit;text-decoration:none}
.api-method{display:inline-block;min-width:3.5em;font:600 .8em ui-monospace,monospace;text-align:center;
 padding:.1em .3em;border-radius:3px;background:#e6edf3}
.api-get{background:#dbeafe}.api-post{background:#dcfce7}.api-put{background:#fef3c7}
.api-delete{background:#fee2e2}.api-patch{background:#ede9fe}
.api-schema{margin:.2em 0;padding-left:1.2em}
.api-type{color:#57606a;font-style:italic}.api-note{color:#57606a}
.api-required{color:#b42318;font-size:.85em}
table{border-collapse:collapse;width:100%}th,td{border:1px solid #d8dee4;padding:.25em .5em;text-align:left;
 vertical-align:top}
.api-toc ul ul{font-size:.92em}
"""


def page(spec: dict[str, Any], *, json_url: str | None = None) -> str:
    """A whole HTML document: :func:`reference` with :data:`STYLE` inline."""
    title = escape(str((spec.get("info") or {}).get("title", "API")))
    return ("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{title} \N{EN DASH} API reference</title><style>{STYLE}</style></head>"
            f"<body><main>{reference(spec, json_url=json_url)}</main></body></html>\n")
