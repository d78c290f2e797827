// The dashboard's plots: fetched from the JSON API, drawn with plotly.js (served by the app).
// Each plot's CSV link fetches the same API call with format=csv.
"use strict";

(function () {
  const config = JSON.parse(document.getElementById("k382-config").textContent);
  const zone = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
  const layoutBase = {
    margin: { l: 55, r: 40, t: 36, b: 40 },
    height: 300,
    legend: { orientation: "h", y: -0.2 },
    font: { family: "system-ui, sans-serif", size: 12 },
    paper_bgcolor: "rgba(0,0,0,0)",
    // the toolbar stands on the right edge, the titles start on the left: never one on the other
    modebar: { orientation: "v" },
  };
  const plotConfig = { responsive: true, displaylogo: false };

  // A bucket's length as plotly's tick period, and how its ticks are labelled: each label in
  // the middle of its period, where the bucket's bar stands.
  const PERIOD = { hour: 3600000, day: 86400000, month: "M1" };
  const TICKS = { hour: "%H:%M", day: "%b %-d", month: "%b %Y" };

  function title(text) {
    return { text, x: 0, xanchor: "left", xref: "paper" };
  }

  // A bucket's wall-clock start ("2026-03-01 00:00:00") moved by n buckets, as a Date.
  function shifted(x, bucket, n) {
    const [y, mo, d, h, mi, se] = x.split(/[- :]/).map(Number);
    if (bucket === "month") return new Date(y, mo - 1 + n, d, h, mi, se);
    if (bucket === "day") return new Date(y, mo - 1, d + n, h, mi, se);
    return new Date(y, mo - 1, d, h + n, mi, se);
  }

  function bucketAxis(bucket, xs) {
    const axis = { type: "date" };
    if (xs.length > 0 && (xs.length <= 12 || bucket === "month")) {
      // a tick at each bucket's edges, its name in the middle, under its bar, and the axis
      // from the first bucket's start to the last one's end: even one bucket shows its name
      // (plotly would tick hours or seconds inside it). Many hours or days: plotly's ticks.
      axis.ticklabelmode = "period";
      axis.tickformat = TICKS[bucket];
      axis.dtick = PERIOD[bucket];
      axis.range = [local(shifted(xs[0], bucket, 0)), local(shifted(xs[xs.length - 1], bucket, 1))];
    }
    return axis;
  }

  // The bars of buckets starting at ``starts``: each in the middle of its bucket and 80 % as
  // wide (given, not guessed: plotly makes a lone bar a hairline); the hover names the start.
  function bucketBars(bucket, starts) {
    const x = [];
    const width = [];
    for (const start of starts) {
      const a = shifted(start, bucket, 0).getTime();
      const b = shifted(start, bucket, 1).getTime();
      x.push(local(new Date((a + b) / 2)));
      width.push(0.8 * (b - a));
    }
    return { x, width, customdata: starts };
  }


  // A time axis over instants: with one instant only, an hour either side (not milliseconds).
  function timeAxis(xs) {
    const axis = { type: "date" };
    if (xs.length > 0 && xs.every((x) => x === xs[0])) {
      const t = new Date(xs[0].replace(" ", "T")).getTime();
      axis.range = [local(new Date(t - 3600000)), local(new Date(t + 3600000))];
    }
    return axis;
  }

  function el(id) {
    return document.getElementById(id);
  }

  // "2026-03-01T00:00:00+01:00" -> "2026-03-01 00:00:00": the wall clock of the bucket's zone.
  function wall(iso) {
    return iso.slice(0, 19).replace("T", " ");
  }

  // An instant (ISO text or a Date) -> the browser's local wall clock, as plotly wants it.
  function local(iso) {
    const d = new Date(iso);
    const pad = (n, w = 2) => String(n).padStart(w, "0");
    return (
      `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
      `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`
    );
  }

  // A date input ("2026-03-01") -> the local midnight as an ISO instant; "" -> null.
  function dayStart(value, plusDays) {
    if (!value) return null;
    const [y, m, d] = value.split("-").map(Number);
    return new Date(y, m - 1, d + (plusDays || 0)).toISOString();
  }

  function query(params) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(params)) if (v !== null && v !== undefined) q.set(k, v);
    return q.toString();
  }

  function urls() {
    const base = `/api/meters/${encodeURIComponent(config.meter)}`;
    const since = el("since").value;
    const until = el("until").value;
    const bucket = el("bucket").value;
    const consumption = `${base}/consumption?` + query({
      bucket, tz: zone, since: since || null, until: until ? dayStart(until, 1) : null,
    });
    const window = query({ since: dayStart(since, 0), until: dayStart(until, 1) });
    return {
      consumption,
      peaks: `${base}/peaks?${window}`,
      phases: `${base}/phases?${window}`,
      attempts: `${base}/attempts?${window}`,
    };
  }

  function csv(url) {
    return url + (url.includes("?") ? "&" : "?") + "format=csv";
  }

  async function fetchJson(url) {
    const response = await fetch(url, { headers: { Accept: "application/json" } });
    if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
    return response.json();
  }

  function drawEnergy(data) {
    const x = data.rows.map((r) => wall(r.start));
    Plotly.react(
      el("plot-energy"),
      [{ type: "bar", name: "energy", y: data.rows.map((r) => r.energy),
         ...bucketBars(data.bucket, x),
         marker: { color: "#2a6f97" }, hovertemplate: "%{customdata}<br>%{y} kWh<extra></extra>" }],
      { ...layoutBase, title: title(`Energy per ${data.bucket} (kWh)`),
        xaxis: bucketAxis(data.bucket, x),
        yaxis: { title: { text: "kWh" }, rangemode: "tozero" } },
      plotConfig,
    );
  }

  function drawTariffs(data) {
    const x = data.rows.map((r) => wall(r.start));
    Plotly.react(
      el("plot-tariffs"),
      [
        { type: "bar", name: "tariff 1", y: data.rows.map((r) => r.tariff_1),
          ...bucketBars(data.bucket, x), marker: { color: "#e09f3e" },
          hovertemplate: "%{customdata}<br>tariff 1: %{y} kWh<extra></extra>" },
        { type: "bar", name: "tariff 2", y: data.rows.map((r) => r.tariff_2),
          ...bucketBars(data.bucket, x), marker: { color: "#335c67" },
          hovertemplate: "%{customdata}<br>tariff 2: %{y} kWh<extra></extra>" },
      ],
      { ...layoutBase, barmode: "stack", legend: { ...layoutBase.legend, traceorder: "normal" },
        title: title(`Tariffs 1 and 2 per ${data.bucket} (kWh)`),
        xaxis: bucketAxis(data.bucket, x),
        yaxis: { title: { text: "kWh" }, rangemode: "tozero" } },
      plotConfig,
    );
  }

  function drawPeaks(data) {
    const x = data.rows.map((r) => local(r.read_at));
    Plotly.react(
      el("plot-peaks"),
      [
        { type: "scatter", mode: "lines", line: { shape: "hv", color: "#9e2a2b" },
          name: "actual peak (this month)", x, y: data.rows.map((r) => r.actual_peak) },
        { type: "scatter", mode: "lines", line: { shape: "hv", dash: "dash", color: "#555" },
          name: "last month's peak", x, y: data.rows.map((r) => r.last_month_peak) },
      ],
      { ...layoutBase, title: title("Peak power (kW)"),
        xaxis: timeAxis(x), yaxis: { title: { text: "kW" }, rangemode: "tozero" } },
      plotConfig,
    );
  }

  const PHASE_COLORS = ["#9e2a2b", "#e09f3e", "#335c67"];

  // A KMP meter's gauges at each reading: a register a reading has not is a gap (null).
  function drawPhases(data) {
    const x = data.rows.map((r) => local(r.read_at));
    const line = (name, key, color, extra) => ({
      type: "scatter", mode: "lines", name, x, y: data.rows.map((r) => r[key]),
      line: { color, width: 1.5 }, connectgaps: false, ...extra,
    });
    Plotly.react(
      el("plot-phases-power"),
      [
        line("total", "power", "#2a6f97", { line: { color: "#2a6f97", width: 2.5 } }),
        ...[1, 2, 3].map((n) => line(`L${n}`, `power_l${n}`, PHASE_COLORS[n - 1])),
      ],
      { ...layoutBase, title: title("Power (W)"), xaxis: timeAxis(x),
        yaxis: { title: { text: "W" }, rangemode: "tozero" } },
      plotConfig,
    );
    Plotly.react(
      el("plot-phases-voltage"),
      [
        ...[1, 2, 3].map((n) => line(`L${n} V`, `voltage_l${n}`, PHASE_COLORS[n - 1])),
        ...[1, 2, 3].map((n) => line(`L${n} A`, `current_l${n}`, PHASE_COLORS[n - 1],
          { yaxis: "y2", line: { color: PHASE_COLORS[n - 1], width: 1.5, dash: "dot" } })),
      ],
      { ...layoutBase, title: title("Voltage (V) and current (A) per phase"),
        xaxis: { ...timeAxis(x), anchor: "y" },
        yaxis: { title: { text: "V" }, domain: [0, 0.46] },
        yaxis2: { title: { text: "A" }, domain: [0.54, 1], rangemode: "tozero", anchor: "x" } },
      plotConfig,
    );
  }

  function drawHealth(data) {
    // a readout's requests without a retry: one in mode A, a KMP readout's exchanges
    const once = config.exchanges || 1;
    const first = data.rows.filter((r) => r.ok && r.attempts <= once);
    const retried = data.rows.filter((r) => r.ok && r.attempts > once);
    const failed = data.rows.filter((r) => !r.ok);
    // share of successful readouts over the last 20 attempts
    const rate = [];
    let window = [];
    for (const r of data.rows) {
      window.push(r.ok ? 1 : 0);
      if (window.length > 20) window = window.slice(1);
      rate.push((100 * window.reduce((a, b) => a + b, 0)) / window.length);
    }
    Plotly.react(
      el("plot-health"),
      [
        { type: "scatter", mode: "markers", name: "OK", marker: { color: "#2a6f97", size: 4 },
          x: first.map((r) => local(r.at)), y: first.map((r) => r.duration),
          hovertemplate: "%{x}<br>%{y:.3f} s<extra></extra>" },
        { type: "scatter", mode: "markers", name: "OK after a retry",
          marker: { color: "#e09f3e", size: 7, symbol: "diamond" },
          x: retried.map((r) => local(r.at)), y: retried.map((r) => r.duration),
          customdata: retried.map((r) => r.attempts),
          hovertemplate: "%{x}<br>%{y:.3f} s, %{customdata} attempts<extra></extra>" },
        { type: "scatter", mode: "markers", name: "failed",
          marker: { color: "#d00000", size: 8, symbol: "x" },
          x: failed.map((r) => local(r.at)), y: failed.map((r) => r.duration),
          text: failed.map((r) => r.kind), hovertemplate: "%{x}<br>%{text}<extra></extra>" },
        { type: "scatter", mode: "lines", name: "success % (last 20)", yaxis: "y2",
          line: { color: "#2b9348", width: 1.5, shape: "hv" }, fill: "tozeroy",
          fillcolor: "rgba(43,147,72,0.12)", x: data.rows.map((r) => local(r.at)), y: rate,
          hovertemplate: "%{x}<br>%{y:.0f} % of the last 20 readouts OK<extra></extra>" },
      ],
      { ...layoutBase, title: title("Readouts: success and duration"),
        xaxis: { ...timeAxis(data.rows.map((r) => local(r.at))), anchor: "y" },
        yaxis: { title: { text: "duration (s)" }, rangemode: "tozero", domain: [0, 0.64] },
        yaxis2: { title: { text: "% OK" }, domain: [0.72, 1], range: [0, 105],
                  tickvals: [0, 50, 100], anchor: "x" } },
      plotConfig,
    );
  }

  function cell(row, field, value) {
    const td = row.querySelector(`[data-field="${field}"]`);
    if (td && td.textContent !== String(value)) td.textContent = String(value);
  }

  // What the table says a meter is: a mode A meter's type number, a KMP meter's GetType.
  function identity(m) {
    if (m.type_number) return m.type_number;
    const id = m.latest && m.latest.meter_identity;
    return id ? `KMP ${id.meter_type}` : "";
  }

  async function refreshTable() {
    const data = await fetchJson("/api/meters");
    const body = document.querySelector("#meters tbody");
    const known = new Set([...body.querySelectorAll("tr")].map((tr) => tr.dataset.meter));
    if (data.meters.some((m) => !known.has(m.name))) {
      // a new meter: let the server render the table (and pick a meter to plot)
      window.location.reload();
      return;
    }
    for (const m of data.meters) {
      const row = body.querySelector(`tr[data-meter="${CSS.escape(m.name)}"]`);
      if (!row) continue;
      cell(row, "type_number", identity(m));
      if (m.latest) {
        // each register from the last reading where it was read; one the meter does not
        // have (the other protocol's) is empty
        for (const td of row.querySelectorAll("td[data-register]")) {
          show(td, m.current[td.dataset.field], m.latest.read_at, "");
        }
        cell(row, "read_at", wall(m.latest.read_at));
      }
      const s = m.status;
      cell(row, "success", `${s.successes} / ${s.successes + s.failures}`);
      cell(row, "last_error", s.last_error ? `${s.last_error_kind} at ${wall(s.last_error)}` : "");
    }
  }

  // A register's value in ``node`` (with ``unit``), greyed with its time when it comes from a
  // reading before the latest (``latestAt``); empty when the meter has none.
  function show(node, reg, latestAt, unit) {
    const text = reg ? `${reg.value}${unit}` : "";
    if (node.textContent !== text) node.textContent = text;
    const older = Boolean(reg) && reg.read_at !== latestAt;
    node.toggleAttribute("data-older", older);
    if (older) node.title = `read at ${wall(reg.read_at)}`;
    else node.removeAttribute("title");
  }

  // A KMP meter's latest values: each register from the last reading where it was read.
  async function refreshKmp() {
    const panel = el("kmp-latest");
    if (!panel) return;
    const meter = await fetchJson(`/api/meters/${encodeURIComponent(config.meter)}`);
    if (!meter.latest) return;
    const units = { power: " W", energy: " kWh" };
    for (const node of panel.querySelectorAll("[data-register]")) {
      const name = node.getAttribute("data-register");
      show(node, meter.current[name], meter.latest.read_at, units[name] || "");
    }
    el("kmp-read-at").textContent = wall(meter.latest.read_at);
  }

  async function refreshPlots() {
    const u = urls();
    // a KMP meter has no tariffs and no peak registers: those plots are not on its page
    const modeA = Boolean(el("plot-tariffs"));
    el("csv-energy").href = csv(u.consumption);
    el("csv-health").href = csv(u.attempts);
    if (modeA) {
      el("csv-tariffs").href = csv(u.consumption);
      el("csv-peaks").href = csv(u.peaks);
    } else {
      el("csv-phases").href = csv(u.phases);
      el("csv-phases-voltage").href = csv(u.phases);
    }
    const [consumption, gauges, attempts] = await Promise.all([
      fetchJson(u.consumption), fetchJson(modeA ? u.peaks : u.phases), fetchJson(u.attempts),
      refreshKmp(),
    ]);
    drawEnergy(consumption);
    if (modeA) {
      drawTariffs(consumption);
      drawPeaks(gauges);
    } else {
      drawPhases(gauges);
    }
    drawHealth(attempts);
    const plots = el("plots");
    plots.dataset.loaded = String(Number(plots.dataset.loaded || 0) + 1);
    el("updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
  }

  async function refresh() {
    try {
      await refreshTable();
      if (config.meter) await refreshPlots();
    } catch (err) {
      const u = el("updated");
      if (u) u.textContent = String(err);
      console.error(err);
    }
  }

  let timer = null;
  function schedule() {
    if (timer) clearInterval(timer);
    timer = null;
    const live = el("live");
    if (config.refresh > 0 && (!live || live.checked)) {
      timer = setInterval(refresh, config.refresh * 1000);
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    if (config.meter) {
      for (const id of ["bucket", "since", "until"]) el(id).addEventListener("change", refresh);
      el("live").addEventListener("change", schedule);
      el("controls").addEventListener("submit", (e) => e.preventDefault());
      refreshPlots().catch((err) => { el("updated").textContent = String(err); });
    }
    schedule();
  });
})();
