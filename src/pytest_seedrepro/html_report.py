"""``--seedrepro-html=PATH``: one self-contained page a person reads after a drift.

No external assets and no network: the style and the few lines of script are
inline. A header with the run's mode, seed, policy, fingerprints and totals;
one row per ``seeded_llm`` test with its verdict, seed, parameters, fingerprint
and model (old -> new), tokens; for the call that diverged, the old and new
output side by side with a word-level diff; filters by verdict (also from
the address: ``report.html#regression``); the calls answered with a client
error and the ``--seedrepro-repeat`` figures, when there are any. Plain
functions from the summary's data to text.
"""

from __future__ import annotations

import difflib
import html
import json
import re
from collections.abc import Iterable
from typing import Any

#: Verdicts in the order the filters show them, with the label a person reads.
VERDICTS = {
    "regression": "regression",
    "drift-failed": "drift: failed",
    "drift-skipped": "drift: skipped",
    "drift-warned": "drift: warned",
    "failed": "failed",
    "skipped": "skipped",
    "passed": "passed",
}

_STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #1d232a; }
h1 { font-size: 1.4em; margin: 0 0 .3em; }
.meta { color: #4a5560; margin-bottom: 1em; }
.meta b { color: #1d232a; }
.filters label { margin-right: 1em; white-space: nowrap; }
table { border-collapse: collapse; width: 100%; margin-top: .8em; }
th, td { border-bottom: 1px solid #dde2e6; padding: .35em .5em; text-align: left; vertical-align: top; }
th { background: #f3f5f7; }
tr.test[hidden], tr.detail[hidden] { display: none; }
.verdict { font-weight: 600; border-radius: 3px; padding: 0 .4em; white-space: nowrap; }
.v-passed { background: #dff3e4; } .v-failed, .v-regression, .v-drift-failed { background: #fbe1e1; }
.v-skipped, .v-drift-skipped { background: #fff1cc; } .v-drift-warned { background: #ffe6c7; }
code { font-size: 12px; }
.diff { display: grid; grid-template-columns: 1fr 1fr; gap: .8em; }
.diff pre { white-space: pre-wrap; margin: 0; padding: .5em; background: #f8f9fa; border: 1px solid #dde2e6; }
del { background: #f9c9c9; text-decoration: line-through; }
ins { background: #c8efd2; text-decoration: none; }
.note { color: #4a5560; font-size: 12px; }
"""

_SCRIPT = """
function applyFilters() {
  var shown = {};
  document.querySelectorAll('.filters input').forEach(function (box) { shown[box.value] = box.checked; });
  document.querySelectorAll('tr.test, tr.detail').forEach(function (row) {
    row.hidden = !shown[row.dataset.verdict];
  });
  document.getElementById('shown').textContent =
    document.querySelectorAll('tr.test:not([hidden])').length;
}
document.querySelectorAll('.filters input').forEach(function (box) {
  box.addEventListener('change', applyFilters);
});
var only = decodeURIComponent(location.hash.slice(1));
if (only) {
  document.querySelectorAll('.filters input').forEach(function (box) { box.checked = box.value === only; });
}
applyFilters();
"""


def _words(text: str) -> list[str]:
    return re.findall(r"\s+|[^\s]+", text)


def word_diff(old: str, new: str) -> tuple[str, str]:
    """The old and new texts as HTML, words removed in ``<del>``, words added in ``<ins>``."""
    a, b = _words(old), _words(new)
    left: list[str] = []
    right: list[str] = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        removed, added = html.escape("".join(a[i1:i2])), html.escape("".join(b[j1:j2]))
        if tag == "equal":
            left.append(removed)
            right.append(added)
            continue
        if removed:
            left.append(f"<del>{removed}</del>")
        if added:
            right.append(f"<ins>{added}</ins>")
    return "".join(left), "".join(right)


def _arrow(old: Any, new: Any) -> str:
    if old == new or old is None:
        return html.escape(str(new if new is not None else "-"))
    return f"{html.escape(str(old))} &rarr; {html.escape(str(new))}"


def _row(nodeid: str, data: dict[str, Any], pending: bool = False) -> str:
    verdict = str(data.get("verdict", "passed"))
    divergence = data.get("divergence") or {}
    fingerprints = data.get("fingerprints") or []
    old_fp, new_fp = divergence.get("old_fingerprint"), divergence.get("new_fingerprint")
    fingerprint = _arrow(old_fp, new_fp) if divergence else html.escape(", ".join(fingerprints) or "-")
    models = data.get("models") or []
    model = (
        _arrow(divergence.get("old_model"), divergence.get("new_model"))
        if divergence
        else html.escape(", ".join(models) or "-")
    )
    params = json.dumps(data.get("params") or {}, sort_keys=True)
    cells = [
        f'<td><span class="verdict v-{verdict}">{html.escape(VERDICTS.get(verdict, verdict))}</span></td>',
        f"<td><code>{html.escape(nodeid)}</code>{_accept(nodeid) if pending else ''}</td>",
        f"<td>{html.escape(str(data.get('seed')))}</td>",
        f"<td><code>{html.escape(params)}</code></td>",
        f"<td>{fingerprint}</td>",
        f"<td>{model}</td>",
        f"<td>{int(data.get('tokens', 0)) + int(data.get('replayed_tokens', 0))}</td>",
    ]
    row = f'<tr class="test" data-verdict="{verdict}">{"".join(cells)}</tr>'
    if divergence.get("old_output") is None or divergence.get("new_output") is None:
        return row
    left, right = word_diff(str(divergence["old_output"]), str(divergence["new_output"]))
    consequences = divergence.get("consequences") or []
    after = (
        f'<p class="note">after it, its consequences: {html.escape("; ".join(consequences))}</p>'
        if consequences
        else ""
    )
    detail = (
        f'<tr class="detail" data-verdict="{verdict}"><td></td><td colspan="6">'
        f'<p class="note">{html.escape(str(divergence.get("message", "")))}</p>'
        f'<div class="diff"><div><b>snapshot</b><pre class="old">{left}</pre></div>'
        f'<div><b>this run</b><pre class="new">{right}</pre></div></div>{after}</td></tr>'
    )
    return row + detail


def _accept(nodeid: str) -> str:
    """The command that accepts the change this run left pending for the test (``seedrepro review``)."""
    from pytest_seedrepro.review import accept_command

    return f'<div class="note accept">accept: <code>{html.escape(accept_command(nodeid))}</code></div>'


def _repeat_table(rows: Iterable[tuple[str, dict[str, Any]]]) -> str:
    body = "".join(
        f"<tr><td><code>{html.escape(nodeid)}</code></td><td>{html.escape(str(f['call']))}</td>"
        f"<td>{html.escape(str(f['seed']))}</td><td>{f['identical']}/{f['n']}</td><td>{f['distinct']}</td>"
        f"<td>{float(f['similarity']):.2f}</td>"
        f"<td>{html.escape(', '.join(f['fingerprints']) or '-')}</td></tr>"
        for nodeid, f in rows
    )
    if not body:
        return ""
    return (
        '<h2>Repeat</h2><table class="repeat"><tr><th>test</th><th>call</th><th>seed</th><th>identical</th>'
        f"<th>distinct</th><th>similarity</th><th>fingerprints</th></tr>{body}</table>"
    )


def _draws_table(rows: Iterable[tuple[str, dict[str, Any]]]) -> str:
    body = "".join(
        f"<tr><td><code>{html.escape(nodeid)}</code></td><td>{f['passed']}/{f['n']}</td>"
        f"<td>{html.escape(str(f['min_pass']))}</td>"
        f"<td>{html.escape(', '.join(f'{d}: {o}' for d, o in enumerate(f['outcomes'])))}</td></tr>"
        for nodeid, f in rows
    )
    if not body:
        return ""
    return (
        '<h2>Draws</h2><table class="draws"><tr><th>test</th><th>passed</th><th>min_pass</th>'
        f"<th>outcomes</th></tr>{body}</table>"
    )


def _client_errors_table(rows: Iterable[tuple[str, int, int, str]]) -> str:
    body = "".join(
        f"<tr><td><code>{html.escape(nodeid)}</code></td><td>{call}</td><td>{status}</td>"
        f"<td>{html.escape(message)}</td></tr>"
        for nodeid, call, status, message in rows
    )
    if not body:
        return ""
    return (
        '<h2>Client errors</h2><p class="note">Calls answered with a client error (400, 404, 422); '
        "a test whose code caught one can still pass.</p>"
        '<table class="client-errors"><tr><th>test</th><th>call</th><th>status</th><th>message</th></tr>'
        f"{body}</table>"
    )


def render(
    *,
    settings: dict[str, Any],
    totals: dict[str, Any],
    tests: list[tuple[str, dict[str, Any]]],
    repeat: list[tuple[str, dict[str, Any]]],
    client_errors: list[tuple[str, int, int, str]] | None = None,
    draws: list[tuple[str, dict[str, Any]]] | None = None,
    pending: set[str] | None = None,
) -> str:
    """The whole page; ``client_errors``: (test, call, status, message) of each call answered with one.

    ``draws``: (test, figures) of each ``@pytest.mark.draws`` test. ``pending``: the tests whose
    change the run kept for review; their rows show the command that accepts it.
    """
    pending = pending or set()
    client_errors = client_errors or []
    counts: dict[str, int] = {}
    for _, data in tests:
        verdict = str(data.get("verdict", "passed"))
        counts[verdict] = counts.get(verdict, 0) + 1
    filters = "".join(
        f'<label><input type="checkbox" value="{verdict}" checked> {html.escape(label)} '
        f'(<span class="count">{counts.get(verdict, 0)}</span>)</label>'
        for verdict, label in VERDICTS.items()
    )
    fingerprints = ", ".join(f"{fp} ({n})" for fp, n in sorted(totals.get("fingerprints", {}).items())) or "-"
    meta = (
        f"<b>mode</b> {html.escape(str(settings['mode']))} &middot; "
        f"<b>default seed</b> {html.escape(str(settings['default_seed']))} &middot; "
        f"<b>on fingerprint change</b> {html.escape(str(settings['on_fingerprint_change']))}<br>"
        f"<b>tests</b> {len(tests)} &middot; <b>calls</b> {totals.get('replayed', 0)} replayed, "
        f"{totals.get('live', 0)} live &middot; <b>tokens</b> {totals.get('tokens', 0)} live &middot; "
        f"<b>fingerprints seen</b> {html.escape(fingerprints)}"
        f" &middot; <b>client errors</b> {len(client_errors)}"
    )
    rows = "".join(_row(nodeid, data, nodeid in pending) for nodeid, data in tests)
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        "<title>pytest-seedrepro report</title>"
        f"<style>{_STYLE}</style></head><body>"
        f'<h1>pytest-seedrepro report</h1><div class="meta">{meta}</div>'
        f'<div class="filters">{filters} &middot; showing <span id="shown">{len(tests)}</span></div>'
        '<table class="tests"><tr><th>verdict</th><th>test</th><th>seed</th><th>params</th>'
        f"<th>fingerprint</th><th>model</th><th>tokens</th></tr>{rows}</table>"
        f"{_client_errors_table(client_errors)}"
        f"{_draws_table(draws or [])}"
        f"{_repeat_table(repeat)}"
        f"<script>{_SCRIPT}</script></body></html>\n"
    )
