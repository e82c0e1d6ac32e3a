// A meter's chart: the point's last hours from /api/meters/<device>/history, drawn with uPlot
// (shipped in this folder), with the building's forecast dashed over it. Redrawn each minute.
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
    const unit = h.per_hour ? `${h.unit} / h` : h.unit;
    stat("latest", h.latest === null ? "–" : `${number.format(h.latest)} ${h.unit}`);
    stat("min", h.minimum === null ? "–" : `${number.format(h.minimum)} ${unit}`);
    stat("max", h.maximum === null ? "–" : `${number.format(h.maximum)} ${unit}`);
    const xs = h.values.map((_, i) => h.start + 3600 * i + 1800);
    const data = [xs, h.values];
    const series = [{ label: d.labelTime }, { label: h.per_hour ? d.labelUse : d.labelValue, stroke: "#0b4f6c", width: 2, fill: "rgba(11,79,108,0.12)", spanGaps: false, value: (u, v) => v == null ? "–" : `${number.format(v)} ${unit}` }];
    if (h.forecast) {
      data.push(h.forecast);
      series.push({ label: d.labelForecast, stroke: "#a4161a", width: 2, dash: [6, 4], value: (u, v) => v == null ? "–" : `${number.format(v)} kWh` });
    }
    const known = h.values.some((v) => v !== null) || (h.forecast || []).some((v) => v !== null);
    figure.querySelector(".empty")?.remove();
    if (!known) { plot.insertAdjacentHTML("afterend", `<p class="empty note">${d.empty}</p>`); }
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
