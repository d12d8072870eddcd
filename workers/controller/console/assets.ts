// The admin console's one stylesheet and one script, served by the Worker at /admin/assets/ (same
// origin as every page, so the CSP can say `script-src 'self'; style-src 'self'` and nothing else).
// The script only makes live parts live (connector status without a reload, confirm before a
// delete); every page works without it.

export const CONSOLE_CSS = `
:root{--fg:#1d2433;--muted:#5b6473;--line:#dfe3ea;--bg:#f6f7f9;--card:#fff;--accent:#2456d3;--ok:#137333;--bad:#b00020;--warn:#9a6700}
*{box-sizing:border-box}
body{margin:0;font:15px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;color:var(--fg);background:var(--bg)}
a{color:var(--accent)}
a:focus-visible,button:focus-visible,input:focus-visible,select:focus-visible{outline:3px solid #8fb0ff;outline-offset:2px}
.skip{position:absolute;left:-999px}.skip:focus{left:1rem;top:1rem;background:#fff;padding:.5rem;z-index:9}
header.top{display:flex;flex-wrap:wrap;align-items:center;gap:.5rem 1.5rem;padding:.6rem 1rem;background:#111a2e;color:#fff}
header.top a{color:#fff;text-decoration:none}
header.top .brand{font-weight:700;letter-spacing:.02em}
nav.main{display:flex;flex-wrap:wrap;gap:.25rem}
nav.main a{padding:.25rem .5rem;border-radius:6px;color:#cfd8ea;font-size:.92rem}
nav.main a[aria-current=page],nav.main a:hover{background:#26324f;color:#fff}
.who{margin-left:auto;display:flex;align-items:center;gap:.6rem;font-size:.9rem;color:#cfd8ea}
.who form{margin:0}
.who button{background:transparent;color:#fff;border:1px solid #52607d;padding:.2rem .6rem}
main{max-width:72rem;margin:0 auto;padding:1rem}
h1{font-size:1.4rem;margin:.5rem 0 1rem}h2{font-size:1.1rem;margin:1.5rem 0 .5rem}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(10rem,1fr));gap:.75rem}
.card{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:.75rem 1rem}
.card .n{font-size:1.6rem;font-weight:700}.card .l{color:var(--muted);font-size:.85rem}
.table{overflow-x:auto;background:var(--card);border:1px solid var(--line);border-radius:8px}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:.45rem .7rem;border-bottom:1px solid var(--line);vertical-align:top}
th{font-weight:600;color:var(--muted);font-size:.85rem;white-space:nowrap}
tr:last-child td{border-bottom:0}
td.mono,.mono{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:.85rem;word-break:break-all}
.state{display:inline-block;padding:.05rem .5rem;border-radius:999px;font-size:.8rem;font-weight:600;border:1px solid}
.state-online,.state-success,.state-ok{color:var(--ok);border-color:#a8d5b5;background:#eef8f1}
.state-offline,.state-denied,.state-bad,.state-unable_to_connect,.state-dns_lookup_error{color:var(--bad);border-color:#efb3bd;background:#fdf0f2}
.state-pending,.state-expired,.state-disabled{color:var(--warn);border-color:#e7cf94;background:#fdf7e6}
.state-active,.state-trusted,.state-allowed{color:var(--ok);border-color:#a8d5b5;background:#eef8f1}
.state-blocked,.state-revoked{color:var(--bad);border-color:#efb3bd;background:#fdf0f2}
form.inline{display:inline}
form.panel{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:.75rem 1rem;display:flex;flex-wrap:wrap;gap:.5rem 1rem;align-items:flex-end;margin:.75rem 0}
label{display:flex;flex-direction:column;font-size:.85rem;color:var(--muted);gap:.15rem}
input,select{font:inherit;padding:.35rem .5rem;border:1px solid #b9c1cf;border-radius:6px;min-width:10rem;color:var(--fg);background:#fff}
button{font:inherit;padding:.4rem .9rem;border-radius:6px;border:1px solid var(--accent);background:var(--accent);color:#fff;cursor:pointer}
button.secondary{background:#fff;color:var(--accent)}
button.danger{background:#fff;color:var(--bad);border-color:var(--bad)}
.notice{background:#eef3ff;border:1px solid #c5d5fb;border-radius:8px;padding:.75rem 1rem;margin:.75rem 0}
.notice.err{background:#fdf0f2;border-color:#efb3bd;color:var(--bad)}
.secret{display:block;background:#111a2e;color:#e8eefc;padding:.6rem .8rem;border-radius:6px;font-family:ui-monospace,monospace;word-break:break-all;margin:.4rem 0}
.muted{color:var(--muted)}
pre.secret{white-space:pre-wrap;font-size:.82rem;line-height:1.5}
a.button{display:inline-block;padding:.3rem .7rem;border:1px solid var(--accent);border-radius:6px;text-decoration:none;font-size:.9rem}
label.check{flex-direction:row;align-items:center;gap:.4rem;color:var(--fg)}
label.check input{min-width:0}
label.inline-label{display:inline-flex;flex-direction:row;align-items:center;gap:.4rem;color:var(--muted)}
input.short{min-width:0;width:5.5rem}
table.kv th{width:12rem;color:var(--muted)}
.chart-panel{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:.75rem 1rem;display:grid;grid-template-columns:minmax(0,3fr) minmax(12rem,1fr);gap:1rem;align-items:start}
.chart-panel .table{border:0}
svg.chart{width:100%;height:auto;display:block}
svg.chart .axis{font-size:11px;fill:var(--muted)}
svg.chart .grid{stroke:var(--line);stroke-dasharray:3 3}
svg.chart .axis-line{stroke:#b9c1cf}
.bar-success{fill:#2e9e5b;background:#2e9e5b}.bar-denied{fill:#c7374f;background:#c7374f}
.bar-dns_lookup_error{fill:#d9922e;background:#d9922e}.bar-unable_to_connect{fill:#7a5cc7;background:#7a5cc7}
th a.sort{color:inherit;text-decoration:none}th a.sort:hover,th a.sort[aria-current]{color:var(--fg);text-decoration:underline}
.swatch{display:inline-block;width:.75rem;height:.75rem;border-radius:2px;margin-right:.4rem;vertical-align:-1px}
.pager{display:flex;gap:1rem;margin:.75rem 0}
.signin{max-width:28rem;margin:4rem auto;background:var(--card);border:1px solid var(--line);border-radius:10px;padding:1.5rem}
@media (max-width:40rem){.who{margin-left:0;width:100%}main{padding:.5rem}th,td{padding:.35rem .45rem}.chart-panel{grid-template-columns:1fr}}
`;

export const CONSOLE_JS = `"use strict";
(function () {
  // Live connector status: the Overview and Connectors pages mark each connector's cell with
  // data-connector; this polls the console's JSON and updates them in place (no reload).
  var cells = document.querySelectorAll("[data-connector]");
  var live = document.body.getAttribute("data-live");
  if (cells.length && live) {
    var tick = function () {
      fetch(live, { credentials: "same-origin", headers: { accept: "application/json" } })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (body) {
          if (!body) return;
          var byId = {};
          body.connectors.forEach(function (c) { byId[c.id] = c.state; });
          document.querySelectorAll("[data-connector]").forEach(function (el) {
            var s = byId[el.getAttribute("data-connector")];
            if (!s || el.textContent === s) return;
            el.textContent = s;
            el.className = "state state-" + s;
          });
          Object.keys(body.counts || {}).forEach(function (k) {
            var el = document.querySelector('[data-count="' + k + '"]');
            if (el) el.textContent = String(body.counts[k]);
          });
        })
        .catch(function () {});
    };
    setInterval(tick, 3000);
  }
  // A delete asks first.
  document.querySelectorAll("form[data-confirm]").forEach(function (f) {
    f.addEventListener("submit", function (e) {
      if (!window.confirm(f.getAttribute("data-confirm"))) e.preventDefault();
    });
  });
})();
`;
