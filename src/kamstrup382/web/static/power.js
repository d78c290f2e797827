// The live power of a meter with a pulse input (pin 3): the figure, polled every few seconds,
// and the per-minute power of the last 24 hours, drawn with plotly.js. A meter without a pulse
// input has no such section (the page is told by the server).
"use strict";

(function () {
  const config = JSON.parse(document.getElementById("k382-config").textContent);

  function el(id) {
    return document.getElementById(id);
  }

  function base() {
    return `/api/meters/${encodeURIComponent(config.meter)}/power`;
  }

  function figure(row) {
    if (row.watts === null) return "… W";
    const w = row.watts;
    return w >= 10000 ? `${(w / 1000).toFixed(2)} kW` : `${Math.round(w).toLocaleString("en")} W`;
  }

  async function pollLive() {
    const response = await fetch(base(), { headers: { Accept: "application/json" } });
    if (response.status === 404) return false;
    if (!response.ok) throw new Error(`${base()}: HTTP ${response.status}`);
    const row = await response.json();
    el("power").hidden = false;
    const now = el("power-now");
    now.textContent = figure(row);
    now.dataset.watts = row.watts === null ? "" : String(row.watts);
    const stale = row.age > 10 || !row.connected;
    now.classList.toggle("stale", stale);
    const energy = row.energy_kwh === null ? "" : ` · ${row.energy_kwh.toFixed(3)} kWh`;
    el("power-state").textContent =
      (row.connected ? "pulses arriving" : "pulse source disconnected") +
      energy + (row.age > 10 ? ` · ${Math.round(row.age)} s old` : "");
    return true;
  }

  function local(iso) {
    const d = new Date(iso);
    const pad = (n) => String(n).padStart(2, "0");
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
      `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  }

  async function drawMinutes() {
    const response = await fetch(`${base()}/minutes`, { headers: { Accept: "application/json" } });
    if (!response.ok) return;
    const data = await response.json();
    const x = data.rows.map((r) => local(r.minute));
    el("csv-power").href = `${base()}/minutes?format=csv`;
    Plotly.react(
      "plot-power",
      [
        { x, y: data.rows.map((r) => r.mean_w), type: "scatter", mode: "lines", name: "mean (W)" },
        {
          x, y: data.rows.map((r) => r.max_w), type: "scatter", mode: "lines", name: "max (W)",
          line: { width: 1, dash: "dot" },
        },
        {
          x, y: data.rows.map((r) => r.min_w), type: "scatter", mode: "lines", name: "min (W)",
          line: { width: 1, dash: "dot" },
        },
      ],
      {
        title: { text: "Power per minute, last 24 hours", x: 0, xanchor: "left", xref: "paper" },
        margin: { l: 55, r: 40, t: 36, b: 40 },
        height: 300,
        legend: { orientation: "h", y: -0.2 },
        xaxis: { type: "date" },
        yaxis: { title: { text: "W" }, rangemode: "tozero" },
        paper_bgcolor: "rgba(0,0,0,0)",
        modebar: { orientation: "v" },
      },
      { responsive: true, displaylogo: false },
    );
  }

  document.addEventListener("DOMContentLoaded", async () => {
    if (!config.meter || !config.power || !el("power")) return;
    let has = false;
    try {
      has = await pollLive();
    } catch (err) {
      console.error(err);
    }
    if (!has) return;
    drawMinutes().catch((err) => console.error(err));
    setInterval(() => pollLive().catch((err) => console.error(err)), config.live * 1000);
    setInterval(() => drawMinutes().catch((err) => console.error(err)), 60000);
  });
})();
