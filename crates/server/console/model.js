// What the server says, turned into what the page draws. Two sources give one shape: the admin API's
// `/admin/console` (with the token) and the Prometheus text of `/metrics` (without it, so the public
// page shows exactly what a scrape shows: rates and quantiles from the difference of two scrapes, and
// decisions as they are observed).

/** Seconds of history the charts span. */
export const WINDOW_S = 300;

/** Samples of a Prometheus text exposition: name -> [{ labels, value }]. */
export function parseMetrics(text) {
  const out = new Map();
  for (const line of text.split("\n")) {
    if (!line || line[0] === "#") continue;
    const m = line.match(/^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/);
    if (!m) continue;
    const labels = {};
    for (const l of (m[2] || "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) {
      labels[l[1]] = l[2].replace(/\\(.)/g, (_, c) => (c === "n" ? "\n" : c));
    }
    if (!out.has(m[1])) out.set(m[1], []);
    out.get(m[1]).push({ labels, value: number(m[3]) });
  }
  return out;
}

function number(s) {
  if (s === "+Inf") return Infinity;
  if (s === "-Inf") return -Infinity;
  return Number(s);
}

/** Samples of `name` whose labels include every pair of `match`. */
function samples(metrics, name, match = {}) {
  return (metrics.get(name) || []).filter((s) => Object.entries(match).every(([k, v]) => s.labels[k] === v));
}

function sum(metrics, name, match) {
  return samples(metrics, name, match).reduce((a, s) => a + s.value, 0);
}

function one(metrics, name, match) {
  const s = samples(metrics, name, match);
  return s.length ? s[0].value : null;
}

/** The `q` quantile of a histogram's bucket counts (upper bound -> count, cumulative), interpolated
 *  within the bucket as Prometheus' `histogram_quantile` does; in milliseconds. */
export function quantileMs(buckets, q) {
  const bounds = [...buckets.keys()].sort((a, b) => a - b);
  const total = buckets.get(Infinity) || 0;
  if (!total) return null;
  const rank = q * total;
  let lower = 0;
  let below = 0;
  for (const le of bounds) {
    const count = buckets.get(le);
    if (count >= rank) {
      if (le === Infinity) return lower * 1000;
      return (lower + ((le - lower) * (rank - below)) / Math.max(count - below, 1)) * 1000;
    }
    lower = le;
    below = count;
  }
  return lower * 1000;
}

const ARMS = ["control", "canary"];

/** One scrape's figures for an endpoint: per arm, requests, errors and latency buckets (protocols
 *  summed). */
function countsOf(metrics, endpoint) {
  const arms = {};
  for (const arm of ARMS) {
    const buckets = new Map();
    for (const s of samples(metrics, "switchyard_rollout_request_duration_seconds_bucket", { endpoint, arm })) {
      const le = number(s.labels.le);
      buckets.set(le, (buckets.get(le) || 0) + s.value);
    }
    arms[arm] = {
      requests: sum(metrics, "switchyard_rollout_requests_total", { endpoint, arm }),
      errors: sum(metrics, "switchyard_rollout_requests_total", { endpoint, arm, outcome: "error" }),
      buckets,
    };
  }
  const byReason = (name) =>
    Object.fromEntries(samples(metrics, name, { endpoint }).map((s) => [s.labels.reason, s.value]));
  return {
    arms,
    step: one(metrics, "switchyard_rollout_step", { endpoint }),
    weight: one(metrics, "switchyard_rollout_canary_weight_ratio", { endpoint }),
    rollbacks: byReason("switchyard_rollout_rollbacks_total"),
    promotions: byReason("switchyard_rollout_promotions_total"),
  };
}

/** One second (or poll interval) of an arm: rate, error share and quantiles from two scrapes. */
function pointBetween(before, after, seconds) {
  const requests = after.requests - before.requests;
  if (requests < 0) return null; // the server restarted
  const errors = after.errors - before.errors;
  const delta = new Map();
  for (const [le, count] of after.buckets) delta.set(le, count - (before.buckets.get(le) || 0));
  return {
    rps: requests / seconds,
    errors: requests ? errors / requests : null,
    p50: quantileMs(delta, 0.5),
    p99: quantileMs(delta, 0.99),
  };
}

/** Keeps the last `WINDOW_S` seconds of an array of `{ t }` (milliseconds). */
function trim(list, now) {
  while (list.length && list[0].t < now - WINDOW_S * 1000) list.shift();
  return list;
}

/** The public view: built from successive scrapes of `/metrics`. */
export class PublicModel {
  constructor() {
    this.previous = null; // { at, metrics, counts: Map(endpoint -> counts), reloads }
    this.points = new Map(); // endpoint -> [{ t, control, canary }]
    this.events = new Map(); // endpoint -> timeline entries, observed
    this.reloads = [];
  }

  update(text, now) {
    const metrics = parseMetrics(text);
    const endpoints = [...new Set(samples(metrics, "switchyard_rollout_step").map((s) => s.labels.endpoint))].sort();
    const counts = new Map(endpoints.map((e) => [e, countsOf(metrics, e)]));
    const reloads = {
      applied: one(metrics, "switchyard_config_reloads_total", { result: "success" }) || 0,
      rejected: one(metrics, "switchyard_config_reloads_total", { result: "failure" }) || 0,
    };
    const prev = this.previous;
    if (prev) {
      for (const result of ["applied", "rejected"]) {
        if (reloads[result] > prev.reloads[result]) {
          this.reloads.push({ time_ms: now, kind: "reload", title: `config reload ${result}`, detail: "observed in /metrics" });
        }
      }
      this.reloads = this.reloads.slice(-100);
    }
    const views = endpoints.map((endpoint) => {
      const c = counts.get(endpoint);
      const before = prev && prev.counts.get(endpoint);
      const points = this.points.get(endpoint) || [];
      const events = this.events.get(endpoint) || [];
      if (before) {
        const seconds = (now - prev.at) / 1000;
        const point = { t: now };
        for (const arm of ARMS) point[arm] = pointBetween(before.arms[arm], c.arms[arm], seconds);
        if (point.control && point.canary) points.push(point);
        events.push(...observedEvents(before, c, now));
      }
      this.points.set(endpoint, trim(points, now));
      this.events.set(endpoint, events.slice(-200));
      return this.endpointView(metrics, endpoint, c, now);
    });
    this.previous = { at: now, counts, reloads };
    return {
      mode: "public",
      time_ms: now,
      endpoints: views,
      drift: driftOf(metrics),
      fleet: samples(metrics, "switchyard_fleet_etcd_up").length
        ? { etcd_up: one(metrics, "switchyard_fleet_etcd_up") === 1, leading: one(metrics, "switchyard_fleet_leader") === 1 }
        : null,
    };
  }

  endpointView(metrics, endpoint, c, now) {
    const m = { endpoint };
    const weight = c.weight === null ? null : c.weight * 100;
    const phase = c.step === -1 ? "promoted" : c.step === -2 ? "rolled_back" : "progressing";
    const shadows = [...new Set(samples(metrics, "switchyard_shadow_requests_total", m).map((s) => s.labels.shadow))];
    const threshold = one(metrics, "switchyard_rollout_e_value_threshold", m);
    return {
      endpoint,
      phase,
      step: c.step >= 0 ? c.step : null,
      steps: null,
      paused: null,
      weight,
      arms: [
        { arm: "control", weight: weight === null ? null : 100 - weight },
        { arm: "canary", weight },
        ...shadows.map((name) => ({ arm: "shadow", model: name })),
      ],
      series: this.points.get(endpoint).map((p) => ({ t: p.t, control: p.control, canary: p.canary })),
      evidence: {
        error: one(metrics, "switchyard_rollout_error_rate_e_value", m),
        latency: one(metrics, "switchyard_rollout_latency_e_value", m),
        error_threshold: threshold,
        latency_threshold: threshold,
        samples: {
          control: one(metrics, "switchyard_rollout_sample_requests", { endpoint, arm: "control" }),
          canary: one(metrics, "switchyard_rollout_sample_requests", { endpoint, arm: "canary" }),
        },
      },
      shadows: shadows.map((shadow) => {
        const s = { endpoint, shadow };
        return {
          name: shadow,
          compared: sum(metrics, "switchyard_shadow_requests_total", { ...s, outcome: "success" }),
          errors: sum(metrics, "switchyard_shadow_requests_total", { ...s, outcome: "error" }),
          exact: one(metrics, "switchyard_shadow_exact_agreement_ratio", s),
          argmax: one(metrics, "switchyard_shadow_argmax_agreement_ratio", s),
          cosine: one(metrics, "switchyard_shadow_cosine_similarity", s),
          max_abs_diff: one(metrics, "switchyard_shadow_max_abs_diff", s),
        };
      }),
      drift: null,
      experiment: experimentOf(metrics, endpoint),
      fleet: null,
      timeline: [...this.events.get(endpoint), ...this.reloads],
    };
  }
}

/** Decisions seen between two scrapes: counted rollbacks and promotions, and step changes. */
function observedEvents(before, after, now) {
  const out = [];
  for (const [reason, n] of Object.entries(after.rollbacks)) {
    if (n > (before.rollbacks[reason] || 0)) {
      out.push({ time_ms: now, kind: "rollback", title: "rolled back", detail: `reason: ${label(reason)} (observed in /metrics)` });
    }
  }
  for (const [reason, n] of Object.entries(after.promotions)) {
    if (n > (before.promotions[reason] || 0)) {
      out.push({ time_ms: now, kind: "promotion", title: "promoted", detail: `reason: ${label(reason)} (observed in /metrics)` });
    }
  }
  if (after.step !== before.step && after.step >= 0) {
    const w = after.weight === null ? "" : ` (canary ${fmtPercent(after.weight * 100)})`;
    out.push({ time_ms: now, kind: "step", title: `step ${after.step + 1}${w}`, detail: "observed in /metrics" });
  }
  return out;
}

function experimentOf(metrics, endpoint) {
  const v = one(metrics, "switchyard_experiment_verdict", { endpoint });
  if (v === null) return null;
  const metricsOf = samples(metrics, "switchyard_experiment_relative_lift_ratio", { endpoint }).map((s) => {
    const m = { endpoint, metric: s.labels.metric };
    const low = one(metrics, "switchyard_experiment_difference_low", m);
    const high = one(metrics, "switchyard_experiment_difference_high", m);
    return { metric: s.labels.metric, relative_lift: s.value, difference: low === null ? null : { low, high } };
  });
  return { verdict: v > 0 ? "ship" : v < 0 ? "kill" : "keep_running", reason: null, metrics: metricsOf };
}

function driftOf(metrics) {
  const out = samples(metrics, "switchyard_drift_psi").map((s) => ({
    model: s.labels.model,
    version: s.labels.version,
    series: s.labels.series,
    psi: s.value,
    level: ["ok", "warning", "critical"][one(metrics, "switchyard_drift_level", s.labels)] || null,
  }));
  return out.length ? out : null;
}

// ---- the admin view ----

/** The admin view: `/admin/console`'s answer, in the page's shape. */
export function adminView(data) {
  const reloads = (data.reloads || []).map(reloadEntry);
  return {
    mode: "admin",
    time_ms: data.time_ms,
    endpoints: data.rollouts.map((r) => rolloutView(r, reloads)),
    drift: null,
    fleet: data.fleet,
  };
}

function rolloutView(r, reloads) {
  const weight = r.canary_weight_percent;
  const pooled = r.fleet && r.fleet.pooled;
  const e = pooled || r.evidence;
  return {
    endpoint: r.endpoint,
    phase: r.phase,
    step: r.step,
    steps: r.plan && r.plan.steps ? r.plan.steps.length : null,
    fixed: r.plan && r.plan.fixed_percent !== undefined,
    paused: r.paused,
    weight,
    verdict: r.verdict,
    arms: [
      { arm: "control", model: r.control.model, version: r.control.version, weight: 100 - weight },
      { arm: "canary", model: r.canary.model, version: r.canary.version, weight },
      ...r.shadows.map((s) => ({ arm: "shadow", model: s.target.model, version: s.target.version, copies: s.sample_percent })),
    ],
    series: seriesOf(r.series),
    evidenceSeries: evidenceOf(r.series),
    evidence: {
      error: e.error_e_value,
      latency: e.latency_e_value,
      error_threshold: e.error_threshold,
      latency_threshold: e.latency_threshold,
      samples: { control: e.control_requests, canary: e.canary_requests },
      pooled: Boolean(pooled),
    },
    shadows: r.shadows.map((s) => {
      const a = s.agreement;
      const n = Math.max(a.compared, 1);
      return {
        name: `${s.target.model} v${s.target.version}`,
        compared: a.compared,
        errors: a.errors,
        exact: a.compared ? a.exact / n : null,
        argmax: a.argmax_rows ? a.argmax_agree / a.argmax_rows : null,
        cosine: a.compared ? a.cosine_sum / n : null,
        max_abs_diff: a.compared ? a.max_abs_diff : null,
      };
    }),
    drift: r.drift || null,
    experiment: r.experiment && r.experiment.report ? experimentView(r.experiment.report) : null,
    fleet: r.fleet || null,
    timeline: [...(r.history || []).map(historyEntry), ...reloads],
  };
}

/** Per second, oldest first, without the second still being counted. */
function seriesOf(s) {
  if (!s) return [];
  const out = [];
  for (let i = 0; i < s.control.requests.length - 1; i++) {
    const point = { t: (s.from + i) * 1000 };
    for (const arm of ARMS) {
      const a = s[arm];
      point[arm] = {
        rps: a.requests[i],
        errors: a.requests[i] ? a.failures[i] / a.requests[i] : null,
        p50: a.p50_ms[i],
        p99: a.p99_ms[i],
      };
    }
    out.push(point);
  }
  return out;
}

/** The e-values as each second began, where the server has them. */
function evidenceOf(s) {
  if (!s || !s.e_values) return null;
  const { error_rate: error, latency } = s.e_values;
  return error.map((e, i) => ({ t: (s.from + i) * 1000, error: e, latency: latency[i] })).filter((p) => p.error !== null);
}

function experimentView(report) {
  const metrics = [report.primary, ...report.guardrails].map((m, i) => ({ ...m, guardrail: i > 0 }));
  let reason = null;
  if (report.reason) {
    reason = report.reason.kind === "guardrail" ? `guardrail ${report.reason.metric} degraded` : "the primary metric dropped";
  }
  return { verdict: report.verdict, reason, metrics };
}

function reloadEntry(r) {
  const c = r.rollouts;
  const detail =
    r.result === "applied"
      ? `${c.kept} rollout(s) kept, ${c.continued} continued, ${c.started} started, ${c.removed} removed`
      : r.reason;
  return { time_ms: r.time_ms, kind: "reload", title: `config reload ${r.result}`, detail };
}

/** One audit line as a timeline entry. */
export function historyEntry(h) {
  const by = h.by ? ` by ${h.by}` : "";
  const at = (p, w) => `${phaseText(p)}, canary ${fmtPercent(w / 100)}`;
  switch (h.event) {
    case "decision": {
      const d = h.decision;
      switch (d.decision) {
        case "advanced":
          return { time_ms: h.time_ms, kind: "step", title: `step ${d.step + 1}: canary ${fmtPercent(d.weight_bp / 100)}`, detail: `steps passed${by}` };
        case "promoted":
          return { time_ms: h.time_ms, kind: "promotion", title: `promoted${by}`, detail: reasonText(d.reason) };
        case "rolled_back":
          return { time_ms: h.time_ms, kind: "rollback", title: `rolled back${by}`, detail: reasonText(d.reason) };
        default:
          return { time_ms: h.time_ms, kind: "admin", title: `${d.decision}${by}`, detail: at(h.phase, h.weight_bp) };
      }
    }
    case "adopted":
      return { time_ms: h.time_ms, kind: "admin", title: "adopted the fleet's state", detail: `fleet decision ${h.fleet_seq}${by}` };
    case "experiment_verdict":
      return { time_ms: h.time_ms, kind: "experiment", title: `experiment verdict: ${h.verdict}`, detail: "" };
    default:
      return { time_ms: h.time_ms, kind: "start", title: `rollout ${h.event}`, detail: h.why || at(h.phase, h.weight_bp) };
  }
}

function phaseText(p) {
  if (p && typeof p === "object" && "step" in p) return `step ${p.step + 1}`;
  return label(String(p));
}

/** A rollback's or promotion's reason, with its figures. */
export function reasonText(r) {
  if (!r) return "";
  switch (r.kind) {
    case "error_rate":
      return `error rate ${fmtPercent(r.canary_rate * 100)} against control's ${fmtPercent(r.control_rate * 100)} ` +
        `(${r.canary_requests} and ${r.control_requests} requests); e-value ${fmt(r.e_value)} reached ${fmt(r.threshold)}`;
    case "latency":
      return `p${Math.round(r.quantile * 100)} latency ${fmtMs(r.canary_seconds * 1000)} against control's ` +
        `${fmtMs(r.control_seconds * 1000)}; ${r.canary_events} of ${r.events} slow requests from the canary; ` +
        `e-value ${fmt(r.e_value)} reached ${fmt(r.threshold)}`;
    case "steps_passed":
      return "every step passed";
    case "admin":
      return "an operator's decision";
    case "canary_unavailable":
      return `the canary could not serve: ${r.message}`;
    case "experiment": {
      const lift = r.relative_lift === null || r.relative_lift === undefined ? "" : ` (lift ${fmtPercent(r.relative_lift * 100)})`;
      return `experiment verdict ${r.verdict} on ${r.metric}${lift}`;
    }
    default:
      return label(r.kind || "");
  }
}

// ---- formatting, shared with the rendering ----

export function label(s) {
  return s.replace(/_/g, " ");
}

export function fmt(x) {
  if (x === null || x === undefined || Number.isNaN(x)) return "–";
  if (x === 0) return "0";
  const a = Math.abs(x);
  if (a >= 1e4 || a < 1e-3) return x.toExponential(1);
  if (a >= 100) return x.toFixed(0);
  if (a >= 10) return x.toFixed(1);
  return x.toPrecision(2);
}

/** A count: whole, with thousands separated. */
export function fmtCount(x) {
  return x === null || x === undefined ? "–" : Math.round(x).toLocaleString("en");
}

export function fmtPercent(x) {
  return x === null || x === undefined ? "–" : `${fmt(x)} %`;
}

export function fmtMs(x) {
  return x === null || x === undefined ? "–" : `${fmt(x)} ms`;
}
