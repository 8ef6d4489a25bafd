// The page's parts built as DOM nodes from a view (model.js): an endpoint's summary, arms, charts,
// evidence, shadows, drift, experiment, fleet and timeline. Text goes in through `textContent` only, so
// nothing a config or a model names can become markup.

import { lineChart } from "./charts.js";
import { WINDOW_S, fmt, fmtCount, fmtMs, fmtPercent, label } from "./model.js";

/** An element: `h("td", { class: "n" }, "text", child, ...)`. */
export function h(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v !== null && v !== undefined && v !== false) e.setAttribute(k, String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function table(head, rows, cls) {
  return h("table", { class: cls }, h("thead", {}, h("tr", {}, head.map((c) => h("th", {}, c)))),
    h("tbody", {}, rows.map((r) => h("tr", {}, r.map((c) => h("td", {}, c))))));
}

function clock(ms) {
  return new Date(ms).toLocaleTimeString([], { hour12: false });
}

/** The last ten seconds of an arm: rate, error share, quantiles. */
function recent(series, arm, now) {
  const last = series.filter((p) => p.t > now - 10500 && p[arm]);
  if (!last.length) return {};
  const rps = last.reduce((a, p) => a + p[arm].rps, 0) / last.length;
  const counted = last.filter((p) => p[arm].rps > 0 && p[arm].errors !== null);
  const weight = counted.reduce((a, p) => a + p[arm].rps, 0);
  const pick = (k) => [...last].reverse().map((p) => p[arm][k]).find((v) => v !== null && v !== undefined);
  return {
    rps,
    errors: weight ? counted.reduce((a, p) => a + p[arm].errors * p[arm].rps, 0) / weight : null,
    p50: pick("p50"),
    p99: pick("p99"),
  };
}

function summary(v) {
  let where = "";
  if (v.phase === "progressing" || v.phase === "fixed") {
    if (v.fixed) where = `fixed split`;
    else if (v.step !== null && v.step !== undefined) where = v.steps ? `step ${v.step + 1} of ${v.steps}` : `step ${v.step + 1}`;
  }
  return h("p", { class: "summary" },
    h("span", { class: `phase phase-${v.phase}` }, label(v.phase)),
    v.paused ? h("span", { class: "phase phase-paused" }, "paused") : null,
    where ? h("span", {}, where) : null,
    v.weight !== null ? h("span", {}, `canary ${fmtPercent(v.weight)}`) : null,
    v.verdict ? h("span", { class: "muted" }, `analysis: ${label(v.verdict)}`) : null);
}

function arms(v, now) {
  const rows = v.arms.map((a) => {
    const r = a.arm === "shadow" ? {} : recent(v.series, a.arm, now);
    const traffic = a.arm === "shadow" ? (a.copies !== undefined ? `copy of ${fmtPercent(a.copies)}` : "copies") : fmtPercent(a.weight);
    return [
      h("span", { class: `arm arm-${a.arm}` }, a.arm),
      a.model ?? "–",
      a.version ?? "–",
      traffic,
      r.rps === undefined ? "–" : fmt(r.rps),
      r.errors === undefined || r.errors === null ? "–" : fmtPercent(r.errors * 100),
      fmtMs(r.p50),
      fmtMs(r.p99),
    ];
  });
  return table(["arm", "model", "version", "traffic", "req/s", "errors", "p50", "p99"], rows, "arms");
}

function figure(title, chart, legend) {
  chart.setAttribute("aria-label", title);
  return h("figure", {}, h("figcaption", {}, title), chart,
    h("ul", { class: "legend" }, legend.map(([cls, text]) => h("li", {}, h("span", { class: `swatch ${cls}` }), text))));
}

/** The charts' span: from a little before the first activity, at least a minute, at most `WINDOW_S`. */
function span(v, evidence, now) {
  const active = v.series.find((p) => (p.control && p.control.rps > 0) || (p.canary && p.canary.rps > 0));
  const first = Math.min(active ? active.t : now, evidence.length ? evidence[0].t : now);
  return Math.min(WINDOW_S * 1000, Math.max(60e3, now - first + 15e3));
}

function charts(v, evidence, now) {
  const from = now - span(v, evidence, now);
  const marks = v.timeline.filter((e) => ["rollback", "promotion", "step"].includes(e.kind)).map((e) => ({ t: e.time_ms, cls: e.kind }));
  const pts = (arm, k, scale = 1) => v.series.map((p) => [p.t, p[arm] && p[arm][k] !== null && p[arm][k] !== undefined ? p[arm][k] * scale : null]);
  const e = v.evidence;
  const threshold = e.error_threshold;
  return h("div", { class: "charts" },
    figure("Requests per second", lineChart({ from, to: now, marks, lines: [
      { cls: "control", points: pts("control", "rps") }, { cls: "canary", points: pts("canary", "rps") }] }),
    [["control", "control"], ["canary", "canary"]]),
    figure("Errors (% of requests)", lineChart({ from, to: now, marks, unit: "%", lines: [
      { cls: "control", points: pts("control", "errors", 100) }, { cls: "canary", points: pts("canary", "errors", 100) }] }),
    [["control", "control"], ["canary", "canary"]]),
    figure("Latency (ms, log scale)", lineChart({ from, to: now, marks, log: true, floor: 0.01, lines: [
      { cls: "control", points: pts("control", "p50") }, { cls: "canary", points: pts("canary", "p50") },
      { cls: "control dashed", points: pts("control", "p99") }, { cls: "canary dashed", points: pts("canary", "p99") }] }),
    [["control", "control p50"], ["canary", "canary p50"], ["control dashed", "control p99"], ["canary dashed", "canary p99"]]),
    figure("Evidence against the canary (e-value, log scale)", lineChart({ from, to: now, marks, log: true, floor: 1e-3, threshold, lines: [
      { cls: "errors", points: evidence.map((p) => [p.t, p.error]) },
      { cls: "latency", points: evidence.map((p) => [p.t, p.latency]) }] }),
    [["errors", `error rate ${fmt(e.error)}`], ["latency", `latency ${fmt(e.latency)}`],
      ["threshold", `rollback at ${fmt(threshold)}${e.pooled ? " (fleet's pooled evidence)" : ""}`]]));
}

function shadows(v) {
  if (!v.shadows.length) return null;
  return h("section", { class: "panel" }, h("h3", {}, "Shadow agreement"),
    table(["shadow", "compared", "errors", "exact", "argmax", "cosine", "max |diff|"], v.shadows.map((s) => [
      s.name, fmtCount(s.compared), fmtCount(s.errors), fmtPercent(s.exact === null ? null : s.exact * 100),
      fmtPercent(s.argmax === null ? null : s.argmax * 100), fmt(s.cosine), fmt(s.max_abs_diff)]), "shadows"));
}

function levelBadge(level) {
  return level ? h("span", { class: `level level-${level}` }, level) : "–";
}

/** Drift rows: [[arm or model, series, psi, level]]. */
export function driftPanel(rows, title = "Drift") {
  if (!rows || !rows.length) return null;
  return h("section", { class: "panel" }, h("h3", {}, title),
    table(["version", "series", "PSI", "level"], rows.map((r) => [r[0], r[1], fmt(r[2]), levelBadge(r[3])]), "drift"));
}

function drift(v) {
  if (!v.drift) return null;
  const rows = [];
  for (const [arm, d] of Object.entries(v.drift)) {
    for (const [series, s] of Object.entries(d.series)) {
      const level = s.capturing !== undefined ? `capturing reference (${s.capturing})` : s.level;
      rows.push([`${arm}: ${d.model} v${d.version}`, series, s.psi ?? null, level]);
    }
  }
  return driftPanel(rows);
}

function experiment(v) {
  const x = v.experiment;
  if (!x) return null;
  const interval = (d) => (d ? `[${fmt(d.low)}, ${fmt(d.high)}]` : "–");
  return h("section", { class: "panel" }, h("h3", {}, "Experiment"),
    h("p", {}, h("span", { class: `verdict verdict-${x.verdict}` }, label(x.verdict)), x.reason ? ` ${x.reason}` : ""),
    table(["metric", "control", "canary", "lift", "difference", "outcomes"], x.metrics.map((m) => [
      `${m.metric}${m.guardrail ? " (guardrail)" : ""}${m.judged === false ? " · not judged yet" : ""}`,
      fmt(m.control_mean), fmt(m.canary_mean),
      fmtPercent(m.relative_lift === null || m.relative_lift === undefined ? null : m.relative_lift * 100),
      interval(m.difference), m.outcomes ? `${m.outcomes[0]} / ${m.outcomes[1]}` : "–"]), "experiment"));
}

function fleet(v) {
  const f = v.fleet;
  if (!f) return null;
  const replicas = (f.replicas || []).map((r) => [
    r.replica === f.leader ? h("span", {}, r.replica, " ", h("span", { class: "level level-ok" }, "leader")) : r.replica,
    r.mode ?? "–", `${fmt(r.last_seen_ms_ago / 1000)} s ago`,
    `${fmtCount(r.requests.control)} / ${fmtCount(r.requests.canary)}`, `${fmtCount(r.errors.control)} / ${fmtCount(r.errors.canary)}`,
    fmt(r.error_e_value), fmt(r.latency_e_value)]);
  return h("section", { class: "panel" }, h("h3", {}, "Fleet"),
    h("p", {}, `leader: ${f.leader ?? "none"} · this replica: ${f.replica}${f.error ? ` · ${f.error}` : ""}`),
    replicas.length ? table(["replica", "mode", "seen", "requests c/k", "errors c/k", "error e", "latency e"], replicas, "replicas") : null);
}

function timeline(v) {
  const entries = [...v.timeline].sort((a, b) => b.time_ms - a.time_ms).slice(0, 60);
  return h("section", { class: "panel timeline" }, h("h3", {}, "Timeline"),
    entries.length
      ? h("ol", {}, entries.map((e) => h("li", { class: `event event-${e.kind}`, "data-time-ms": e.time_ms },
        h("time", { datetime: new Date(e.time_ms).toISOString() }, clock(e.time_ms)), " ",
        h("b", {}, e.title), e.detail ? h("span", { class: "detail" }, e.detail) : null)))
      : h("p", { class: "muted" }, "nothing decided yet"));
}

/** Everything of an endpoint but its buttons, which stay put between updates. */
export function endpointBody(v, evidence, now) {
  return h("div", { class: "body" },
    summary(v), arms(v, now), charts(v, evidence, now),
    h("div", { class: "panels" }, shadows(v), drift(v), experiment(v), fleet(v)),
    timeline(v));
}
