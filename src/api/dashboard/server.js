// One server: the last 60 minutes by minute and the last 24 hours by hour,
// from /api/v1/servers/<name>/load, and one long view (7 days, 30 days or a
// year) from /api/v1/servers/<name>/load/range; CPU and RAM on a 0-100 %
// axis. The long view in use is kept in the address (`?view=30d`).

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
const DAY_MS = 24 * HOUR_MS;
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
const dateFormat = new Intl.DateTimeFormat(undefined, {
  weekday: "short",
  day: "numeric",
  month: "short",
});
const dateYearFormat = new Intl.DateTimeFormat(undefined, {
  weekday: "short",
  day: "numeric",
  month: "short",
  year: "numeric",
});
const monthFormat = new Intl.DateTimeFormat(undefined, { month: "short" });

/// The viewer's calendar day of `date` as a count of days, so that labels
/// every few days stay on the same days as the window moves; counted from
/// Monday 1969-12-29, so that weekly labels fall on Mondays.
function localDay(date) {
  return Math.round(Date.UTC(date.getFullYear(), date.getMonth(), date.getDate()) / DAY_MS) + 3;
}

function isMidnight(date) {
  return date.getHours() === 0 && date.getMinutes() === 0;
}

/// A day label: `Dec 8`.
function dayLabel(date) {
  return dayFormat.format(date);
}

/// A month label: `Dec`, or the year for January.
function monthLabel(date) {
  return date.getMonth() === 0 ? String(date.getFullYear()) : monthFormat.format(date);
}

/// How each chart is drawn. A label goes under the first bucket of a
/// `unit` (a minute, hour, day or month, numbered by `unitOf`) whose number
/// is a multiple of the label step; `perUnit` is how many buckets make a
/// unit, for choosing that step.
const VIEWS = {
  minute: {
    key: "minute",
    width: MINUTE_MS,
    steps: [5, 10, 15, 20, 30],
    perUnit: 1,
    unitOf: (date) => date.getMinutes(),
    label: (date) => clockTime(date),
    name: (date) => clockTime(date),
    radius: 2.5,
    description: "CPU and RAM, mean of each of the last 60 minutes",
  },
  hour: {
    key: "hour",
    width: HOUR_MS,
    steps: [1, 2, 3, 4, 6, 12],
    perUnit: 1,
    unitOf: (date) => date.getHours(),
    label: (date) => (date.getHours() === 0 ? dayFormat.format(date) : clockTime(date)),
    name: (date) => hourFormat.format(date),
    radius: 3.5,
    description: "CPU and RAM, mean of each of the last 24 hours",
  },
};

/// The long views, read from the range API with steps of whole hours. The
/// bucket counts keep each well under the API's 1,500 buckets and leave a
/// bucket a few pixels wide on a laptop screen.
const LONG_VIEWS = {
  "7d": {
    key: "7d",
    title: "Last 7 days",
    by: "by hour",
    unit: "Hour",
    step: "1h",
    width: HOUR_MS,
    count: 7 * 24,
    steps: [1, 2, 7],
    perUnit: 24,
    unitOf: localDay,
    label: dayLabel,
    name: (date) => `${dateFormat.format(date)}, ${clockTime(date)}`,
    radius: 1.5,
    description: "CPU and RAM, mean of each hour of the last 7 days",
  },
  "30d": {
    key: "30d",
    title: "Last 30 days",
    by: "by 6 hours",
    unit: "6 hours",
    step: "6h",
    width: 6 * HOUR_MS,
    count: 30 * 4,
    steps: [1, 2, 3, 7, 14],
    perUnit: 4,
    unitOf: localDay,
    label: dayLabel,
    name: (date) => `${dateFormat.format(date)}, ${clockTime(date)}`,
    radius: 2,
    description: "CPU and RAM, mean of each 6 hours of the last 30 days",
  },
  "1y": {
    key: "1y",
    title: "Last 365 days",
    by: "by day",
    unit: "Day",
    step: "1d",
    width: DAY_MS,
    count: 365,
    steps: [1, 2, 3, 6, 12],
    perUnit: 365 / 12,
    unitOf: (date) => date.getFullYear() * 12 + date.getMonth(),
    label: monthLabel,
    // Days are UTC days: elsewhere they start at another local hour.
    name: (date) =>
      isMidnight(date) ? dateYearFormat.format(date) : `${dateYearFormat.format(date)}, ${clockTime(date)}`,
    span: (start, end, name) => (isMidnight(start) ? name(start) : `${name(start)} – ${name(end)}`),
    radius: 1.5,
    description: "CPU and RAM, mean of each of the last 365 days",
  },
};
const DEFAULT_LONG_VIEW = "7d";

let lastReport = null;

function bucketTitle(bucket, view) {
  const start = new Date(Date.parse(bucket.start));
  const end = new Date(start.getTime() + view.width);
  const when = view.span ? view.span(start, end, view.name) : `${view.name(start)}–${clockTime(end)}`;
  if (bucket.samples === 0) {
    return `${when}: no samples`;
  }
  const samples = bucket.samples === 1 ? "1 sample" : `${bucket.samples} samples`;
  return `${when}: CPU ${exact(bucket.cpu)} %, RAM ${exact(bucket.ram)} %, ${samples}`;
}

/// Every `step` units (minutes, hours, days or months) gets a label, the
/// smallest step that leaves each label its room.
function labelStep(view, count, plotWidth) {
  return (
    view.steps.find((step) => (plotWidth * step * view.perUnit) / count >= LABEL_ROOM) ??
    view.steps.at(-1)
  );
}

/// Whether the bucket starting at `start` is the first of its unit.
function startsUnit(view, start) {
  return view.unitOf(start) !== view.unitOf(new Date(start.getTime() - view.width));
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
      "data-view": view.key,
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
    if (startsUnit(view, start) && view.unitOf(start) % every === 0) {
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

/// The long view chosen with the buttons, kept in the address so that it
/// survives a reload and can be bookmarked.
let longView = readLongView();
/// The long view drawn now, and its buckets.
let drawnLong = null;
/// Counts long-view requests, so that an answer that comes after another
/// view was chosen is dropped.
let longRequests = 0;

function readLongView() {
  const view = new URLSearchParams(location.search).get("view");
  return view !== null && Object.hasOwn(LONG_VIEWS, view) ? LONG_VIEWS[view] : LONG_VIEWS[DEFAULT_LONG_VIEW];
}

function writeLongView() {
  const query = new URLSearchParams(location.search);
  if (longView.key === DEFAULT_LONG_VIEW) {
    query.delete("view");
  } else {
    query.set("view", longView.key);
  }
  const search = query.toString();
  history.replaceState(null, "", search ? `?${search}` : location.pathname);
}

function showLongProblem(message) {
  const problem = document.getElementById("history-problem");
  problem.textContent = message ?? "";
  problem.hidden = message === null;
}

function renderLong(view, buckets) {
  document.getElementById("history-title").textContent = view.title;
  document.getElementById("history-step").textContent = view.by;
  document.getElementById("history-unit").textContent = view.unit;
  const table = document.getElementById("history-table");
  table.caption.textContent = `${view.title}, ${view.by}`;
  const chart = document.getElementById("history");
  chart.hidden = buckets === null;
  if (buckets === null) {
    chart.replaceChildren();
    table.tBodies[0].replaceChildren();
    return;
  }
  drawChart(chart, buckets, view);
  fillTable(table, buckets, view);
}

/// Reads the chosen long view's buckets, the last one holding `at` (the
/// daemon's time of the last `/load` answer, as it wrote it), and draws
/// them. A failure is shown in the view's card; the charts above stay as
/// they are.
async function loadLong(at) {
  const view = longView;
  const request = ++longRequests;
  const last = Math.floor(Date.parse(at) / view.width) * view.width;
  const from = last - (view.count - 1) * view.width;
  const path =
    `/api/v1/servers/${encodeURIComponent(serverName)}/load/range` +
    `?from=${from / 1000}&to=${encodeURIComponent(at)}&step=${view.step}`;
  try {
    const range = await getJson(path);
    if (request !== longRequests) {
      return;
    }
    drawnLong = { view, buckets: range.buckets };
    showLongProblem(null);
    renderLong(view, range.buckets);
  } catch (error) {
    if (request !== longRequests) {
      return;
    }
    // Another view's buckets must not stand under this view's title.
    if (drawnLong?.view !== view) {
      drawnLong = null;
      renderLong(view, null);
    }
    showLongProblem(describeFailure(error));
  }
}

async function load() {
  let report;
  try {
    report = await getJson(`/api/v1/servers/${encodeURIComponent(serverName)}/load`);
  } catch (error) {
    if (error instanceof ApiFailure && error.status === 404) {
      showMissing();
    } else {
      showProblem(describeFailure(error));
    }
    return false;
  }
  lastReport = report;
  document.getElementById("charts").hidden = false;
  document.getElementById("latest").hidden = false;
  main.classList.remove("missing");
  showProblem(null);
  render(report);
  await loadLong(report.at);
  return true;
}

for (const input of document.querySelectorAll('input[name="history-view"]')) {
  input.checked = input.value === longView.key;
  input.addEventListener("change", () => {
    if (!input.checked || !Object.hasOwn(LONG_VIEWS, input.value)) {
      return;
    }
    longView = LONG_VIEWS[input.value];
    writeLongView();
    if (lastReport) {
      loadLong(lastReport.at);
    }
  });
}

let resizeQueued = false;
window.addEventListener("resize", () => {
  if (lastReport && !resizeQueued) {
    resizeQueued = true;
    requestAnimationFrame(() => {
      resizeQueued = false;
      drawChart(document.getElementById("minutes"), lastReport.by_minute, VIEWS.minute);
      drawChart(document.getElementById("hours"), lastReport.by_hour, VIEWS.hour);
      if (drawnLong) {
        drawChart(document.getElementById("history"), drawnLong.buckets, drawnLong.view);
      }
    });
  }
});

refreshEvery(load);
