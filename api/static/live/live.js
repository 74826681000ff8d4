// Riverbed's live page: follows /v1/live/metrics with a plain EventSource, from this origin.
//
// Signing in with a username and password opens a cookie session (HttpOnly: this script never
// sees a token), which EventSource sends by itself. Signing in with an API key keeps the key in
// this page's memory only and trades it for a one-minute stream token per connection
// (POST /v1/auth/stream-token), as EventSource cannot send headers. When the server refuses a
// reconnect (the token or the session expired), the page renews it and reopens the stream with
// ?last_event_id= so nothing is missed; "reset" means the server no longer holds what was
// missed, and a fresh snapshot follows. Values from producers are shown with textContent only.
"use strict";

const MAX_ROWS = 500; // windows shown; the oldest go first
const RETRY_MS = 2000;

const state = {
  key: null, // an API key typed in, or null with a cookie session
  lastId: null, // id of the last message received: where a reopened stream resumes
  source: null,
  filters: {},
  rows: new Map(), // "stream|field|group|window_start" -> <tr>
};

const $ = (selector) => document.querySelector(selector);

function status(text, kind = "") {
  const line = $("#status");
  line.textContent = text;
  line.className = kind;
}

async function signedIn() {
  const response = await fetch("/v1/me", { credentials: "same-origin" });
  return response.ok;
}

async function signIn(form) {
  const data = new FormData(form);
  const key = String(data.get("key") || "").trim();
  if (key) {
    state.key = key;
    await streamToken(); // fails now if the key is wrong, not at the first connection
    return;
  }
  const response = await fetch("/v1/auth/session", {
    method: "POST",
    credentials: "same-origin",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ username: data.get("username"), password: data.get("password") }),
  });
  if (!response.ok) throw new Error(await problem(response));
}

async function problem(response) {
  try {
    const body = await response.json();
    return body.detail || body.title || response.statusText;
  } catch {
    return `${response.status} ${response.statusText}`;
  }
}

async function streamToken() {
  const response = await fetch("/v1/auth/stream-token", {
    method: "POST",
    headers: { Authorization: `Bearer ${state.key}` },
  });
  if (!response.ok) throw new Error(await problem(response));
  return (await response.json()).stream_token;
}

// Whatever let the last connection in may have expired: a new stream token, or a renewed
// session (its refresh cookie is sent to this path only).
async function renew() {
  if (state.key) return;
  await fetch("/v1/auth/session/refresh", { method: "POST", credentials: "same-origin" });
}

async function streamUrl() {
  const query = new URLSearchParams(state.filters);
  if (state.key) query.set("stream_token", await streamToken());
  if (state.lastId) query.set("last_event_id", state.lastId);
  return `/v1/live/metrics?${query}`;
}

async function follow() {
  if (state.source) state.source.close();
  let source;
  try {
    source = new EventSource(await streamUrl(), { withCredentials: false });
  } catch (error) {
    status(`cannot follow: ${error.message}; retrying`, "trouble");
    setTimeout(follow, RETRY_MS);
    return;
  }
  state.source = source;
  source.addEventListener("snapshot", (event) => show(JSON.parse(event.data)));
  source.addEventListener("ready", (event) => {
    state.lastId = event.lastEventId;
    status("live", "live");
  });
  source.addEventListener("metric", (event) => {
    state.lastId = event.lastEventId;
    show(JSON.parse(event.data), true);
  });
  source.addEventListener("reset", () => {
    state.rows.clear();
    $("#windows tbody").replaceChildren();
    status("missed updates are no longer kept: showing a fresh snapshot", "trouble");
  });
  for (const kind of ["cut", "shutdown"]) {
    source.addEventListener(kind, (event) => {
      status(`${kind}: ${JSON.parse(event.data).reason}`, "trouble");
    });
  }
  source.onerror = (event) => {
    if (event.data) {
      // the server's own "error" message (it lost Redis): EventSource reconnects by itself
      status(`error: ${JSON.parse(event.data).reason}`, "trouble");
    } else if (source.readyState === EventSource.CLOSED && source === state.source) {
      // refused outright (401, 429, 503): EventSource gives up; reopen from lastId
      status("reconnecting...", "trouble");
      renew().finally(() => setTimeout(follow, RETRY_MS));
    } else {
      status("reconnecting...", "trouble");
    }
  };
}

function cell(row, index, text) {
  row.children[index].textContent = text;
}

function number(value) {
  return value === null || value === undefined ? "" : String(Math.round(value * 1000) / 1000);
}

function show(update, fresh = false) {
  const id = [update.stream, update.field, update.group, update.window_start].join("|");
  let row = state.rows.get(id);
  if (!row) {
    row = document.createElement("tr");
    for (let i = 0; i < 10; i += 1) row.appendChild(document.createElement("td"));
    cell(row, 0, update.stream);
    cell(row, 1, update.field);
    cell(row, 2, update.group);
    cell(row, 3, new Date(update.window_start).toISOString().replace(".000Z", "Z"));
    $("#windows tbody").prepend(row);
    state.rows.set(id, row);
    if (state.rows.size > MAX_ROWS) {
      const [oldest] = state.rows.keys();
      state.rows.get(oldest).remove();
      state.rows.delete(oldest);
    }
  }
  cell(row, 4, number(update.count));
  cell(row, 5, number(update.sum));
  cell(row, 6, number(update.avg));
  cell(row, 7, number(update.min));
  cell(row, 8, number(update.max));
  cell(row, 9, update.final ? "yes" : "");
  row.dataset.count = String(update.count);
  if (fresh) {
    row.classList.add("updated");
    setTimeout(() => row.classList.remove("updated"), 600);
  }
}

function start() {
  $("#sign-in").hidden = true;
  $("#follow").hidden = false;
  $("#windows").hidden = false;
  const params = new URLSearchParams(location.search);
  for (const name of ["stream", "field", "group"]) {
    const value = params.get(name);
    if (value) {
      state.filters[name] = value;
      $(`#follow [name=${name}]`).value = value;
    }
  }
  follow();
}

$("#sign-in").addEventListener("submit", async (event) => {
  event.preventDefault();
  try {
    await signIn(event.target);
    start();
  } catch (error) {
    state.key = null;
    status(`sign-in failed: ${error.message}`, "trouble");
  }
});

$("#follow").addEventListener("submit", (event) => {
  event.preventDefault();
  const data = new FormData(event.target);
  state.filters = {};
  for (const name of ["stream", "field", "group"]) {
    const value = String(data.get(name) || "").trim();
    if (value) state.filters[name] = value;
  }
  state.lastId = null; // another selection: start from its snapshot
  state.rows.clear();
  $("#windows tbody").replaceChildren();
  follow();
});

signedIn().then((yes) => {
  if (yes) start();
  else {
    $("#sign-in").hidden = false;
    status("sign in to follow live metrics");
  }
});
