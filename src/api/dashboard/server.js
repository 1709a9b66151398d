// One server: the last 60 minutes by minute and the last 24 hours by hour,
// CPU and RAM on a 0-100 % axis, from /api/v1/servers/<name>/load.

import {
  ApiFailure,
  clockTime,
  describeFailure,
  el,
  exact,
  getJson,
  linePath,
  percent,
  refreshEvery,
  showProblem,
  svg,
} from "./common.js";

const MINUTE_MS = 60_000;
const HOUR_MS = 60 * MINUTE_MS;
const HEIGHT = 220;
const MARGIN = { top: 10, right: 12, bottom: 26, left: 44 };
/// Room for one time label under the axis, in pixels.
const LABEL_ROOM = 64;

const main = document.getElementById("server");
const serverName = main.dataset.server;
const hourFormat = new Intl.DateTimeFormat(undefined, {
  weekday: "short",
  hour: "2-digit",
  minute: "2-digit",
});
const dayFormat = new Intl.DateTimeFormat(undefined, { day: "numeric", month: "short" });

const VIEWS = {
  minute: {
    width: MINUTE_MS,
    steps: [5, 10, 15, 20, 30],
    unitOf: (date) => date.getMinutes(),
    label: (date) => clockTime(date),
    name: (date) => clockTime(date),
    radius: 2.5,
    description: "CPU and RAM, mean of each of the last 60 minutes",
  },
  hour: {
    width: HOUR_MS,
    steps: [1, 2, 3, 4, 6, 12],
    unitOf: (date) => date.getHours(),
    label: (date) => (date.getHours() === 0 ? dayFormat.format(date) : clockTime(date)),
    name: (date) => hourFormat.format(date),
    radius: 3.5,
    description: "CPU and RAM, mean of each of the last 24 hours",
  },
};

let lastReport = null;

function bucketTitle(bucket, view) {
  const start = new Date(Date.parse(bucket.start));
  const end = new Date(start.getTime() + view.width);
  const when = `${view.name(start)}–${clockTime(end)}`;
  if (bucket.samples === 0) {
    return `${when}: no samples`;
  }
  const samples = bucket.samples === 1 ? "1 sample" : `${bucket.samples} samples`;
  return `${when}: CPU ${exact(bucket.cpu)} %, RAM ${exact(bucket.ram)} %, ${samples}`;
}

/// Every `step` units (minutes or hours) gets a label, the smallest step
/// that leaves each label its room.
function labelStep(view, count, plotWidth) {
  return view.steps.find((step) => (plotWidth * step) / count >= LABEL_ROOM) ?? view.steps.at(-1);
}

function drawChart(container, buckets, view) {
  const width = Math.max(280, Math.floor(container.clientWidth));
  const plotWidth = width - MARGIN.left - MARGIN.right;
  const plotHeight = HEIGHT - MARGIN.top - MARGIN.bottom;
  const count = buckets.length;
  const step = plotWidth / count;
  const x = (index) => MARGIN.left + (index + 0.5) * step;
  const y = (value) => MARGIN.top + ((100 - value) * plotHeight) / 100;

  const chart = svg(
    "svg",
    {
      class: "chart-svg",
      width,
      height: HEIGHT,
      viewBox: `0 0 ${width} ${HEIGHT}`,
      role: "img",
      "aria-label": view.description,
      "data-buckets": count,
    },
    svg("title", {}, view.description),
  );
  for (const value of [0, 25, 50, 75, 100]) {
    chart.append(
      svg("line", { class: "grid", x1: MARGIN.left, x2: width - MARGIN.right, y1: y(value), y2: y(value) }),
      svg("text", { class: "axis", x: MARGIN.left - 6, y: y(value) + 4, "text-anchor": "end" }, `${value} %`),
    );
  }
  const every = labelStep(view, count, plotWidth);
  buckets.forEach((bucket, index) => {
    const start = new Date(Date.parse(bucket.start));
    // The rectangle is the bucket's hover target, with its exact values.
    chart.append(
      svg(
        "rect",
        {
          class: bucket.samples === 0 ? "bucket empty" : "bucket",
          x: (MARGIN.left + index * step).toFixed(1),
          y: MARGIN.top,
          width: step.toFixed(2),
          height: plotHeight,
          "data-start": bucket.start,
          "data-samples": bucket.samples,
        },
        svg("title", {}, bucketTitle(bucket, view)),
      ),
    );
    if (view.unitOf(start) % every === 0) {
      const bottom = MARGIN.top + plotHeight;
      chart.append(
        svg("line", { class: "tick", x1: x(index), x2: x(index), y1: bottom, y2: bottom + 4 }),
        svg("text", { class: "axis", x: x(index), y: HEIGHT - 6, "text-anchor": "middle" }, view.label(start)),
      );
    }
  });
  for (const series of ["ram", "cpu"]) {
    const values = buckets.map((bucket) => bucket[series]);
    chart.append(svg("path", { class: `line ${series}`, d: linePath(values, x, y) }));
    values.forEach((value, index) => {
      if (value !== null) {
        chart.append(svg("circle", { class: `point ${series}`, cx: x(index), cy: y(value), r: view.radius }));
      }
    });
  }
  container.replaceChildren(chart);
}

function fillTable(table, buckets, view) {
  table.tBodies[0].replaceChildren(
    ...buckets.map((bucket) =>
      el(
        "tr",
        { class: bucket.samples === 0 ? "empty" : null, "data-start": bucket.start },
        el("th", { scope: "row" }, view.name(new Date(Date.parse(bucket.start)))),
        el("td", { class: "number" }, exact(bucket.cpu)),
        el("td", { class: "number" }, exact(bucket.ram)),
        el("td", { class: "number" }, String(bucket.samples)),
      ),
    ),
  );
}

function describeLatest(report) {
  const bucket = report.by_minute.findLast((candidate) => candidate.samples > 0);
  if (!bucket) {
    return "No samples in the last 60 minutes.";
  }
  const minute = clockTime(new Date(Date.parse(bucket.start)));
  const samples = bucket.samples === 1 ? "1 sample" : `${bucket.samples} samples`;
  return `Latest minute with samples (${minute}): CPU ${percent(bucket.cpu)}, RAM ${percent(bucket.ram)}, ${samples}.`;
}

function render(report) {
  document.getElementById("latest").textContent = describeLatest(report);
  drawChart(document.getElementById("minutes"), report.by_minute, VIEWS.minute);
  drawChart(document.getElementById("hours"), report.by_hour, VIEWS.hour);
  fillTable(document.getElementById("minutes-table"), report.by_minute, VIEWS.minute);
  fillTable(document.getElementById("hours-table"), report.by_hour, VIEWS.hour);
}

function showMissing() {
  document.getElementById("charts").hidden = true;
  document.getElementById("latest").hidden = true;
  main.classList.add("missing");
  document.title = "Not found · sperform";
  showProblem(`No server named “${serverName}” has reported (or it has been deleted).`);
}

async function load() {
  try {
    const report = await getJson(`/api/v1/servers/${encodeURIComponent(serverName)}/load`);
    lastReport = report;
    document.getElementById("charts").hidden = false;
    document.getElementById("latest").hidden = false;
    main.classList.remove("missing");
    showProblem(null);
    render(report);
    return true;
  } catch (error) {
    if (error instanceof ApiFailure && error.status === 404) {
      showMissing();
    } else {
      showProblem(describeFailure(error));
    }
    return false;
  }
}

let resizeQueued = false;
window.addEventListener("resize", () => {
  if (lastReport && !resizeQueued) {
    resizeQueued = true;
    requestAnimationFrame(() => {
      resizeQueued = false;
      drawChart(document.getElementById("minutes"), lastReport.by_minute, VIEWS.minute);
      drawChart(document.getElementById("hours"), lastReport.by_hour, VIEWS.hour);
    });
  }
});

refreshEvery(load);
