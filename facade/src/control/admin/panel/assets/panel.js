// The strangler control panel. Plain JavaScript, no build step.
//
// Safety rule: every value from the server (names, reasons, shadowed
// answers) is written with text nodes, never parsed as HTML. `el` below is
// the only way this file makes elements.
"use strict";

const STAGES = ["legacy", "shadow", "canary", "service", "retired"];
const csrf = document.querySelector('meta[name="csrf-token"]').content;
const main = document.getElementById("main");
const SVG = "http://www.w3.org/2000/svg";

let overview = null;
let detailTimer = null;
let actionOpen = false;
// What the last action did, kept across the page's refresh after it.
let notice = null;

// el("div", {class: "x", onclick: f}, "text", child, …): strings become text.
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "text") node.textContent = String(value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.appendChild(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

function svg(tag, attrs) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, String(value));
  return node;
}

function percent(x, digits = 1) {
  return (100 * (x || 0)).toFixed(digits) + "%";
}

function age(seconds) {
  if (seconds === null || seconds === undefined) return "unknown age";
  if (seconds < 120) return seconds + " s ago";
  if (seconds < 7200) return Math.round(seconds / 60) + " min ago";
  if (seconds < 172800) return Math.round(seconds / 3600) + " h ago";
  return Math.round(seconds / 86400) + " days ago";
}

async function api(path, body) {
  const options = { headers: { "accept": "application/json" }, credentials: "same-origin" };
  if (body !== undefined) {
    options.method = "POST";
    options.headers["content-type"] = "application/json";
    options.headers["x-csrf-token"] = csrf;
    options.body = JSON.stringify(body);
  }
  const response = await fetch(path, options);
  if (response.status === 401) {
    window.location.assign("/");
    throw new Error("logged out");
  }
  let data = null;
  try { data = await response.json(); } catch (_) { data = null; }
  if (!response.ok) {
    const message = data && data.error ? data.error : "HTTP " + response.status;
    const error = new Error(message);
    error.status = response.status;
    throw error;
  }
  return data;
}

// ---------------------------------------------------------------- overview

function pipeline(card) {
  return el("ol", { class: "pipeline", "aria-label": "stage" },
    STAGES.map((stage) => {
      const current = card.stage_name === stage;
      const label = stage === "canary" && current ? "canary " + card.canary_percent + "%" : stage;
      return el("li", { class: current ? "stage stage-current" : "stage", "data-stage": stage }, label);
    }));
}

function split(card) {
  const t = card.traffic;
  if (!t) return el("div", { class: "split muted" }, "traffic: no step measured yet");
  const total = t.legacy_rps + t.service_rps;
  const share = total > 0 ? t.service_rps / total : 0;
  const bar = el("div", { class: "bar" }, el("span", { class: "bar-service", style: null }));
  bar.firstChild.style.width = (100 * share).toFixed(1) + "%";
  return el("div", { class: "split" },
    el("span", {}, "traffic: " + t.legacy_rps.toFixed(1) + " req/s legacy, " + t.service_rps.toFixed(1) + " req/s service"),
    bar);
}

function budget(card) {
  const e = card.errors;
  const over = e.requests > 0 && e.rate > e.max_error_rate;
  const text = e.enabled
    ? "service errors: " + percent(e.rate) + " (" + e.failures + " of " + e.requests + " in " + e.window_seconds + " s) against a " + percent(e.max_error_rate) + " budget"
    : "service errors: " + percent(e.rate) + " (automatic rollback off)";
  return el("div", { class: over ? "budget bad" : "budget" }, text);
}

function breakers(card) {
  const b = card.breakers;
  const state = (name, value) => el("span", { class: "breaker breaker-" + value }, name + " breaker " + value);
  return el("div", { class: "breakers" }, state("legacy", b.legacy), " ", state("service", b.service));
}

function shadowLine(card) {
  const s = card.shadow;
  if (!s) return el("div", { class: "muted" }, "shadow: store unreachable");
  if (s.compared === 0) return el("div", { class: "muted" }, "shadow: no comparisons in the last " + s.window_seconds + " s");
  const bad = s.mismatch_rate > s.max_mismatch_rate;
  return el("div", { class: bad ? "bad" : "" },
    "shadow mismatches: " + percent(s.mismatch_rate, 2) + " (" + s.mismatched + " of " + s.compared + "), threshold " + percent(s.max_mismatch_rate, 2));
}

function reconciliationLine(card) {
  const r = card.reconciliation;
  if (!r) return el("div", { class: "muted recon" }, "reconciliation: none finished yet");
  const diffs = (r.missing || 0) + (r.extra || 0) + (r.changed || 0);
  const text = "reconciliation run " + r.id + ": " + r.status + (r.status === "diverged" ? " (" + diffs + " differences)" : "") + ", " + age(r.age_seconds);
  return el("div", { class: "recon recon-" + r.status }, text);
}

function nextLine(card) {
  const n = card.next;
  if (!n) return el("div", { class: "muted next" }, card.stage_name === "retired" ? "retired: nothing further" : "next move: unknown (store unreachable)");
  if (n.passes) return el("div", { class: "next ok" }, "next move to " + n.to + ": the gates pass");
  return el("div", { class: "next blocked" },
    "next move to " + n.to + " is blocked: ",
    el("ul", { class: "refusals" }, n.refusals.map((r) => el("li", {}, r))));
}

function cardView(card, link) {
  const title = link
    ? el("h2", {}, el("a", { href: "#/capability/" + encodeURIComponent(card.name) }, card.name))
    : el("h2", {}, card.name);
  return el("section", { class: "card", "data-capability": card.name },
    title,
    pipeline(card),
    split(card),
    budget(card),
    breakers(card),
    shadowLine(card),
    reconciliationLine(card),
    nextLine(card));
}

function renderOverview() {
  if (!overview) return;
  // Every live update rebuilds the cards; a keyboard user's focus must stay
  // on the link it was on, not fall back to the top of the page.
  const focused = main.contains(document.activeElement) ? document.activeElement.getAttribute("href") : null;
  const cards = overview.capabilities.map((card) => cardView(card, true));
  main.replaceChildren(
    el("h2", { class: "page-title" }, "Capabilities"),
    el("div", { class: "cards", id: "overview" }, cards));
  if (focused) {
    const again = [...main.querySelectorAll("a")].find((a) => a.getAttribute("href") === focused);
    if (again) again.focus();
  }
}

function applyOverview(data) {
  overview = data;
  document.getElementById("replica").textContent = "replica " + data.replica_id + ", revision " + data.revision;
  document.getElementById("store-warning").hidden = data.store_reachable;
  document.getElementById("live").textContent = "live, updated " + new Date().toLocaleTimeString();
  if (currentRoute().view === "overview") renderOverview();
}

function connect() {
  const source = new EventSource("/panel/api/events");
  source.addEventListener("overview", (event) => applyOverview(JSON.parse(event.data)));
  source.onerror = () => {
    document.getElementById("live").textContent = "reconnecting…";
  };
}

// ---------------------------------------------------------------- charts

function chart(title, points, lines, unit) {
  const width = 560, height = 140, pad = 30;
  // An image takes no name from the text inside it: the chart names itself.
  const box = svg("svg", { viewBox: "0 0 " + width + " " + height, class: "chart", role: "img", "aria-label": title + " over the last hour" });
  const values = points.flatMap((p) => lines.map((l) => p[l.key]).filter((v) => v !== null && v !== undefined));
  const max = Math.max(1e-9, ...values);
  const t0 = points.length ? points[0].t : 0;
  const t1 = points.length ? points[points.length - 1].t : 1;
  const x = (t) => pad + (width - 2 * pad) * (t1 === t0 ? 1 : (t - t0) / (t1 - t0));
  const y = (v) => height - pad + 10 - (height - pad) * (v / max);
  box.appendChild(svg("line", { x1: pad, y1: height - pad + 10, x2: width - pad, y2: height - pad + 10, class: "axis" }));
  const label = svg("text", { x: 2, y: 12, class: "axis-label" });
  label.textContent = max.toFixed(max < 10 ? 2 : 0) + " " + unit;
  box.appendChild(label);
  for (const line of lines) {
    const coordinates = points
      .filter((p) => p[line.key] !== null && p[line.key] !== undefined)
      .map((p) => x(p.t).toFixed(1) + "," + y(p[line.key]).toFixed(1));
    if (coordinates.length) box.appendChild(svg("polyline", { points: coordinates.join(" "), class: "line " + line.class }));
  }
  const legend = el("div", { class: "legend" }, lines.map((l) => el("span", { class: "key " + l.class }, l.name)));
  return el("figure", { class: "figure" }, el("figcaption", {}, title), box, legend,
    points.length ? null : el("p", { class: "muted" }, "no data yet: a point is taken every 10 s"));
}

// ---------------------------------------------------------------- shadow

// The two answers in two columns, row beside row: a run of removed lines
// is paired with the run of added lines that replaced it, the shorter run
// padded, so that what changed sits beside what it became even where a
// long line wraps (each row is one row of the grid).
function sideBySide(diff) {
  const grid = el("div", { class: "side-by-side" },
    el("h4", {}, "legacy"), el("h4", {}, "service"));
  const cell = (side, kind, text) => el("div", { class: `diff-cell ${side}-side ${kind}` }, text);
  let removed = [];
  let added = [];
  const flush = () => {
    for (let i = 0; i < Math.max(removed.length, added.length); i++) {
      grid.appendChild(i < removed.length ? cell("legacy", "del", removed[i]) : cell("legacy", "pad", ""));
      grid.appendChild(i < added.length ? cell("service", "add", added[i]) : cell("service", "pad", ""));
    }
    removed = [];
    added = [];
  };
  for (const line of String(diff || "").split("\n")) {
    if (line.startsWith("---") || line.startsWith("+++")) continue;
    if (line.startsWith("-")) {
      removed.push(line.slice(1));
    } else if (line.startsWith("+")) {
      added.push(line.slice(1));
    } else {
      flush();
      const hunk = line.startsWith("@@");
      const text = hunk ? line : line.slice(1);
      grid.appendChild(cell("legacy", hunk ? "hunk" : "same", text));
      grid.appendChild(cell("service", hunk ? "hunk" : "same", text));
    }
  }
  flush();
  return grid;
}

function shadowExplorer(detail) {
  const report = detail.shadow;
  if (!report) return el("section", { id: "shadow" }, el("h3", {}, "Shadow diffs"), el("p", { class: "muted" }, "the shadow report is not available (is the store reachable?)"));
  const fields = report.top_fields.length
    ? el("table", { class: "fields" },
        el("thead", {}, el("tr", {}, el("th", {}, "JSON path or header"), el("th", {}, "mismatches"))),
        el("tbody", {}, report.top_fields.map((f) => el("tr", {}, el("td", {}, f.field), el("td", { class: "num" }, f.mismatches)))))
    : el("p", { class: "muted" }, "no field differed in the window");
  const samples = report.samples.map((s) =>
    el("article", { class: "sample" },
      el("h4", {}, s.method + " " + s.path + ": legacy " + s.legacy_status + ", service " + s.service_status + " (" + s.at + ", request " + s.request_id + ")"),
      el("p", { class: "muted" }, "differing: " + s.fields),
      sideBySide(s.diff)));
  return el("section", { id: "shadow" },
    el("h3", {}, "Shadow diffs"),
    el("p", {}, "Over the last " + report.window_seconds + " s: " + report.totals.compared + " compared, " + report.totals.mismatched + " differed (" + percent(report.mismatch_rate, 2) + "; the gate allows " + percent(report.max_mismatch_rate, 2) + " over at least " + report.min_comparisons + ")."),
    fields,
    el("h4", {}, "Learned noise"),
    el("ul", { id: "noise" }, report.learned_noise.length ? report.learned_noise.map((n) => el("li", {}, n)) : el("li", { class: "muted" }, "none")),
    el("h4", {}, "Ignore rules"),
    el("ul", { id: "ignore" }, detail.ignore.length ? detail.ignore.map((n) => el("li", {}, n)) : el("li", { class: "muted" }, "none")),
    el("h4", {}, "Latest differing pairs"),
    el("div", { id: "samples" }, samples.length ? samples : el("p", { class: "muted" }, "no sample yet")));
}

// ---------------------------------------------------------------- reconciliation

function reconciliation(detail) {
  const runs = detail.reconciliations;
  const rows = runs.map((r) => el("tr", { class: "recon-" + r.status },
    el("td", {}, r.id), el("td", {}, r.status), el("td", {}, r.finished_at || ""),
    el("td", { class: "num" }, r.rows_compared === null ? "" : r.rows_compared),
    el("td", { class: "num" }, r.missing === null ? "" : r.missing),
    el("td", { class: "num" }, r.extra === null ? "" : r.extra),
    el("td", { class: "num" }, r.changed === null ? "" : r.changed),
    el("td", {}, r.error || "")));
  const report = detail.latest_report;
  const tables = report && Array.isArray(report.tables) ? report.tables.map((t) =>
    el("li", {},
      t.legacy_table + " → " + t.service_table + ": " + t.rows_compared + " rows compared, " +
      t.missing.length + " missing, " + t.extra.length + " extra, " + t.changed.length + " changed",
      t.missing.length + t.extra.length + t.changed.length
        ? el("pre", { class: "keys" }, JSON.stringify({ missing: t.missing.slice(0, 5), extra: t.extra.slice(0, 5), changed: t.changed.slice(0, 5) }, null, 1))
        : null)) : [];
  return el("section", { id: "reconciliation" },
    el("h3", {}, "Reconciliation"),
    runs.length ? el("table", {},
      el("thead", {}, el("tr", {}, ["run", "status", "finished", "rows", "missing", "extra", "changed", "error"].map((h) => el("th", {}, h)))),
      el("tbody", {}, rows)) : el("p", { class: "muted" }, "no run has finished: strangler reconcile run " + detail.card.name),
    report ? el("h4", {}, "Latest report (" + report.status + ", " + report.finished_at + ")") : null,
    report ? el("ul", { id: "report-tables" }, tables) : null);
}

// ---------------------------------------------------------------- audit log

function timeline(detail) {
  return el("section", { id: "history" },
    el("h3", {}, "Stage changes"),
    el("table", {},
      el("thead", {}, el("tr", {}, ["when", "change", "by", "replica", "reason"].map((h) => el("th", {}, h)))),
      el("tbody", {}, detail.history.map((t) => el("tr", { class: t.forced ? "forced" : "" },
        el("td", {}, t.at),
        el("td", {}, (t.from || "(new)") + " → " + t.to),
        el("td", {}, t.actor),
        el("td", {}, t.replica || "-"),
        el("td", {}, t.reason, t.forced ? el("strong", { class: "override" }, " [forced past a gate]") : null))))));
}

// ---------------------------------------------------------------- actions

function actions(detail) {
  const card = detail.card;
  const result = el("div", { id: "action-result", role: "status" },
    notice ? el("p", { class: "ok", id: "action-done" }, notice) : null);
  const gate = el("div", { id: "gate-result" });
  const stage = el("select", { id: "move-to", "aria-label": "stage to move to" }, STAGES.map((s) => el("option", { value: s, selected: s === card.stage_name }, s)));
  const share = el("input", { id: "percent", type: "number", min: "0.1", max: "100", step: "0.1", value: "10", "aria-label": "canary share, percent" });
  const reason = el("input", { id: "reason", type: "text", placeholder: "why (recorded in the audit log)", size: "50", "aria-label": "reason for the move" });
  const who = el("input", { id: "who", type: "text", placeholder: "your name (optional)", size: "16", "aria-label": "your name, for the audit log" });
  const override = el("input", { id: "override", type: "checkbox" });
  const move = el("button", { id: "move", type: "button", disabled: true }, "Move");
  const confirm = el("button", { id: "confirm-override", type: "button", class: "danger", hidden: true }, "Confirm: override the gates (recorded)");
  let checked = null;

  const target = () => ({ to: stage.value, percent: stage.value === "canary" ? Number(share.value) : undefined });
  const fail = (error) => { result.replaceChildren(el("p", { class: "error", id: "action-error" }, error.message)); };

  const check = async () => {
    actionOpen = true;
    result.replaceChildren();
    confirm.hidden = true;
    override.checked = false;
    try {
      checked = await api("/panel/api/capabilities/" + encodeURIComponent(card.name) + "/check", target());
    } catch (error) { fail(error); return; }
    const head = checked.forward ? "Moving " + card.name + " from " + checked.from + " to " + checked.to : "Moving " + card.name + " back from " + checked.from + " to " + checked.to + " (moves back are never gated)";
    gate.replaceChildren(
      el("p", {}, head),
      checked.refusals.length
        ? el("div", { class: "blocked" }, el("p", {}, "The gates refuse:"), el("ul", { id: "refusals" }, checked.refusals.map((r) => el("li", {}, r))))
        : el("p", { class: "ok", id: "gates-pass" }, "The gates pass."));
    move.disabled = checked.refusals.length > 0;
    overrideRow.hidden = checked.refusals.length === 0;
  };

  const send = async (force) => {
    if (!reason.value.trim()) { fail(new Error("Give a reason: it goes into the audit log.")); return; }
    const body = Object.assign(target(), { reason: reason.value, force: force, from: checked ? checked.from : undefined, who: who.value || undefined });
    try {
      const outcome = await api("/panel/api/capabilities/" + encodeURIComponent(card.name) + "/flip", body);
      const t = outcome.transition;
      notice = "Moved " + t.capability + ": " + t.from + " → " + t.to + (outcome.overridden.length ? " (gates overridden, recorded)" : "");
      actionOpen = false;
      showCapability(card.name);
    } catch (error) { fail(error); }
  };

  override.addEventListener("change", () => {
    move.disabled = !override.checked;
    confirm.hidden = true;
  });
  move.addEventListener("click", () => {
    if (checked && checked.refusals.length) {
      // Overriding takes a second, explicit confirmation.
      confirm.hidden = false;
      return;
    }
    send(false);
  });
  confirm.addEventListener("click", () => send(true));
  stage.addEventListener("change", () => { checked = null; move.disabled = true; gate.replaceChildren(); overrideRow.hidden = true; });

  const rollbackReason = el("input", { id: "rollback-reason", type: "text", placeholder: "why roll back", size: "40", "aria-label": "reason for the rollback" });
  const rollback = el("button", { id: "rollback", type: "button" }, "Roll back to the previous stage");
  rollback.addEventListener("click", async () => {
    if (!rollbackReason.value.trim()) { fail(new Error("Give a reason for the rollback.")); return; }
    try {
      const outcome = await api("/panel/api/capabilities/" + encodeURIComponent(card.name) + "/rollback", { reason: rollbackReason.value, who: who.value || undefined });
      notice = "Rolled back " + outcome.transition.capability + " to " + outcome.transition.to;
      actionOpen = false;
      showCapability(card.name);
    } catch (error) { fail(error); }
  });

  const overrideRow = el("label", { hidden: true, id: "override-row" }, override, " override the refusing gates (the override and its reason are recorded)");
  return el("section", { id: "actions" },
    el("h3", {}, "Move"),
    el("div", { class: "row" }, "to ", stage, " canary share % ", share, " ", el("button", { id: "check", type: "button", onclick: check }, "Check the gates")),
    gate,
    el("div", { class: "row" }, reason, " ", who),
    overrideRow,
    el("div", { class: "row" }, move, " ", confirm),
    el("div", { class: "row" }, rollbackReason, " ", rollback),
    result);
}

// ---------------------------------------------------------------- pages

async function showCapability(name) {
  let detail;
  try {
    detail = await api("/panel/api/capabilities/" + encodeURIComponent(name));
  } catch (error) {
    main.replaceChildren(el("p", { class: "error" }, error.message));
    return;
  }
  if (actionOpen && document.getElementById("actions")) {
    // Keep the form the user is filling; refresh the rest.
    document.getElementById("charts").replaceWith(charts(detail));
    return;
  }
  main.replaceChildren(
    el("p", {}, el("a", { href: "#/" }, "← all capabilities")),
    cardView(detail.card, false),
    actions(detail),
    charts(detail),
    shadowExplorer(detail),
    reconciliation(detail),
    timeline(detail));
}

function charts(detail) {
  const points = detail.series;
  const shadowPoints = detail.shadow_series.map((p) => ({ t: p.bucket * 10, rate: p.compared ? p.mismatched / p.compared : 0 }));
  return el("section", { id: "charts", class: "charts" },
    el("h3", {}, "The last hour"),
    chart("Requests per second by side", points, [{ key: "legacy_rps", name: "legacy", class: "legacy" }, { key: "service_rps", name: "service", class: "service" }], "req/s"),
    chart("5xx per second by side", points, [{ key: "legacy_errors", name: "legacy", class: "legacy" }, { key: "service_errors", name: "service", class: "service" }], "err/s"),
    chart("p99 latency by side", points, [{ key: "legacy_p99_ms", name: "legacy", class: "legacy" }, { key: "service_p99_ms", name: "service", class: "service" }], "ms"),
    chart("Shadow mismatch rate", shadowPoints, [{ key: "rate", name: "mismatch rate", class: "service" }], "(1 = all)"));
}

async function showBackends() {
  let backends;
  try { backends = await api("/panel/api/backends"); } catch (error) {
    main.replaceChildren(el("p", { class: "error" }, error.message));
    return;
  }
  main.replaceChildren(
    el("h2", { class: "page-title" }, "Backends"),
    el("table", { id: "backends" },
      el("thead", {}, el("tr", {}, ["backend", "breaker", "in flight", "retries (of requests, 10 s)", "instances"].map((h) => el("th", {}, h)))),
      el("tbody", {}, backends.map((b) => el("tr", { "data-backend": b.name },
        el("td", {}, b.name),
        el("td", { class: "breaker-" + b.breaker }, b.breaker),
        el("td", { class: "num" }, b.in_flight + " / " + b.max_concurrent),
        el("td", { class: "num" }, b.retry_budget[1] + " / " + b.retry_budget[0]),
        el("td", {}, el("ul", {}, b.instances.map((i) => el("li", { class: i.healthy ? "ok" : "bad" },
          i.instance + (i.healthy ? " healthy" : " unhealthy") + ", " + i.outstanding + " outstanding")))))))));
}

function currentRoute() {
  const hash = window.location.hash || "#/";
  const capability = hash.match(/^#\/capability\/(.+)$/);
  if (capability) return { view: "capability", name: decodeURIComponent(capability[1]) };
  if (hash === "#/backends") return { view: "backends" };
  return { view: "overview" };
}

function route() {
  clearInterval(detailTimer);
  actionOpen = false;
  notice = null;
  const current = currentRoute();
  if (current.view === "capability") {
    showCapability(current.name);
    detailTimer = setInterval(() => showCapability(current.name), 10000);
  } else if (current.view === "backends") {
    showBackends();
    detailTimer = setInterval(showBackends, 5000);
  } else if (overview) {
    renderOverview();
  }
}

window.addEventListener("hashchange", route);
connect();
route();
