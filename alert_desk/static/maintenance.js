// The maintenance tab: drones the stream's model expects to fail soon, apart from the violations' alerts.
// Each card shows the drone's last hour of health as a small chart (motor temperature and vibration, each
// scaled to its own range) and a button to say the drone was sent to maintenance. Kept beside app.js, not
// in it: the violations' page is its own program; this one shares its sign-in and its api() calls.
"use strict";

(() => {
  const byId = (id) => document.getElementById(id);

  // Every call goes through app.js's api(): one place signs out on 401 and turns errors into messages.

  // A series scaled into the chart's box; readings a message lacked are left out.
  function points(health, field, width, height) {
    const readings = health.map((point, index) => [index, point[field]]).filter(([, value]) => value !== null);
    if (!readings.length) return "";
    const values = readings.map(([, value]) => value);
    const low = Math.min(...values), span = Math.max(...values) - low || 1;
    const last = Math.max(health.length - 1, 1);
    return readings.map(([index, value]) => `${(index / last) * width},${height - ((value - low) / span) * (height - 8) - 4}`).join(" ");
  }

  function stateText(alert) {
    return alert.status === "sent" ? `Sent to maintenance by ${alert.sent_by} at ${alert.sent_at}` : "Waiting for an operator";
  }

  function fill(card, alert) {
    card.dataset.status = alert.status;
    card.querySelector(".badge").textContent = alert.status === "sent" ? "sent" : "open";
    card.querySelector(".state").textContent = stateText(alert);
    card.querySelector(".sent").disabled = alert.status === "sent";
  }

  async function showHealth(card, alert) {
    const { health } = await api(`/api/maintenance/${encodeURIComponent(alert.alert_id)}/health`);
    card.querySelector("polyline.temperature").setAttribute("points", points(health, "motor_temp_c", 240, 80));
    card.querySelector("polyline.vibration").setAttribute("points", points(health, "vibration_g", 240, 80));
    card.querySelector("svg.health").dataset.points = String(health.length);
  }

  function newCard(alert) {
    const card = byId("maintenance-template").content.firstElementChild.cloneNode(true);
    card.dataset.alertId = alert.alert_id;
    card.querySelector(".drone").textContent = alert.drone_id;
    card.querySelector(".risk").textContent = `risk ${alert.failure_risk.toFixed(2)} ≥ ${alert.threshold}`;
    card.querySelector(".time").textContent = alert.scored_at;
    fill(card, alert);
    card.querySelector(".sent").addEventListener("click", async () => {
      const error = card.querySelector(".error");
      error.textContent = "";
      try {
        fill(card, await api(`/api/maintenance/${encodeURIComponent(alert.alert_id)}/sent`, { method: "POST" }));
      } catch (failure) {
        error.textContent = failure.message;
      }
    });
    showHealth(card, alert).catch((failure) => { card.querySelector(".error").textContent = failure.message; });
    return card;
  }

  async function load() {
    const alerts = await api("/api/maintenance?status=all");
    const list = byId("maintenance");
    list.replaceChildren(...alerts.map(newCard));
    byId("maintenance-empty").hidden = alerts.length > 0;
  }

  function show(maintenance) {
    byId("maintenance-view").hidden = !maintenance;
    byId("violations-view").hidden = maintenance;
    byId("tab-maintenance").setAttribute("aria-pressed", String(maintenance));
    byId("tab-violations").setAttribute("aria-pressed", String(!maintenance));
    if (maintenance) load().catch((failure) => { byId("maintenance-empty").hidden = false; byId("maintenance-empty").textContent = failure.message; });
  }

  document.addEventListener("DOMContentLoaded", () => {
    byId("tab-maintenance").addEventListener("click", () => show(true));
    byId("tab-violations").addEventListener("click", () => show(false));
  });
})();
