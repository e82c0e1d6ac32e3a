// A meter's chart: the point's last hours from /api/meters/<device>/history, drawn with uPlot
// (shipped in this folder): hour by hour, the building's forecast dashed over it, and the
// readings of the last minutes not summarised yet as a thin line. Redrawn each minute.
"use strict";
(function () {
  const figure = document.getElementById("chart");
  if (!figure || typeof uPlot === "undefined") return;
  const d = figure.dataset;
  const plot = figure.querySelector(".plot");
  const locale = d.lang === "zh-Hans" ? "zh-CN" : "en-GB";
  const number = new Intl.NumberFormat(locale, { maximumFractionDigits: 2 });
  const hourOf = new Intl.DateTimeFormat(locale, { timeZone: d.zone, hour: "2-digit", minute: "2-digit", hour12: false });
  const dayOf = new Intl.DateTimeFormat(locale, { timeZone: d.zone, month: "numeric", day: "numeric" });
  let chart = null;

  function stat(name, text) { figure.querySelector(`[data-stat="${name}"]`).textContent = text; }

  async function draw() {
    const url = `/api/meters/${encodeURIComponent(d.device)}/history?point=${encodeURIComponent(d.point)}&hours=${d.hours}`;
    const answer = await fetch(url, { credentials: "same-origin" });
    if (!answer.ok) return;
    const h = await answer.json();
    window.nbedgeChartData = h; // what the chart was given (the browser test compares it)
    const counter = h.kind === "counter";
    const unit = counter ? `${h.unit} / h` : h.unit;
    // Whole hours: a counter's use in each hour, a gauge's mean; the forecast's 24 hours to come.
    const hourly = h.hours.map((b) => (counter ? b.delta : b.mean));
    const ahead = h.forecast ? h.forecast.length - hourly.length : 0;
    const hourX = [...hourly, ...Array(ahead).fill(null)].map((_, i) => h.since + 3600 * i + 1800);
    const known = hourly.filter((v) => v !== null);
    stat("latest", h.latest === null ? "–" : `${number.format(h.latest.value)} ${h.unit}`);
    const low = counter ? (known.length ? Math.min(...known) : null) : h.min;
    const high = counter ? (known.length ? Math.max(...known) : null) : h.max;
    stat("min", low === null ? "–" : `${number.format(low)} ${unit}`);
    stat("max", high === null ? "–" : `${number.format(high)} ${unit}`);
    // The readings not summarised yet, a minute or a few each: a counter as its rate per hour.
    const recent = h.recent.filter((b) => b.count > 0);
    const recentX = recent.map((b) => Math.min((b.start + b.end) / 2, h.until));
    const recentY = recent.map((b) => (counter ? (b.delta === null ? null : (b.delta * 3600) / (b.end - b.start)) : b.mean));
    const tables = [[hourX, [...hourly, ...Array(ahead).fill(null)]]];
    const fmt = (u, v) => (v == null ? "–" : `${number.format(v)} ${unit}`);
    const series = [{ label: d.labelTime }, { label: counter ? d.labelUse : d.labelValue, stroke: "#0b4f6c", width: 2, fill: "rgba(11,79,108,0.12)", spanGaps: false, value: fmt }];
    if (h.forecast) {
      tables.push([hourX, h.forecast]);
      series.push({ label: d.labelForecast, stroke: "#a4161a", width: 2, dash: [6, 4], value: (u, v) => (v == null ? "–" : `${number.format(v)} kWh`) });
    }
    if (recent.length) {
      tables.push([recentX, recentY]);
      series.push({ label: d.labelRecent, stroke: "#1d7a3a", width: 1, points: { show: recent.length < 30 }, value: fmt });
    }
    const data = tables.length === 1 ? tables[0] : uPlot.join(tables);
    figure.querySelector(".empty")?.remove();
    const drawable = known.length || recent.length || (h.forecast || []).some((v) => v !== null);
    if (!drawable) { plot.insertAdjacentHTML("afterend", `<p class="empty note">${d.empty}</p>`); }
    const width = Math.max(280, plot.clientWidth);
    const options = {
      width, height: Math.round(Math.min(360, Math.max(220, width * 0.6))),
      series,
      scales: { x: { time: true } },
      axes: [
        { values: (u, ticks) => ticks.map((t) => (Number(d.hours) > 24 ? dayOf : hourOf).format(new Date(t * 1000))), stroke: "#4a4a4a", grid: { stroke: "#e3e6ea" } },
        { label: unit, stroke: "#4a4a4a", grid: { stroke: "#e3e6ea" }, size: 60 },
      ],
      legend: { show: true },
    };
    if (chart) chart.destroy();
    chart = new uPlot(options, data, plot);
    window.nbedgeChart = chart;
    figure.dataset.drawn = String(Date.now());
  }

  draw();
  setInterval(draw, 60000);
  let resizing = null;
  window.addEventListener("resize", () => { clearTimeout(resizing); resizing = setTimeout(draw, 250); });
})();
