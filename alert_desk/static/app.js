// The alert desk page: the list of alerts, kept live by the server's event stream.
// Everything shown comes from /api/ (the same calls a script makes); text is always set
// with textContent, never parsed as HTML.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const PAGE_SIZE = 20;  // cards the list starts with; "Show more" adds as many again
const STATUS_RANK = { open: 0, acknowledged: 1, resolved: 2 };
const PAGE_TITLE = document.title;
const NEW_YORK_TIME = new Intl.DateTimeFormat("en-US", {
  timeZone: "America/New_York", month: "short", day: "numeric",
  hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false,
});

const state = {
  alerts: new Map(),        // alert_id -> alert, as the API returns it, for the cards in the list
  statuses: new Map(),      // alert_id -> the latest status heard of, listed or not, so a late event never undoes it
  counts: { open: 0, acknowledged: 0, resolved: 0 },
  total: 0,                 // how many alerts match the filter, shown or not
  wanted: PAGE_SIZE,        // how many of them the list shows, newest first
  unseen: 0,                // alerts that arrived at the top of the list since the operator last went there
  counted: new Set(),       // "alert_id>status" transitions already in the counters
  codes: new Map(),         // code -> description
  projection: null,
};

const $ = (id) => document.getElementById(id);
const statusFilter = () => $("status-filter").value;
const boroughFilter = () => $("borough-filter").value;

async function api(path, options = {}) {
  const response = await fetch(path, {
    credentials: "same-origin",
    headers: { "Accept": "application/json", ...(options.body ? { "Content-Type": "application/json" } : {}) },
    ...options,
  });
  if (response.status === 401) {
    window.location.assign("/signin");
    throw new Error("signed out");
  }
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.detail || `${response.status} ${response.statusText}`);
  return body;
}

// Maps: one projection of the bundled borough outlines, drawn once into <defs> and reused.

function projectionFor(features) {
  let west = Infinity, east = -Infinity, south = Infinity, north = -Infinity;
  for (const feature of features) {
    for (const polygon of feature.geometry.coordinates) {
      for (const [lon, lat] of polygon[0]) {
        west = Math.min(west, lon); east = Math.max(east, lon);
        south = Math.min(south, lat); north = Math.max(north, lat);
      }
    }
  }
  const pad = 0.015, lonScale = Math.cos((40.7 * Math.PI) / 180), unit = 2200;
  west -= pad; east += pad; south -= pad; north += pad;
  return {
    width: (east - west) * lonScale * unit,
    height: (north - south) * unit,
    point: (lon, lat) => [(lon - west) * lonScale * unit, (north - lat) * unit],
  };
}

function pathFor(feature, projection) {
  return feature.geometry.coordinates.map((polygon) =>
    "M" + polygon[0].map(([lon, lat]) => projection.point(lon, lat).map((v) => v.toFixed(1)).join(",")).join("L") + "Z"
  ).join("");
}

function drawMaps(geojson) {
  const projection = projectionFor(geojson.features);
  state.projection = projection;
  const outline = document.createElementNS(SVG, "g");
  outline.id = "nyc";
  const overview = $("overview-map");
  overview.setAttribute("viewBox", `0 0 ${projection.width.toFixed(0)} ${projection.height.toFixed(0)}`);
  const water = document.createElementNS(SVG, "rect");
  water.setAttribute("class", "water");
  water.setAttribute("width", projection.width.toFixed(0));
  water.setAttribute("height", projection.height.toFixed(0));
  overview.append(water);
  for (const feature of geojson.features) {
    const name = feature.properties.name;
    const d = pathFor(feature, projection);
    const small = document.createElementNS(SVG, "path");
    small.setAttribute("d", d);
    small.id = boroughId(name);
    outline.append(small);
    const big = document.createElementNS(SVG, "path");
    big.setAttribute("d", d);
    big.setAttribute("class", "borough");
    big.dataset.borough = name;
    const title = document.createElementNS(SVG, "title");
    title.textContent = name;
    big.append(title);
    big.addEventListener("click", () => {
      $("borough-filter").value = boroughFilter() === name ? "" : name;
      reload();
    });
    overview.append(big);
    overview.append(boroughLabel(feature, projection));
  }
  const dots = document.createElementNS(SVG, "g");
  dots.id = "overview-dots";
  overview.append(dots);
  $("map-defs").append(outline);
}

function boroughId(name) {
  return `borough-${name.toLowerCase().replace(/[^a-z]+/g, "-")}`;
}

function boroughLabel(feature, projection) {
  const [x, y] = projection.point(...feature.properties.label);
  const label = document.createElementNS(SVG, "text");
  label.setAttribute("x", x.toFixed(0));
  label.setAttribute("y", y.toFixed(0));
  label.setAttribute("class", "borough-label");
  label.textContent = feature.properties.name;
  return label;
}

function drawOverviewDots() {
  const dots = $("overview-dots");
  if (!dots || !state.projection) return;
  dots.replaceChildren();
  for (const alert of state.alerts.values()) {
    const [x, y] = state.projection.point(alert.longitude, alert.latitude);
    const dot = document.createElementNS(SVG, "circle");
    dot.setAttribute("cx", x.toFixed(1));
    dot.setAttribute("cy", y.toFixed(1));
    dot.setAttribute("r", "15");
    dot.setAttribute("class", `dot ${alert.status}`);
    dots.append(dot);
  }
}

// Alert cards.

function matchesFilter(alert) {
  const statuses = statusFilter() ? statusFilter().split(",") : null;
  const borough = boroughFilter();
  if (statuses && !statuses.includes(alert.status)) return false;
  if (borough === "unknown") return alert.borough === null;
  return !borough || alert.borough === borough;
}

function ageText(iso) {
  const seconds = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
  if (seconds < 60) return `${seconds} s ago`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ago`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)} h ${Math.floor((seconds % 3600) / 60)} min ago`;
  return `${Math.floor(seconds / 86400)} d ago`;
}

function timeText(iso) {
  return iso ? NEW_YORK_TIME.format(new Date(iso)) : "";
}

function codeText(code) {
  const description = state.codes.get(code);
  return description ? `${code} · ${description}` : String(code);
}

function stateText(alert) {
  if (alert.status === "resolved") {
    return `Resolved as ${codeText(alert.resolved_code)} — by ${alert.resolved_by} at ${timeText(alert.resolved_at)}`;
  }
  if (alert.status === "acknowledged") {
    return `Acknowledged by ${alert.acknowledged_by} at ${timeText(alert.acknowledged_at)}`;
  }
  return "Waiting for an operator";
}

function newCard(alert) {
  const card = $("alert-template").content.firstElementChild.cloneNode(true);
  card.dataset.alertId = alert.alert_id;
  const map = card.querySelector(".minimap");
  if (state.projection) {
    map.setAttribute("viewBox", `0 0 ${state.projection.width.toFixed(0)} ${state.projection.height.toFixed(0)}`);
    card.querySelector(".outline").setAttribute("href", "#nyc");
    if (alert.borough) card.querySelector(".here").setAttribute("href", `#${boroughId(alert.borough)}`);
    const [x, y] = state.projection.point(alert.longitude, alert.latitude);
    const pin = card.querySelector(".pin");
    pin.setAttribute("cx", x.toFixed(1));
    pin.setAttribute("cy", y.toFixed(1));
  }
  const select = card.querySelector(".code");
  for (const [code, description] of state.codes) {
    const option = document.createElement("option");
    option.value = String(code);
    option.textContent = `${code} · ${description}`;
    select.append(option);
  }
  card.querySelector(".ack").addEventListener("click", () => act(card, `/api/alerts/${alert.alert_id}/ack`, null));
  card.querySelector(".resolve").addEventListener("submit", (event) => {
    event.preventDefault();
    const code = Number(select.value);
    if (code) act(card, `/api/alerts/${alert.alert_id}/resolve`, { violation_code: code });
  });
  fillCard(card, alert);
  return card;
}

function fillCard(card, alert) {
  card.dataset.status = alert.status;
  card.dataset.observed = alert.observed_at;
  card.querySelector(".drone").textContent = alert.drone_id;
  const badge = card.querySelector(".badge");
  badge.textContent = alert.status;
  badge.className = `badge ${alert.status}`;
  card.querySelector(".age").textContent = ageText(alert.observed_at);
  card.querySelector(".time").textContent = `${timeText(alert.observed_at)} (New York)`;
  const place = alert.borough || "outside the five boroughs";
  card.querySelector(".where").textContent =
    `${place} · ${alert.latitude.toFixed(5)}, ${alert.longitude.toFixed(5)}`;
  card.querySelector(".image").textContent = alert.image_id;
  card.querySelector(".state").textContent = stateText(alert);
  card.querySelector(".ack").hidden = alert.status !== "open";
  card.querySelector(".resolve").hidden = alert.status === "resolved";
  showPhoto(card, alert);
}

// Photos: the drone's picture on each card and, larger, in the alert's detail view; a
// placeholder where the lake's store has none (the API flags it photo_missing).

function photoFor(alert, className) {
  if (alert.photo_missing) {
    const placeholder = document.createElement("div");
    placeholder.className = `${className} photo-missing`;
    placeholder.setAttribute("role", "img");
    placeholder.setAttribute("aria-label", `no photo stored for ${alert.image_id}`);
    placeholder.textContent = "No photo stored";
    return placeholder;
  }
  const image = document.createElement("img");
  image.className = className;
  image.src = alert.photo_url;
  image.alt = `the drone's photo ${alert.image_id}`;
  image.addEventListener("error", () => image.replaceWith(photoFor({ ...alert, photo_missing: true }, className)), { once: true });
  return image;
}

function showPhoto(card, alert) {
  const shown = card.querySelector(".photo");
  if (shown && shown.classList.contains("photo-missing") === alert.photo_missing) return;
  const photo = photoFor(alert, "photo");
  photo.title = "Open the alert";
  photo.addEventListener("click", () => openDetail(alert.alert_id).catch((failure) => {
    card.querySelector(".error").textContent = failure.message;
  }));
  if (shown) shown.replaceWith(photo);
  else card.querySelector(".body").prepend(photo);
}

async function openDetail(alertId) {
  const { alert, audit } = await api(`/api/alerts/${encodeURIComponent(alertId)}`);
  let dialog = $("alert-detail");
  if (!dialog) {
    dialog = document.createElement("dialog");
    dialog.id = "alert-detail";
    dialog.className = "detail";
    dialog.addEventListener("click", (event) => { if (event.target === dialog) dialog.close(); });
    document.body.append(dialog);
  }
  const close = document.createElement("button");
  close.type = "button";
  close.className = "close";
  close.textContent = "Close";
  close.addEventListener("click", () => dialog.close());
  const title = document.createElement("h2");
  title.textContent = `${alert.drone_id} · ${timeText(alert.observed_at)} (New York)`;
  const facts = document.createElement("p");
  facts.textContent = `${alert.borough || "outside the five boroughs"} · ${stateText(alert)} · image ${alert.image_id}`;
  const trail = document.createElement("ol");
  trail.className = "audit";
  for (const entry of audit) {
    const item = document.createElement("li");
    item.textContent = `${timeText(entry.at)} · ${entry.operator} · ${entry.action}`;
    trail.append(item);
  }
  dialog.replaceChildren(close, photoFor(alert, "detail-photo"), title, facts, trail);
  if (!dialog.open) dialog.showModal();
}

async function act(card, path, body) {
  const error = card.querySelector(".error");
  const buttons = card.querySelectorAll("button");
  error.textContent = "";
  buttons.forEach((button) => { button.disabled = true; });
  try {
    const answer = await api(path, { method: "POST", body: body ? JSON.stringify(body) : undefined });
    upsert(answer.alert || answer);
  } catch (failure) {
    error.textContent = failure.message;
  } finally {
    buttons.forEach((button) => { button.disabled = false; });
  }
}

// Every change of an alert, from this page or another, goes through here: the list holds exactly the
// alerts that match the filter, so a card whose alert stops matching (resolved under "Open &
// acknowledged", say) leaves it, and one that starts matching joins it.
function upsert(alert, { fresh = false } = {}) {
  if (isOutdated(alert)) return;  // a late, older event
  state.statuses.set(alert.alert_id, alert.status);
  const card = $("alerts").querySelector(`[data-alert-id="${CSS.escape(alert.alert_id)}"]`);
  if (card && matchesFilter(alert)) {
    state.alerts.set(alert.alert_id, alert);
    fillCard(card, alert);
  } else if (card) {
    dropCard(card);
  } else if (matchesFilter(alert)) {
    addCard(alert, fresh);
  }
  render();
}

function isOutdated(alert) {
  const latest = state.statuses.get(alert.alert_id);
  return latest !== undefined && STATUS_RANK[latest] > STATUS_RANK[alert.status];
}

function addCard(alert, fresh) {
  state.alerts.set(alert.alert_id, alert);
  const card = newCard(alert);
  if (fresh) {
    card.classList.add("fresh");
    card.addEventListener("animationend", () => card.classList.remove("fresh"), { once: true });
    state.unseen += 1;
  }
  $("alerts").prepend(card);
  state.total += 1;
  trimToPage();
}

function dropCard(card) {
  state.alerts.delete(card.dataset.alertId);
  card.remove();
  state.total = Math.max(0, state.total - 1);
  topUp().catch((failure) => setLive("down", failure.message));  // the next alert of the queue moves up
}

// A card pushed past the wanted ones by a newer alert is not lost: "Show more" reaches it.
function trimToPage() {
  const list = $("alerts");
  while (list.children.length > state.wanted) {
    const last = list.lastElementChild;
    state.alerts.delete(last.dataset.alertId);
    last.remove();
  }
}

function render() {
  for (const status of Object.keys(state.counts)) {
    $(`count-${status}`).textContent = state.counts[status].toLocaleString("en-US");
  }
  document.querySelectorAll(".counter").forEach((button) => {
    button.classList.toggle("selected", statusFilter() === button.dataset.status);
  });
  document.querySelectorAll("#overview-map .borough").forEach((path) => {
    path.classList.toggle("selected", boroughFilter() === path.dataset.borough);
  });
  const shown = $("alerts").children.length;
  $("empty").hidden = shown > 0;
  $("showing").textContent = shown ? `showing ${shown} of ${Math.max(shown, state.total).toLocaleString("en-US")}` : "";
  const more = $("more");
  more.hidden = shown >= state.total;
  more.textContent = `Show ${Math.min(PAGE_SIZE, state.total - shown).toLocaleString("en-US")} more`;
  renderArrivals();
  drawOverviewDots();
}

// An operator deep in a long queue, or on another tab, would not see a card arrive at the top: a
// notice says how many did until it is clicked, and the tab's title says how many are open.
function renderArrivals() {
  const notice = $("new-alerts");
  notice.hidden = state.unseen === 0;
  notice.textContent = `${state.unseen.toLocaleString("en-US")} new alert${state.unseen === 1 ? "" : "s"}`;
  const counts = [`${state.counts.open.toLocaleString("en-US")} open`];
  if (state.unseen) counts.unshift(`${state.unseen.toLocaleString("en-US")} new`);
  document.title = `(${counts.join(" · ")}) ${PAGE_TITLE}`;
}

function showArrivals() {
  window.scrollTo(0, 0);
  state.unseen = 0;
  render();
}

function listPath(offset, limit) {
  const query = new URLSearchParams({ offset: String(offset), limit: String(limit) });
  if (statusFilter()) query.set("status", statusFilter());
  if (boroughFilter()) query.set("borough", boroughFilter());
  return `/api/alerts?${query}`;
}

function listedCard(alert) {
  state.alerts.set(alert.alert_id, alert);
  state.statuses.set(alert.alert_id, alert.status);
  return newCard(alert);
}

// The list from its first page: after a filter change, a reconnect, or when the stream fell behind.
async function reload() {
  const answer = await api(listPath(0, PAGE_SIZE));
  state.wanted = PAGE_SIZE;
  state.alerts.clear();
  state.counts = answer.counts;
  state.total = answer.total;
  $("alerts").replaceChildren(...answer.alerts.map(listedCard));
  render();
}

function showMore() {
  state.wanted += PAGE_SIZE;
  topUp().catch((failure) => setLive("down", failure.message));
}

// Fetch the alerts the list lacks, from where it ends: after "Show more", or when cards left the list.
// The counters and the total stay with the events: this answer may already hold a change whose event
// is still on its way, and would count it twice.
async function topUp() {
  const shown = $("alerts").children.length;
  if (shown >= Math.min(state.wanted, state.total)) return;
  const answer = await api(listPath(shown, state.wanted - shown));
  const unlisted = answer.alerts.filter((alert) => !state.alerts.has(alert.alert_id) && !isOutdated(alert));
  $("alerts").append(...unlisted.map(listedCard));
  trimToPage();
  render();
}

// Live updates.

function setLive(mode, text) {
  $("live").dataset.state = mode;
  $("live-text").textContent = text;
}

function listen() {
  const events = new EventSource("/api/events");
  events.addEventListener("hello", () => {
    setLive("live", "live");
    reload().catch((failure) => setLive("down", failure.message));
  });
  events.addEventListener("alert", (event) => {
    const alert = JSON.parse(event.data);
    if (state.statuses.has(alert.alert_id)) return;  // already listed
    state.counts[alert.status] += 1;
    upsert(alert, { fresh: true });
  });
  events.addEventListener("update", (event) => {
    const { alert, previous_status: previous } = JSON.parse(event.data);
    const transition = `${alert.alert_id}>${alert.status}`;
    if (!state.counted.has(transition)) {
      state.counted.add(transition);
      state.counts[previous] = Math.max(0, state.counts[previous] - 1);
      state.counts[alert.status] += 1;
    }
    upsert(alert);
  });
  events.addEventListener("resync", () => reload());
  events.addEventListener("error", () => setLive("down", "reconnecting…"));
}

function tickAges() {
  document.querySelectorAll(".alert").forEach((card) => {
    card.querySelector(".age").textContent = ageText(card.dataset.observed);
  });
}

async function start() {
  const [me, codes, boroughs] = await Promise.all([api("/api/me"), api("/api/codes"), api("/api/boroughs")]);
  $("operator").textContent = me.operator;
  for (const code of codes) state.codes.set(code.code, code.description);
  drawMaps(boroughs);
  $("status-filter").addEventListener("change", reload);
  $("borough-filter").addEventListener("change", reload);
  $("more").addEventListener("click", showMore);
  $("new-alerts").addEventListener("click", showArrivals);
  document.querySelectorAll(".counter").forEach((button) => {
    button.addEventListener("click", () => {
      $("status-filter").value = button.dataset.status;
      reload();
    });
  });
  setInterval(tickAges, 5000);
  listen();
}

start().catch((failure) => setLive("down", failure.message));
