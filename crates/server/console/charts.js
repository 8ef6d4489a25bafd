// Line charts drawn as SVG by hand (no library to vendor): time on x, linear or log y, gaps where an
// arm had nothing to show, an optional threshold line. Each chart scales to its box, so it fits a
// phone as well as a desktop.

const NS = "http://www.w3.org/2000/svg";
const W = 320;
const H = 130;
const PAD = { left: 42, right: 8, top: 8, bottom: 18 };

function el(tag, attrs = {}, text) {
  const e = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = text;
  return e;
}

/** Round numbers for a linear axis from 0 to at least `max`. */
function linearTicks(max) {
  if (!(max > 0)) return [0, 1];
  const step = 10 ** Math.floor(Math.log10(max / 2));
  const nice = [1, 2, 5, 10].map((m) => m * step).find((s) => max / s <= 4) || 10 * step;
  const ticks = [];
  for (let v = 0; v < max + nice * 0.999; v += nice) ticks.push(v);
  return ticks;
}

function tickText(v) {
  if (v === 0) return "0";
  const a = Math.abs(v);
  if (a >= 1e4 || a < 1e-2) return v.toExponential(0);
  return String(Number(v.toPrecision(3)));
}

/**
 * An SVG chart. `lines`: [{ label, cls, points: [[t_ms, value or null]] }]; `from`/`to`: the time
 * span (ms); `log`: a log axis (values clipped to `floor`); `threshold`: a dashed line at that value;
 * `marks`: [{ t, cls }] vertical lines at decisions.
 */
export function lineChart({ lines, from, to, log = false, floor = 1e-3, threshold = null, unit = "", marks = [] }) {
  const values = lines.flatMap((l) => l.points.map((p) => p[1])).filter((v) => v !== null && Number.isFinite(v));
  if (threshold !== null) values.push(threshold);
  const svg = el("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img" });
  const x = (t) => PAD.left + ((t - from) / Math.max(to - from, 1)) * (W - PAD.left - PAD.right);
  let ticks;
  let y;
  const top = PAD.top;
  const bottom = H - PAD.bottom;
  if (log) {
    const hi = Math.max(...values, floor * 10);
    const lo = Math.min(floor, ...values.filter((v) => v > 0));
    const [a, b] = [Math.floor(Math.log10(Math.max(lo, floor))), Math.ceil(Math.log10(hi))];
    ticks = [];
    for (let k = a; k <= b; k += Math.max(1, Math.ceil((b - a) / 4))) ticks.push(10 ** k);
    y = (v) => {
      const l = Math.log10(Math.max(v, 10 ** a));
      return bottom - ((l - a) / Math.max(b - a, 1)) * (bottom - top);
    };
  } else {
    ticks = linearTicks(Math.max(...values, 0));
    const max = ticks[ticks.length - 1];
    y = (v) => bottom - (v / max) * (bottom - top);
  }
  for (const v of ticks) {
    svg.append(el("line", { x1: PAD.left, x2: W - PAD.right, y1: y(v), y2: y(v), class: "grid" }));
    svg.append(el("text", { x: PAD.left - 4, y: y(v) + 3, class: "tick", "text-anchor": "end" }, tickText(v) + unit));
  }
  const span = to - from;
  const step = [10e3, 15e3, 30e3, 60e3].find((st) => span / st <= 6) || 60e3;
  for (let back = Math.floor(span / step) * step; back >= 0; back -= step) {
    const text = back === 0 ? "now" : step < 60e3 ? `-${back / 1000}s` : `-${back / 60e3}m`;
    svg.append(el("text", { x: x(to - back), y: H - 4, class: "tick", "text-anchor": back === 0 ? "end" : "middle" }, text));
  }
  for (const m of marks.filter((m) => m.t >= from && m.t <= to)) {
    svg.append(el("line", { x1: x(m.t), x2: x(m.t), y1: top, y2: bottom, class: `mark ${m.cls}` }));
  }
  if (threshold !== null) {
    svg.append(el("line", { x1: PAD.left, x2: W - PAD.right, y1: y(threshold), y2: y(threshold), class: "threshold" }));
  }
  let drawn = 0;
  for (const line of lines) {
    let d = "";
    let pen = false;
    for (const [t, v] of line.points) {
      if (v === null || !Number.isFinite(v) || t < from) {
        pen = false;
        continue;
      }
      // A lone point still shows: every move draws a zero-length stroke (round caps make it a dot).
      d += `${pen ? "L" : "M"}${x(t).toFixed(1)},${y(v).toFixed(1)}${pen ? "" : "l0,0"}`;
      pen = true;
      drawn += 1;
    }
    if (d) svg.append(el("path", { d, class: `line ${line.cls}` }));
  }
  svg.setAttribute("data-points", String(drawn));
  return svg;
}
