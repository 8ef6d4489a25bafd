// The console's loop: poll each second (the admin API with a token, `/metrics` without), draw every
// endpoint, and run the promote / rollback / pause / resume buttons, which ask for the admin token
// when the page has none and show the server's answer.

import { PublicModel, WINDOW_S, adminView, fmtPercent, label } from "./model.js";
import { driftPanel, endpointBody, h } from "./render.js";

const POLL_MS = 1000;
const TOKEN_KEY = "switchyard-admin-token";
const ACTIONS = ["promote", "rollback", "pause", "resume"];

const state = {
  token: sessionStorage.getItem(TOKEN_KEY),
  public: new PublicModel(),
  evidence: new Map(), // endpoint -> [{ t, error, latency }]
  cards: new Map(), // endpoint -> { section, body, answer, buttons }
  timer: null,
  polling: false,
  again: false,
};

const $ = (id) => document.getElementById(id);

function notice(text, cls = "") {
  const n = $("notice");
  n.textContent = text;
  n.className = cls;
  n.hidden = !text;
}

function useToken(token) {
  state.token = token;
  sessionStorage.setItem(TOKEN_KEY, token);
  showMode();
}

function forgetToken(why) {
  state.token = null;
  sessionStorage.removeItem(TOKEN_KEY);
  state.public = new PublicModel();
  showMode();
  if (why) notice(why, "bad");
}

function showMode() {
  $("mode").textContent = state.token ? "admin view" : "public view: what /metrics shows";
  $("mode").className = state.token ? "mode admin" : "mode public";
  $("sign-in").hidden = Boolean(state.token);
  $("sign-out").hidden = !state.token;
}

/**
 * Asks in a dialog: `why` says what happens; the token field shows only when `needToken`; the OK button
 * reads `ok`. Resolves to `{ token }` (the token typed, or null when none was asked), or null when
 * cancelled.
 */
function ask(why, ok, needToken) {
  const dialog = $("token-dialog");
  const input = $("token-input");
  $("token-why").textContent = why;
  $("token-ok").textContent = ok;
  $("token-field").hidden = !needToken;
  input.value = "";
  dialog.showModal();
  (needToken ? input : $("token-ok")).focus();
  return new Promise((resolve) => {
    const done = (answer) => {
      $("token-ok").onclick = $("token-cancel").onclick = input.onkeydown = dialog.oncancel = null;
      dialog.close();
      resolve(answer);
    };
    const accept = () => {
      const token = input.value.trim() || null;
      if (needToken && !token) return input.focus();
      done({ token });
    };
    $("token-ok").onclick = accept;
    $("token-cancel").onclick = () => done(null);
    dialog.oncancel = () => done(null);
    input.onkeydown = (e) => {
      if (e.key === "Enter") accept();
    };
  });
}

/** What each action does, said before it is done. */
const EFFECT = {
  promote: "the canary takes all traffic and becomes the version served",
  rollback: "the canary gets no more traffic; control serves everything",
  pause: "the weights hold where they are (automatic rollback stays armed)",
  resume: "the rollout goes on from where it was paused",
};

async function act(endpoint, action) {
  const card = state.cards.get(endpoint);
  const answer = (text, cls) => {
    card.answer.textContent = text;
    card.answer.className = `answer ${cls}`;
  };
  // Promote and rollback are asked about first, as is the token when the page has none.
  let token = state.token;
  if (!token || action === "promote" || action === "rollback") {
    const why = `${action} ${endpoint}: ${EFFECT[action]}.${token ? "" : " This needs the admin token."}`;
    const said = await ask(why, action, !token);
    if (!said) return answer(`${action}: cancelled`, "muted");
    token = token || said.token;
  }
  answer(`${action}: sending…`, "muted");
  let resp;
  try {
    resp = await fetch(`/admin/rollouts/${encodeURIComponent(endpoint)}/${action}`, {
      method: "POST",
      headers: { Authorization: `Bearer ${token}` },
    });
  } catch (e) {
    return answer(`${action}: the server could not be reached (${e.message})`, "bad");
  }
  const body = await resp.json().catch(() => ({}));
  if (resp.ok) {
    const r = body.rollout;
    answer(`${action}: done (${resp.status}); now ${label(r.phase)}${r.paused ? ", paused" : ""}, canary ${fmtPercent(r.canary_weight_percent)}`, "good");
    if (!state.token) useToken(token);
    return poll();
  }
  let why = body.error || resp.statusText;
  if (resp.status === 404 && why.startsWith("no route")) why = "the admin API is off on this server (start it with SWITCHYARD_ADMIN_TOKEN)";
  answer(`${action} refused (${resp.status}): ${why}`, "bad");
  if ((resp.status === 401 || resp.status === 403) && token === state.token) forgetToken("the admin token was refused; showing the public view");
}

function card(endpoint) {
  let c = state.cards.get(endpoint);
  if (c) return c;
  const buttons = Object.fromEntries(ACTIONS.map((a) => {
    const b = h("button", { type: "button", class: `action action-${a}`, "data-action": a }, a);
    b.addEventListener("click", () => act(endpoint, a));
    return [a, b];
  }));
  const answer = h("p", { class: "answer", role: "status", "aria-live": "polite" });
  const body = h("div", { class: "body" });
  const section = h("section", { class: "endpoint", "data-endpoint": endpoint },
    h("header", {}, h("h2", {}, endpoint), h("div", { class: "actions" }, Object.values(buttons))), answer, body);
  $("endpoints").append(section);
  c = { section, body, answer, buttons };
  state.cards.set(endpoint, c);
  return c;
}

/** The evidence over time: the server's, or (public view) as this page has seen it. */
function remember(v, t) {
  if (v.evidenceSeries) return v.evidenceSeries;
  const list = state.evidence.get(v.endpoint) || [];
  if (v.evidence.error !== null || v.evidence.latency !== null) list.push({ t, error: v.evidence.error, latency: v.evidence.latency });
  while (list.length && list[0].t < t - WINDOW_S * 1000) list.shift();
  state.evidence.set(v.endpoint, list);
  return list;
}

function draw(view) {
  const now = view.time_ms;
  const seen = new Set();
  for (const v of view.endpoints) {
    seen.add(v.endpoint);
    const c = card(v.endpoint);
    const body = endpointBody(v, remember(v, now), now);
    c.body.replaceWith(body);
    c.body = body;
    const finished = v.phase === "promoted" || v.phase === "rolled_back";
    for (const [a, b] of Object.entries(c.buttons)) {
      b.disabled = finished || (a === "pause" && v.paused === true) || (a === "resume" && v.paused === false);
    }
  }
  for (const [endpoint, c] of state.cards) {
    if (!seen.has(endpoint)) {
      c.section.remove();
      state.cards.delete(endpoint);
    }
  }
  $("empty").hidden = view.endpoints.length > 0;
  const global = $("global");
  global.replaceChildren(...[fleetLine(view.fleet), driftPanel((view.drift || []).map((d) =>
    [`${d.model} v${d.version}`, d.series, d.psi, d.level]), "Drift (every monitored version)")].filter(Boolean));
  $("updated").textContent = `updated ${new Date(now).toLocaleTimeString([], { hour12: false })}`;
}

function fleetLine(f) {
  if (!f) return null;
  const parts = [];
  if (f.replica !== undefined) parts.push(`this replica: ${f.replica}`, `leader: ${f.leader ?? "none"}`);
  else parts.push(f.leading ? "this replica leads" : "this replica follows");
  parts.push(f.etcd_up ? "etcd up" : "etcd unreachable");
  return h("p", { class: "fleet" }, `Fleet · ${parts.join(" · ")}`);
}

async function poll() {
  clearTimeout(state.timer);
  // One look at a time: a button's poll during a scheduled one waits for it (two scrapes a few
  // milliseconds apart would make a meaningless rate).
  if (state.polling) {
    state.again = true;
    return;
  }
  state.polling = true;
  const started = performance.now();
  try {
    let view;
    if (state.token) {
      const resp = await fetch("/admin/console", { headers: { Authorization: `Bearer ${state.token}` }, cache: "no-store" });
      if (resp.status === 401 || resp.status === 403 || resp.status === 404) {
        const why = resp.status === 404 ? "the admin API is off on this server" : "the admin token was refused";
        forgetToken(`${why}; showing the public view`);
        state.again = true;
      } else if (!resp.ok) {
        throw new Error(`/admin/console answered ${resp.status}`);
      } else {
        view = adminView(await resp.json());
      }
    } else {
      const resp = await fetch("/metrics", { cache: "no-store" });
      if (!resp.ok) throw new Error(`/metrics answered ${resp.status}`);
      view = state.public.update(await resp.text(), Date.now());
    }
    if (view) draw(view);
    if (view && $("notice").className === "offline") notice("");
  } catch (e) {
    notice(`no answer from the server (${e.message}); retrying each second`, "offline");
  }
  state.polling = false;
  const again = state.again;
  state.again = false;
  schedule(again ? 0 : Math.max(100, POLL_MS - (performance.now() - started)));
}

function schedule(ms) {
  clearTimeout(state.timer);
  state.timer = setTimeout(poll, ms);
}

$("sign-in").addEventListener("click", async () => {
  const said = await ask("The admin token shows each arm's model, the plan and the figures behind each decision.", "use token", true);
  if (said) {
    useToken(said.token);
    notice("");
    poll();
  }
});
$("sign-out").addEventListener("click", () => {
  forgetToken(null);
  poll();
});
showMode();
poll();
