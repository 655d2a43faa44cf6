// tidelog console: one page over /console/api (server/console/api.py).
// No framework and no network beyond the tidelog server: uPlot is vendored.
"use strict";

(function () {
  const API = "/console/api/";
  const WINDOWS = [[60, "1 min"], [300, "5 min"], [900, "15 min"], [3600, "1 h"]];
  const state = {
    session: null,
    csrf: "",
    source: null, // the EventSource of the current view
    charts: [], // {plot, keys, data, windowSeconds}
    windowSeconds: Number(localStorage.getItem("tidelog.window") || 300),
    overview: null,
    firstRender: false,
  };
  // For tests and debugging: the charts' data and the last samples.
  window.tidelog = { state: state, stop: () => stopLive() };

  // -- helpers ---------------------------------------------------------------------------

  const $ = (sel, root) => (root || document).querySelector(sel);
  const $$ = (sel, root) => Array.from((root || document).querySelectorAll(sel));

  function esc(value) {
    return String(value == null ? "" : value).replace(/[&<>"']/g, (c) => ({
      "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;",
    })[c]);
  }

  function bytes(n) {
    if (n == null) return "";
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return (i ? n.toFixed(1) : n) + " " + units[i];
  }

  const NUMBER = new Intl.NumberFormat("en-US", { maximumFractionDigits: 3 }); // toLocaleString is slow per call
  function num(n) { return n == null ? "" : NUMBER.format(n); }

  function when(ms) {
    if (!ms) return "";
    return new Date(ms).toISOString().replace("T", " ").replace("Z", "");
  }

  function chan(kind, name) { return "#/" + kind + "/" + encodeURIComponent(name); }

  function notice(text, kind) {
    const el = $("#notice");
    el.textContent = text;
    el.className = kind || "info";
    el.hidden = false;
    clearTimeout(notice.timer);
    notice.timer = setTimeout(() => { el.hidden = true; }, kind === "error" ? 10000 : 4000);
  }

  class ApiError extends Error {
    constructor(status, body) {
      super((body && body.message) || "HTTP " + status);
      this.status = status;
      this.code = body && body.error;
    }
  }

  async function get(name, params) {
    const query = params ? "?" + new URLSearchParams(params).toString() : "";
    const response = await fetch(API + name + query, { credentials: "same-origin" });
    const body = await response.json().catch(() => null);
    if (response.status === 401) { showLogin(); throw new ApiError(401, body); }
    if (!response.ok) throw new ApiError(response.status, body);
    return body;
  }

  async function post(name, payload) {
    const response = await fetch(API + name, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": state.csrf },
      body: JSON.stringify(payload || {}),
    });
    const body = await response.json().catch(() => null);
    if (response.status === 401 && name !== "login") { showLogin(); }
    if (!response.ok) throw new ApiError(response.status, body);
    return body;
  }

  // Runs an action, reporting its failure in the notice bar; returns null on failure.
  async function attempt(fn, done) {
    try {
      const result = await fn();
      if (done) notice(done, "ok");
      return result;
    } catch (error) {
      notice(error.message, "error");
      return null;
    }
  }

  function confirmAction(text) {
    const dialog = $("#confirm");
    $("#confirm-text").textContent = text;
    return new Promise((resolve) => {
      dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
      dialog.returnValue = "cancel";
      dialog.showModal();
    });
  }

  function form(el) {
    const out = {};
    for (const field of $$("[name]", el)) {
      if (field.closest(".attributes")) continue;
      if (field.type === "checkbox") out[field.name] = field.checked;
      else out[field.name] = field.value;
    }
    const rows = $(".attributes", el);
    if (rows) {
      out.attributes = $$(".attribute", rows).map((row) => ({
        name: $("[data-a=name]", row).value,
        type: $("[data-a=type]", row).value,
        value: $("[data-a=value]", row).value,
      })).filter((a) => a.name);
    }
    return out;
  }

  function attributeEditor() {
    return `<div class="attributes"><div class="attribute-list"></div>
      <button type="button" class="link add-attribute">+ attribute</button></div>`;
  }

  function wireAttributeEditors(root) {
    for (const button of $$(".add-attribute", root)) {
      button.addEventListener("click", () => {
        const row = document.createElement("div");
        row.className = "attribute";
        row.innerHTML = `<input data-a="name" placeholder="name">
          <select data-a="type"><option>String</option><option>Number</option>
          <option>Binary</option><option>String.Array</option></select>
          <input data-a="value" placeholder="value (Binary: base64)">
          <button type="button" class="link remove">remove</button>`;
        $(".remove", row).addEventListener("click", () => row.remove());
        $(".attribute-list", button.parentElement).appendChild(row);
      });
    }
  }

  function onSubmit(root, selector, handler) {
    const el = $(selector, root);
    if (!el) return;
    el.addEventListener("submit", async (event) => {
      event.preventDefault();
      const button = $("button[type=submit]", el);
      if (button) button.disabled = true;
      try { await handler(form(el), el); } finally { if (button) button.disabled = false; }
    });
  }

  // -- bodies: text, JSON, hex -------------------------------------------------------------

  function decode(b64) {
    const raw = atob(b64 || "");
    const out = new Uint8Array(raw.length);
    for (let i = 0; i < raw.length; i++) out[i] = raw.charCodeAt(i);
    return out;
  }

  function hexdump(data) {
    const lines = [];
    for (let i = 0; i < data.length; i += 16) {
      const chunk = Array.from(data.slice(i, i + 16));
      const hex = chunk.map((b) => b.toString(16).padStart(2, "0")).join(" ");
      const ascii = chunk.map((b) => (b >= 32 && b < 127 ? String.fromCharCode(b) : ".")).join("");
      lines.push(i.toString(16).padStart(8, "0") + "  " + hex.padEnd(48) + "  " + ascii);
    }
    return lines.join("\n");
  }

  function render(b64, mode) {
    const data = decode(b64);
    const text = new TextDecoder("utf-8").decode(data);
    if (mode === "hex") return hexdump(data);
    if (mode === "json") {
      try { return JSON.stringify(JSON.parse(text), null, 2); } catch (e) { return "(not JSON: " + e.message + ")\n\n" + text; }
    }
    return text;
  }

  function preview(b64) {
    const text = new TextDecoder("utf-8").decode(decode(b64));
    return text.length > 80 ? text.slice(0, 80) + "…" : text;
  }

  function viewer(b64, attributes, extra) {
    const attrs = (attributes || []).map((a) =>
      `<tr><td>${esc(a.name)}</td><td>${esc(a.type)}</td><td>${esc(a.value)}</td></tr>`).join("");
    const el = document.createElement("div");
    el.className = "viewer";
    el.innerHTML = `<div class="modes">
        <button type="button" data-mode="text" class="on">Text</button>
        <button type="button" data-mode="json">JSON</button>
        <button type="button" data-mode="hex">Hex</button></div>
      <pre class="body"></pre>
      ${attrs ? `<table class="attrs"><thead><tr><th>attribute</th><th>type</th><th>value</th></tr></thead><tbody>${attrs}</tbody></table>` : ""}
      ${extra || ""}`;
    const pre = $("pre", el);
    const show = (mode) => {
      pre.textContent = render(b64, mode);
      pre.dataset.mode = mode;
      for (const b of $$("[data-mode]", el)) b.classList.toggle("on", b.dataset.mode === mode);
    };
    for (const b of $$("[data-mode]", el)) b.addEventListener("click", () => show(b.dataset.mode));
    show("text");
    return el;
  }

  // -- live charts ---------------------------------------------------------------------------

  // uPlot is loaded after the page's own script, so it never delays the first render.
  let uplotLoading = null;
  function charting() {
    if (window.uPlot) return Promise.resolve();
    if (!uplotLoading) {
      uplotLoading = new Promise((resolve, reject) => {
        const script = document.createElement("script");
        script.src = "/console/static/vendor/uPlot.iife.min.js";
        script.onload = resolve;
        script.onerror = () => reject(new Error("could not load the chart library"));
        document.head.appendChild(script);
      });
    }
    return uplotLoading;
  }

  // Whether the view that started as render `token` is still the one shown once
  // the chart library is there (the user may have moved on meanwhile).
  async function ready(token) {
    await charting();
    return token === state.renders;
  }

  const SERIES = {
    sent: ["sent/s", "#2563eb"], received: ["received/s", "#16a34a"],
    deleted: ["deleted/s", "#dc2626"], published: ["published/s", "#9333ea"],
    put: ["records put/s", "#ea580c"], visible: ["visible", "#2563eb"],
    in_flight: ["in flight", "#ca8a04"], delayed: ["delayed", "#64748b"],
    lag: ["records behind", "#db2777"],
  };

  function chart(el, title, keys, source) {
    const box = document.createElement("div");
    box.className = "chart";
    box.dataset.chart = title;
    box.innerHTML = `<h3>${esc(title)}</h3><div class="plot"></div><div class="now"></div>`;
    el.appendChild(box);
    const width = Math.max(280, Math.min(box.clientWidth || 420, 640));
    const data = [[], ...keys.map(() => [])];
    const options = {
      width: width, height: 170,
      series: [{}, ...keys.map((k) => ({ label: SERIES[k][0], stroke: SERIES[k][1], width: 1.5 }))],
      axes: [{}, { size: 60 }],
      // The x axis always spans the chosen window up to now, however few samples there are.
      scales: { x: { time: true, range: () => [Date.now() / 1000 - state.windowSeconds, Date.now() / 1000] } },
      legend: { show: false },
    };
    const plot = new uPlot(options, data, $(".plot", box));
    // Follow the box's width (the flex layout settles after the chart exists).
    const resize = new ResizeObserver(() => {
      const fits = Math.max(280, box.clientWidth - 16);
      if (Math.abs(fits - plot.width) > 4) plot.setSize({ width: fits, height: 170 });
    });
    resize.observe(box);
    const entry = { plot, keys, data, source, box, title, resize };
    state.charts.push(entry);
    return entry;
  }

  function feed(samples, replace) {
    for (const entry of state.charts) {
      const list = samples[entry.source] || [];
      if (replace) { entry.data.forEach((column) => { column.length = 0; }); }
      for (const sample of list) {
        entry.data[0].push(sample.t / 1000);
        entry.keys.forEach((k, i) => entry.data[i + 1].push(sample[k] == null ? null : sample[k]));
      }
      const cutoff = Date.now() / 1000 - state.windowSeconds;
      while (entry.data[0].length && entry.data[0][0] < cutoff) entry.data.forEach((c) => c.shift());
      entry.plot.setData(entry.data);
      const last = entry.data[0].length - 1;
      $(".now", entry.box).innerHTML = last < 0 ? '<span class="muted">waiting for samples…</span>' :
        entry.keys.map((k, i) => `<span data-series="${k}"><i style="background:${SERIES[k][1]}"></i>${esc(SERIES[k][0])} <b>${num(entry.data[i + 1][last])}</b></span>`).join(" ");
      entry.box.dataset.points = String(entry.data[0].length);
    }
    const mine = samples.channel || [];
    if (mine.length) {
      const latest = mine[mine.length - 1];
      for (const el of $$("[data-live]")) {
        const value = latest[el.dataset.live];
        if (value != null) $(".value", el).textContent = num(value);
      }
    }
  }

  function listen(channel) {
    const params = new URLSearchParams({ window: String(state.windowSeconds) });
    if (channel) params.set("channel", channel);
    const source = new EventSource(API + "events?" + params.toString());
    source.addEventListener("history", (e) => feed(JSON.parse(e.data), true));
    source.addEventListener("samples", (e) => feed(JSON.parse(e.data), false));
    state.source = source;
  }

  function windowPicker(channel) {
    const el = document.createElement("label");
    el.className = "window";
    el.innerHTML = "Time window <select id=window>" + WINDOWS.map(([s, label]) =>
      `<option value="${s}"${s === state.windowSeconds ? " selected" : ""}>${label}</option>`).join("") + "</select>";
    $("select", el).addEventListener("change", (e) => {
      state.windowSeconds = Number(e.target.value);
      localStorage.setItem("tidelog.window", String(state.windowSeconds));
      if (state.source) state.source.close();
      listen(channel);
    });
    return el;
  }

  function stopLive() {
    if (state.source) state.source.close();
    state.source = null;
    clearInterval(state.timer);
    for (const entry of state.charts) { entry.resize.disconnect(); entry.plot.destroy(); }
    state.charts = [];
  }

  // -- views ---------------------------------------------------------------------------------

  function table(id, headers, rows) {
    return `<table id="${id}" class="grid"><thead><tr>${headers.map((h) => `<th>${esc(h)}</th>`).join("")}</tr></thead>
      <tbody>${rows.join("") || `<tr><td colspan="${headers.length}" class="muted">none</td></tr>`}</tbody></table>`;
  }

  function card(label, value, id, live) {
    return `<div class="card"${id ? ` id="${id}"` : ""}${live ? ` data-live="${live}"` : ""}><div class="label">${esc(label)}</div><div class="value">${value}</div></div>`;
  }

  const REFRESH_MS = 5000; // the overview's tables; the charts are live
  // Rows shown per channel table until "show all": a browser lays out a table of
  // thousands of rows in hundreds of milliseconds, and nobody reads them unfiltered.
  const ROWS_SHOWN = 50;

  // The rows of one table that match the name filter, cut at ROWS_SHOWN unless shown all.
  function shown(kind, list, columns) {
    const filter = (state.filter || "").toLowerCase();
    const matching = filter ? list.filter((c) => c.name.toLowerCase().includes(filter)) : list;
    const all = state.showAll && state.showAll[kind];
    const rows = all ? matching : matching.slice(0, ROWS_SHOWN);
    rows.hidden = matching.length - rows.length;
    rows.kind = kind;
    rows.columns = columns;
    return rows;
  }

  function more(rows) {
    if (!rows.hidden) return "";
    return `<tr class="more"><td colspan="${rows.columns}"><button type="button" class="link show-all" data-kind="${rows.kind}">${num(rows.hidden)} more: show all</button></td></tr>`;
  }

  function overviewTables(data) {
    const queueRows = shown("queues", data.queues, 8);
    const topicRows = shown("topics", data.topics, 4);
    const streamRows = shown("streams", data.streams, 6);
    const deliveryRows = shown("delivery", data.delivery_streams, 8);
    const appRows = shown("applications", data.applications, 7);
    const triggerRows = shown("triggers", data.triggers || [], 9);
    const queues = queueRows.map((q) => `<tr data-name="${esc(q.name)}"><td><a href="${chan("queue", q.name)}">${esc(q.name)}</a>${q.fifo ? ' <span class="tag">FIFO</span>' : ""}${q.dead_letter ? ` <span class="muted">→ ${esc(q.dead_letter)}</span>` : ""}</td>
      <td class="n visible">${num(q.visible)}</td><td class="n in-flight">${num(q.in_flight)}</td><td class="n delayed">${num(q.delayed)}</td>
      <td class="n">${num(q.sent_total)}</td><td class="n">${num(q.received_total)}</td><td class="n">${num(q.deleted_total)}</td><td class="n">${bytes(q.disk_bytes)}</td></tr>`);
    const topics = topicRows.map((t) => `<tr data-name="${esc(t.name)}"><td><a href="${chan("topic", t.name)}">${esc(t.name)}</a>${t.fifo ? ' <span class="tag">FIFO</span>' : ""}</td>
      <td class="n">${num(t.subscriptions)}</td><td class="n">${num(t.published_total)}</td><td class="n">${bytes(t.disk_bytes)}</td></tr>`);
    const streams = streamRows.map((st) => `<tr data-name="${esc(st.name)}"><td><a href="${chan("stream", st.name)}">${esc(st.name)}</a></td>
      <td class="n">${num(st.shards_open)}${st.shards_closed ? ` (+${num(st.shards_closed)} closed)` : ""}</td><td class="n">${num(st.records)}</td><td class="n">${num(st.records_total)}</td><td class="n">${num(st.consumers)}</td><td class="n">${bytes(st.disk_bytes)}</td></tr>`);
    const deliveries = deliveryRows.map((d) => `<tr data-name="${esc(d.name)}"><td><a href="${chan("delivery", d.name)}">${esc(d.name)}</a></td>
      <td>${esc(d.source)}</td><td>${esc(d.destination)}</td><td class="n">${num(d.buffered_records)}</td><td class="n">${bytes(d.buffered_bytes)}</td><td class="n">${num(d.records_delivered)}</td><td class="n">${num(d.records_failed)}</td><td>${when(d.last_delivery_ms)}</td></tr>`);
    const apps = appRows.map((a) => `<tr data-name="${esc(a.name)}"><td><a href="${chan("application", a.name)}">${esc(a.name)}</a></td>
      <td>${esc(a.source)}</td><td>${esc(a.destination)}</td><td>${a.running ? "running" : "stopped"}</td><td class="n">${num(a.windows_emitted)}</td><td class="n">${num(a.lag_records)}</td><td class="error">${esc(a.error || "")}</td></tr>`);
    const triggers = triggerRows.map((t) => `<tr data-name="${esc(t.name)}"><td title="${esc(t.uuid)}">${esc(t.uuid.slice(0, 8))}</td>
      <td>${esc(t.function)}</td><td>${esc(t.source)}</td><td>${esc(t.state)}</td><td class="n">${num(t.lag)}</td><td class="n">${num(t.invocations)}</td><td class="n">${num(t.errors)}</td><td class="n">${t.duration_ms_mean == null ? "" : esc(t.duration_ms_mean.toFixed(1))}</td><td class="error">${esc(t.last_error || "")}</td></tr>`);
    const s = data.store;
    storeBadge(s);
    const count = (list) => num(list.length);
    $("#summary").innerHTML = `${card("queues", count(data.queues), "count-queues")}${card("topics", count(data.topics), "count-topics")}
        ${card("streams", count(data.streams), "count-streams")}${card("delivery streams", count(data.delivery_streams))}
        ${card("SQL applications", count(data.applications))}${card("disk", bytes(s.disk_bytes), "disk-total")}
        ${card("index (LMDB)", bytes(s.index_bytes))}${card("sync", esc(s.sync_mode))}`;
    $("#queues-table").innerHTML = table("queues", ["queue", "visible", "in flight", "delayed", "sent", "received", "deleted", "disk"], queues.concat(more(queueRows)));
    $("#topics-table").innerHTML = table("topics", ["topic", "subscriptions", "published", "disk"], topics.concat(more(topicRows)));
    $("#streams-table").innerHTML = table("streams", ["stream", "shards", "records", "put total", "consumers", "disk"], streams.concat(more(streamRows)));
    $("#delivery-table").innerHTML = table("delivery-streams", ["delivery stream", "source", "destination", "buffered", "buffered bytes", "delivered", "failed", "last delivery"], deliveries.concat(more(deliveryRows)));
    $("#applications-table").innerHTML = table("applications", ["application", "source", "destination", "state", "windows", "lag", "error"], apps.concat(more(appRows)));
    $("#triggers-table").innerHTML = table("triggers", ["trigger", "function", "source", "state", "lag", "invocations", "errors", "mean ms", "last error"], triggers.concat(more(triggerRows)));
    for (const button of $$("button.show-all")) {
      button.addEventListener("click", () => {
        state.showAll = { ...(state.showAll || {}), [button.dataset.kind]: true };
        overviewTables(state.overview);
      });
    }
  }

  function storeBadge(s) {
    const badge = $("#store-state");
    badge.textContent = s.state;
    badge.className = "badge " + s.state;
    $("#store-path").textContent = s.path;
  }

  async function overview() {
    const token = state.renders;
    const view = $("#view");
    const data = await (state.prefetch || get("overview"));
    state.prefetch = null;
    state.overview = data;
    view.innerHTML = `<section class="cards" id="summary"></section>
      <section class="live"><div class="live-head"><h2>Live</h2></div><div class="charts" id="charts"></div></section>
      <p><input id="filter" type="search" placeholder="filter channels by name" size="30" value="${esc(state.filter || "")}"></p>
      <section><h2>Queues</h2><div id="queues-table"></div>
        <details><summary>Create a queue</summary><form id="create-queue" class="inline">
          <input name="name" placeholder="name (.fifo for FIFO)" required>
          <input name="visibility_timeout" placeholder="visibility s (30)" size="10">
          <input name="delay" placeholder="delay s (0)" size="8">
          <input name="dead_letter" placeholder="dead-letter queue">
          <input name="max_receive_count" placeholder="max receives (5)" size="10">
          <label><input type="checkbox" name="content_based_dedup"> content dedup</label>
          <button type="submit">Create</button></form></details></section>
      <section><h2>Topics</h2><div id="topics-table"></div>
        <details><summary>Create a topic</summary><form id="create-topic" class="inline">
          <input name="name" placeholder="name (.fifo for FIFO)" required>
          <label><input type="checkbox" name="content_based_dedup"> content dedup</label>
          <button type="submit">Create</button></form></details></section>
      <section><h2>Streams</h2><div id="streams-table"></div>
        <details><summary>Create a stream</summary><form id="create-stream" class="inline">
          <input name="name" placeholder="name" required><input name="shards" placeholder="shards (1)" size="8">
          <button type="submit">Create</button></form></details></section>
      <section><h2>Delivery streams</h2><div id="delivery-table"></div></section>
      <section><h2>SQL applications</h2><div id="applications-table"></div></section>
      <section><h2>Triggers</h2><div id="triggers-table"></div></section>`;
    overviewTables(data);
    $("#filter").addEventListener("input", (e) => {
      state.filter = e.target.value;
      overviewTables(state.overview);
    });
    if (!state.firstRender) {
      state.firstRender = true;
      // Marked in the next frame: the tables are laid out and painted by then.
      requestAnimationFrame(() => performance.mark("tidelog:first-render"));
    }
    document.body.dataset.view = "overview";
    $(".live-head", view).appendChild(windowPicker(null));
    // The charts come right after the tables' first paint (uPlot loads meanwhile).
    if (!(await ready(token))) return;
    await new Promise((resolve) => requestAnimationFrame(() => setTimeout(resolve, 0)));
    if (token !== state.renders) return;
    const charts = $("#charts");
    chart(charts, "Rates", ["sent", "received", "deleted", "published", "put"], "store");
    chart(charts, "Queue backlog", ["visible", "in_flight", "delayed"], "store");
    chart(charts, "Consumer lag", ["lag"], "store");
    listen(null);
    const refresh = async () => {
      if (document.body.dataset.view !== "overview" || document.hidden) return;
      const fresh = await get("overview").catch(() => null);
      if (fresh && document.body.dataset.view === "overview") { state.overview = fresh; overviewTables(fresh); }
    };
    state.timer = setInterval(refresh, REFRESH_MS);
    for (const [id, action, kind] of [["#create-queue", "queue/create", "queue"], ["#create-topic", "topic/create", "topic"], ["#create-stream", "stream/create", "stream"]]) {
      onSubmit(view, id, async (values) => {
        const made = await attempt(() => post(action, values), "created " + kind + " " + values.name);
        if (made) route();
      });
    }
  }

  function pager(el, next, load) {
    const more = document.createElement("p");
    if (next != null) {
      more.innerHTML = `<button type="button" class="next">Next page</button>`;
      $("button", more).addEventListener("click", () => load(next));
    }
    el.appendChild(more);
  }

  // A table of messages with a viewer under the clicked row.
  function messageRows(el, items, columns, details) {
    const tbody = $("tbody", el);
    tbody.innerHTML = "";
    if (!items.length) tbody.innerHTML = `<tr><td colspan="${columns.length + 1}" class="muted">no messages</td></tr>`;
    for (const item of items) {
      const row = document.createElement("tr");
      row.className = "message";
      row.innerHTML = columns.map((c) => `<td class="${c.cls || ""}">${c.html(item)}</td>`).join("") +
        `<td class="preview">${esc(preview(item.body_b64))}</td>`;
      row.addEventListener("click", () => {
        const open = row.nextElementSibling && row.nextElementSibling.classList.contains("detail");
        $$("tr.detail", tbody).forEach((r) => r.remove());
        if (open) return;
        const detail = document.createElement("tr");
        detail.className = "detail";
        const cell = document.createElement("td");
        cell.colSpan = columns.length + 1;
        cell.appendChild(viewer(item.body_b64, item.attributes, details ? details(item) : ""));
        detail.appendChild(cell);
        row.after(detail);
        const del = $(".delete-message", cell);
        if (del) del.addEventListener("click", () => del.dispatchEvent(new CustomEvent("delete-message", { bubbles: true, detail: item })));
      });
      tbody.appendChild(row);
    }
    el.dataset.loads = String(Number(el.dataset.loads || 0) + 1); // tests wait on this
  }

  function searchForm(id, extra) {
    return `<form id="${id}" class="inline search">${extra || ""}
      <input name="text" placeholder="body contains">
      <input name="attribute" placeholder="attribute" size="12"><input name="value" placeholder="= value" size="12">
      <button type="submit">Search</button></form>`;
  }

  async function queueView(name) {
    const token = state.renders;
    const view = $("#view");
    const data = await get("queue", { name });
    const q = data.queue;
    const redrive = data.dead_letter_sources.length ? `<section id="redrive"><h2>Redrive (dead-letter queue of ${data.dead_letter_sources.map(esc).join(", ")})</h2>
        <form id="redrive-form" class="inline"><input name="destination" placeholder="destination (default: each message's source)">
        <input name="rate" placeholder="messages/s (max)" size="14"><button type="submit">Start redrive</button></form>
        <div id="tasks"></div></section>` : "";
    view.innerHTML = `<h1>Queue ${esc(q.name)}${q.fifo ? ' <span class="tag">FIFO</span>' : ""}</h1>
      <section class="cards">${card("visible", num(q.visible), "q-visible", "visible")}${card("in flight", num(q.in_flight), "q-in-flight", "in_flight")}${card("delayed", num(q.delayed), "q-delayed", "delayed")}
        ${card("sent", num(q.sent_total))}${card("received", num(q.received_total))}${card("deleted", num(q.deleted_total))}${card("disk", bytes(q.disk_bytes))}</section>
      <section class="live"><div class="live-head"><h2>Live</h2></div><div class="charts" id="charts"></div></section>
      <section class="actions"><h2>Operate</h2>
        <form id="send-form" class="stacked"><textarea name="body" placeholder="message body" rows="3" required></textarea>
          ${attributeEditor()}
          <div class="inline">${q.fifo ? '<input name="group_id" placeholder="group id" required><input name="dedup_id" placeholder="deduplication id">' : '<input name="delay" placeholder="delay s" size="8"><input name="group_id" placeholder="group id (optional)">'}
          <button type="submit">Send</button></div></form>
        <p><button type="button" id="purge" class="danger">Purge</button> <button type="button" id="delete-queue" class="danger">Delete queue</button></p>
        <details><summary>Attributes</summary><pre>${esc(JSON.stringify(data.attributes, null, 2))}</pre></details></section>
      ${redrive}
      <section><h2>Messages</h2><p class="muted">Peeked without receiving: receive counts and visibility do not change.</p>
        ${searchForm("search")}
        <table id="messages" class="grid"><thead><tr><th>offset</th><th>state</th><th>receives</th><th>sent</th><th>visible at</th><th>id</th><th>body</th></tr></thead><tbody></tbody></table>
        <div id="messages-more"></div></section>`;
    document.body.dataset.view = "queue";
    if (!(await ready(token))) return;
    $(".live-head", view).appendChild(windowPicker("queue:" + name));
    chart($("#charts"), "Rates", ["sent", "received", "deleted"], "channel");
    chart($("#charts"), "Backlog", ["visible", "in_flight", "delayed"], "channel");
    listen("queue:" + name);
    wireAttributeEditors(view);

    const columns = [
      { html: (m) => num(m.offset), cls: "n" },
      { html: (m) => `<span class="state ${m.state}">${esc(m.state.replace("_", " "))}</span>` },
      { html: (m) => num(m.receive_count), cls: "n receives" },
      { html: (m) => when(m.sent_at_ms) },
      { html: (m) => (m.state === "visible" ? "" : when(m.visible_at_ms)) },
      { html: (m) => `<code>${esc(m.id)}</code>` },
    ];
    const details = (m) => `<p class="muted">id ${esc(m.id)}${m.group_id ? " · group " + esc(m.group_id) : ""}${m.sequence_number ? " · seq " + esc(m.sequence_number) : ""} · ${num(m.size)} bytes</p>
      <button type="button" class="delete-message danger">Delete this message</button>`;
    let query = {};
    const load = async (start) => {
      const page = await attempt(() => get("queue/messages", { name, start: String(start || 0), limit: "50", ...query }));
      if (!page) return;
      messageRows($("#messages"), page.messages, columns, details);
      const more = $("#messages-more");
      more.innerHTML = `<p class="muted">${num(page.messages.length)} shown, ${num(page.scanned)} looked at</p>`;
      pager(more, page.next_start, load);
    };
    $("#messages").addEventListener("delete-message", async (e) => {
      const m = e.detail;
      if (!(await confirmAction(`Delete message ${m.id} (offset ${m.offset}) from ${name}? This cannot be undone.`))) return;
      const done = await attempt(() => post("queue/delete-message", { name, offset: m.offset }));
      if (done) { notice(done.deleted ? "message deleted" : "the message was already gone", "ok"); load(0); }
    });
    onSubmit(view, "#search", (values) => { query = values; return load(0); });
    onSubmit(view, "#send-form", async (values, el) => {
      const sent = await attempt(() => post("queue/send", { name, ...values }));
      if (sent) { notice("sent message " + sent.id, "ok"); $("textarea", el).value = ""; load(0); }
    });
    $("#purge").addEventListener("click", async () => {
      if (!(await confirmAction(`Purge ${name}? Every message in it is deleted.`))) return;
      if (await attempt(() => post("queue/purge", { name }), "purged " + name)) load(0);
    });
    $("#delete-queue").addEventListener("click", async () => {
      if (!(await confirmAction(`Delete queue ${name} and all its messages?`))) return;
      if (await attempt(() => post("queue/delete", { name }), "deleted queue " + name)) location.hash = "#/";
    });
    if (redrive) {
      const tasks = async () => {
        const fresh = await attempt(() => get("queue", { name }));
        if (!fresh) return;
        const list = $("#tasks");
        if (!list) return;
        list.innerHTML = table("task-list", ["started", "destination", "status", "progress", ""], fresh.move_tasks.map((t) =>
          `<tr data-handle="${esc(t.handle)}" data-status="${esc(t.status)}"><td>${when(t.started_ms)}</td><td>${esc(t.destination || "sources")}</td><td class="status">${esc(t.status)}${t.error ? " · " + esc(t.error) : ""}</td>
          <td><progress max="${Math.max(1, t.to_move)}" value="${t.moved}"></progress> <span class="moved">${num(t.moved)}</span> / ${num(t.to_move)}</td>
          <td>${t.status === "RUNNING" ? '<button type="button" class="cancel-task">Cancel</button>' : ""}</td></tr>`));
        for (const button of $$(".cancel-task", list)) {
          button.addEventListener("click", async () => {
            const handle = button.closest("tr").dataset.handle;
            if (!(await confirmAction("Cancel this redrive? Messages already moved stay moved."))) return;
            if (await attempt(() => post("queue/redrive-cancel", { handle }), "redrive cancelled")) tasks();
          });
        }
        if (fresh.move_tasks.some((t) => t.status === "RUNNING")) setTimeout(() => { if (document.body.dataset.view === "queue") tasks(); }, 1000);
      };
      onSubmit(view, "#redrive-form", async (values) => {
        if (!(await confirmAction(`Move the messages of ${name} back to ${values.destination || "their source queues"}?`))) return;
        if (await attempt(() => post("queue/redrive", { source: name, ...values }), "redrive started")) tasks();
      });
      tasks();
    }
    load(0);
  }

  async function topicView(name) {
    const token = state.renders;
    const view = $("#view");
    const data = await get("topic", { name });
    const t = data.topic;
    const queues = state.overview ? state.overview.queues.map((q) => q.name) : [];
    const subs = data.subscriptions.map((s) => `<tr data-id="${esc(s.id)}"><td>${esc(s.protocol)}</td><td>${s.protocol === "sqs" ? `<a href="${chan("queue", s.endpoint.split(":").pop())}">${esc(s.endpoint)}</a>` : esc(s.endpoint)}</td>
      <td><code>${esc(s.filter_policy ? JSON.stringify(s.filter_policy) : "")}</code></td><td>${esc(s.filter_scope)}</td><td>${s.raw ? "raw" : "envelope"}</td><td>${esc(s.status)}</td>
      <td><button type="button" class="unsubscribe danger">Unsubscribe</button></td></tr>`);
    view.innerHTML = `<h1>Topic ${esc(t.name)}${t.fifo ? ' <span class="tag">FIFO</span>' : ""}</h1>
      <section class="cards">${card("subscriptions", num(t.subscriptions))}${card("published", num(t.published_total))}${card("disk", bytes(t.disk_bytes))}</section>
      <section class="live"><div class="live-head"><h2>Live</h2></div><div class="charts" id="charts"></div></section>
      <section><h2>Subscriptions</h2>${table("subscriptions", ["protocol", "endpoint", "filter policy", "scope", "delivery", "status", ""], subs)}
        <form id="subscribe-form" class="stacked"><div class="inline"><label>queue <select name="queue">${queues.map((q) => `<option>${esc(q)}</option>`).join("")}</select></label>
          <label>scope <select name="filter_scope"><option>attributes</option><option>body</option></select></label>
          <label><input type="checkbox" name="raw"> raw delivery</label></div>
          <textarea name="filter_policy" rows="3" placeholder='filter policy, e.g. {"kind": ["video"]}'></textarea>
          <div class="inline"><button type="submit">Subscribe</button></div></form>
        <details id="filter-test" open><summary>Test a message against the filter policy above</summary>
          <form id="test-form" class="stacked"><textarea name="body" rows="2" placeholder="message body"></textarea>${attributeEditor()}
          <div class="inline"><button type="submit">Test</button> <span id="test-result"></span></div></form></details></section>
      <section class="actions"><h2>Publish</h2><form id="publish-form" class="stacked"><textarea name="body" rows="3" required placeholder="message"></textarea>${attributeEditor()}
        <div class="inline"><input name="subject" placeholder="subject">${t.fifo ? '<input name="group_id" placeholder="group id" required><input name="dedup_id" placeholder="deduplication id">' : ""}<button type="submit">Publish</button></div></form>
        <p><button type="button" id="delete-topic" class="danger">Delete topic</button></p></section>
      <section><h2>Published messages</h2>${searchForm("search", '<select name="from"><option value="start">from the oldest</option><option value="offset">from offset</option><option value="time">from time (UTC)</option></select><input name="from_value" placeholder="offset or 2026-01-01 12:00" size="18">')}
        <table id="messages" class="grid"><thead><tr><th>offset</th><th>published</th><th>subject</th><th>id</th><th>body</th></tr></thead><tbody></tbody></table>
        <div id="messages-more"></div></section>`;
    document.body.dataset.view = "topic";
    if (!(await ready(token))) return;
    $(".live-head", view).appendChild(windowPicker("topic:" + name));
    chart($("#charts"), "Published", ["published"], "channel");
    listen("topic:" + name);
    wireAttributeEditors(view);
    for (const button of $$(".unsubscribe", view)) {
      button.addEventListener("click", async () => {
        const id = button.closest("tr").dataset.id;
        if (!(await confirmAction("Remove this subscription?"))) return;
        if (await attempt(() => post("topic/unsubscribe", { name, subscription: id }), "unsubscribed")) route();
      });
    }
    onSubmit(view, "#subscribe-form", async (values) => {
      if (await attempt(() => post("topic/subscribe", { name, ...values }), "subscribed " + values.queue)) route();
    });
    onSubmit(view, "#test-form", async (values) => {
      const sub = form($("#subscribe-form"));
      const result = await attempt(() => post("filter/test", { ...values, filter_policy: sub.filter_policy, filter_scope: sub.filter_scope }));
      const out = $("#test-result");
      out.textContent = result == null ? "" : result.matches ? "matches: it would be delivered" : "does not match: it would not be delivered";
      out.className = result && result.matches ? "match yes" : "match no";
    });
    onSubmit(view, "#publish-form", async (values, el) => {
      const done = await attempt(() => post("topic/publish", { name, ...values }));
      if (done) { notice(`published ${done.id} to ${done.delivered} subscription(s)`, "ok"); $("textarea", el).value = ""; load(0); }
    });
    $("#delete-topic").addEventListener("click", async () => {
      if (!(await confirmAction(`Delete topic ${name}, its history and subscriptions (not the queues)?`))) return;
      if (await attempt(() => post("topic/delete", { name }), "deleted topic " + name)) location.hash = "#/";
    });
    const columns = [
      { html: (m) => num(m.offset), cls: "n" }, { html: (m) => when(m.published_at_ms) },
      { html: (m) => esc(m.subject || "") }, { html: (m) => `<code>${esc(m.id)}</code>` },
    ];
    let query = {};
    const load = async (start) => {
      const params = { name, start: String(start || 0), limit: "50", text: query.text || "", attribute: query.attribute || "", value: query.value || "" };
      if (!start && query.from === "offset") params.start = query.from_value || "0";
      if (!start && query.from === "time" && query.from_value) params.from_ms = String(Date.parse(query.from_value.replace(" ", "T") + "Z"));
      const page = await attempt(() => get("topic/messages", params));
      if (!page) return;
      messageRows($("#messages"), page.messages, columns);
      const more = $("#messages-more");
      more.innerHTML = `<p class="muted">${num(page.messages.length)} shown, ${num(page.scanned)} looked at</p>`;
      pager(more, page.next_start, load);
    };
    onSubmit(view, "#search", (values) => { query = values; return load(0); });
    load(0);
  }

  async function streamView(name) {
    const token = state.renders;
    const view = $("#view");
    const data = await get("stream", { name });
    const st = data.stream;
    const shards = data.shards.map((s) => `<tr><td>${esc(s.shard_id)}</td><td>${s.closed ? "closed" : "open"}</td><td>${esc(s.parents.join(", "))}</td><td><code>${esc(s.starting_sequence_number)}</code></td><td><code>${esc(s.ending_sequence_number || "")}</code></td></tr>`);
    const options = data.shards.map((s) => `<option>${esc(s.shard_id)}</option>`).join("");
    const consumers = data.consumers.map((c) => `<tr data-consumer="${esc(c.name)}"><td>${esc(c.name)}</td><td class="n lag">${num(c.records_behind)}</td><td class="n">${(c.millis_behind / 1000).toFixed(1)} s</td>
      <td>${c.shards.map((x) => `${esc(x.shard_id)}: <code>${esc(x.checkpoint || "none")}</code> (${num(x.records_behind)} behind)`).join("<br>")}</td>
      <td><form class="reset inline"><select name="position"><option value="TRIM_HORIZON">TRIM_HORIZON</option><option value="LATEST">LATEST</option><option value="SEQUENCE">at sequence number</option></select>
        <select name="shard"><option value="">all shards</option>${options}</select><input name="sequence" placeholder="sequence number" size="20"><button type="submit">Reset</button></form></td></tr>`);
    view.innerHTML = `<h1>Stream ${esc(st.name)}</h1>
      <section class="cards">${card("open shards", num(st.shards_open))}${card("records", num(st.records))}${card("put total", num(st.records_total))}${card("consumers", num(st.consumers))}${card("retention", data.retention_hours + " h")}${card("disk", bytes(st.disk_bytes))}</section>
      <section class="live"><div class="live-head"><h2>Live</h2></div><div class="charts" id="charts"></div></section>
      <section><h2>Consumers</h2>${table("consumers", ["consumer", "records behind", "oldest behind", "checkpoints", "reset checkpoint"], consumers)}</section>
      <section><h2>Shards</h2>${table("shards", ["shard", "state", "parents", "first sequence number", "last sequence number"], shards)}</section>
      <section class="actions"><h2>Put a record</h2><form id="put-form" class="inline"><input name="partition_key" placeholder="partition key" required><input name="data" placeholder="data" size="40" required><button type="submit">Put</button></form>
        <p><button type="button" id="delete-stream" class="danger">Delete stream</button></p></section>
      <section><h2>Records</h2><form id="browse" class="inline search"><select name="shard">${options}</select>
        <select name="type"><option>TRIM_HORIZON</option><option>AT_SEQUENCE_NUMBER</option><option>AFTER_SEQUENCE_NUMBER</option><option value="AT_TIMESTAMP">AT_TIMESTAMP (UTC)</option></select>
        <input name="value" placeholder="sequence number or 2026-01-01 12:00" size="24"><input name="text" placeholder="data contains"><button type="submit">Read</button></form>
        <table id="records" class="grid"><thead><tr><th>sequence number</th><th>partition key</th><th>arrived</th><th>data</th></tr></thead><tbody></tbody></table>
        <div id="records-more"></div></section>`;
    document.body.dataset.view = "stream";
    if (!(await ready(token))) return;
    $(".live-head", view).appendChild(windowPicker("stream:" + name));
    chart($("#charts"), "Records put", ["put"], "channel");
    chart($("#charts"), "Consumer lag", ["lag"], "channel");
    listen("stream:" + name);
    for (const el of $$("form.reset", view)) {
      el.addEventListener("submit", async (event) => {
        event.preventDefault();
        const consumer = el.closest("tr").dataset.consumer;
        const values = form(el);
        const position = values.position === "SEQUENCE" ? values.sequence.trim() : values.position;
        if (!(await confirmAction(`Reset the checkpoint of ${consumer} in ${values.shard || "every shard"} to ${position}?`))) return;
        if (await attempt(() => post("stream/consumer-reset", { name, consumer, position, shard: values.shard }), "checkpoint reset")) route();
      });
    }
    onSubmit(view, "#put-form", async (values) => {
      const done = await attempt(() => post("stream/put", { name, ...values }));
      if (done) notice(`put ${done.sequence_number} in ${done.shard_id}`, "ok");
    });
    $("#delete-stream").addEventListener("click", async () => {
      if (!(await confirmAction(`Delete stream ${name}, its records and its consumers' checkpoints?`))) return;
      if (await attempt(() => post("stream/delete", { name }), "deleted stream " + name)) location.hash = "#/";
    });
    const columns = [
      { html: (r) => `<code>${esc(r.sequence_number)}</code>` }, { html: (r) => esc(r.partition_key) },
      { html: (r) => when(r.arrival_ms) },
    ];
    let query = {};
    const load = async (after) => {
      const params = { name, shard: query.shard || (data.shards[0] || {}).shard_id || "", type: query.type || "TRIM_HORIZON", value: query.value || "", text: query.text || "", limit: "50" };
      if (after) { params.type = "AFTER_SEQUENCE_NUMBER"; params.value = after; }
      else if (params.type === "AT_TIMESTAMP") params.value = String(Date.parse(params.value.replace(" ", "T") + "Z"));
      const page = await attempt(() => get("stream/records", params));
      if (!page) return;
      messageRows($("#records"), page.records, columns);
      const more = $("#records-more");
      more.innerHTML = `<p class="muted">${num(page.records.length)} shown, ${num(page.scanned)} looked at</p>`;
      pager(more, page.next_after, load);
    };
    onSubmit(view, "#browse", (values) => { query = values; return load(null); });
    if (data.shards.length) load(null);
  }

  function keyValues(id, object) {
    return `<table id="${id}" class="grid kv"><tbody>${Object.entries(object).map(([k, v]) =>
      `<tr><th>${esc(k)}</th><td>${esc(typeof v === "object" && v !== null ? JSON.stringify(v) : v)}</td></tr>`).join("")}</tbody></table>`;
  }

  async function deliveryView(name) {
    const data = await get("delivery", { name });
    $("#view").innerHTML = `<h1>Delivery stream ${esc(name)}</h1>
      <section><h2>Progress</h2>${keyValues("delivery-progress", { ...data.delivery_stream, ...data.stats })}</section>
      <section><h2>Settings</h2>${keyValues("delivery-settings", data.settings)}</section>`;
    document.body.dataset.view = "delivery";
  }

  async function applicationView(name) {
    const data = await get("application", { name });
    $("#view").innerHTML = `<h1>SQL application ${esc(name)}</h1>
      <section>${keyValues("application-state", data.application)}</section><section><h2>Query</h2><pre>${esc(data.sql)}</pre></section>`;
    document.body.dataset.view = "application";
  }

  function sqlView() {
    const view = $("#view");
    const names = state.overview ? [...state.overview.streams, ...state.overview.queues, ...state.overview.topics].map((c) => c.name) : [];
    const example = names.length ? `SELECT * FROM "${names[0]}" ORDER BY arrival_time DESC LIMIT 20` : "SELECT 42 AS answer";
    view.innerHTML = `<h1>SQL</h1><p class="muted">DuckDB over every stream, queue and topic (each a table named after it; docs/api.md, "SQL"). Read-only: no file access.</p>
      <form id="sql-form" class="stacked"><textarea name="query" rows="6" spellcheck="false">${esc(example)}</textarea>
      <div class="inline"><button type="submit">Run</button> <span id="sql-status" class="muted"></span></div></form><div id="sql-result"></div>`;
    document.body.dataset.view = "sql";
    onSubmit(view, "#sql-form", async (values) => {
      const started = performance.now();
      $("#sql-status").textContent = "running…";
      const result = await attempt(() => post("sql", values));
      $("#sql-status").textContent = result ? `${num(result.row_count)} rows in ${((performance.now() - started) / 1000).toFixed(2)} s${result.truncated ? " (first 1,000 shown)" : ""}` : "failed";
      if (!result) return;
      $("#sql-result").innerHTML = table("sql-table", result.columns, result.rows.map((row) =>
        "<tr>" + row.map((v) => `<td>${esc(typeof v === "object" && v !== null ? JSON.stringify(v) : v)}</td>`).join("") + "</tr>"));
    });
  }

  // -- login and routing -----------------------------------------------------------------------

  function showLogin() {
    stopLive();
    state.prefetch = null;
    document.body.dataset.view = "login";
    $("#view").innerHTML = `<section class="login"><h1>Log in</h1>
      <p class="muted">This server checks AWS signatures (--auth). Log in with one of its access keys and the key's secret.</p>
      <form id="login-form" class="stacked"><input name="access_key" placeholder="access key id" autocomplete="username" required>
      <input name="secret" type="password" placeholder="secret access key" autocomplete="current-password" required>
      <div class="inline"><button type="submit">Log in</button></div></form></section>`;
    onSubmit($("#view"), "#login-form", async (values) => {
      const done = await attempt(() => post("login", values));
      if (done) { state.csrf = done.csrf; await session(); route(); }
    });
  }

  async function session() {
    state.session = await (await fetch(API + "session", { credentials: "same-origin" })).json();
    state.csrf = state.session.csrf;
    $("#store-path").textContent = state.session.store;
    $("#user").textContent = state.session.access_key ? "logged in as " + state.session.access_key : "";
    $("#logout").hidden = !state.session.access_key;
  }

  async function route() {
    stopLive();
    state.renders = (state.renders || 0) + 1;
    if (state.session.auth_required && !state.session.logged_in) { showLogin(); return; }
    const [, kind, raw] = (location.hash || "#/").split("/");
    const name = raw ? decodeURIComponent(raw) : "";
    try {
      if (!state.overview && kind && kind !== "sql") state.overview = await get("overview");
      if (state.overview) storeBadge(state.overview.store);
      if (kind === "queue") await queueView(name);
      else if (kind === "topic") await topicView(name);
      else if (kind === "stream") await streamView(name);
      else if (kind === "delivery") await deliveryView(name);
      else if (kind === "application") await applicationView(name);
      else if (kind === "sql") { if (!state.overview) state.overview = await get("overview"); sqlView(); }
      else await overview();
    } catch (error) {
      if (error.status !== 401) $("#view").innerHTML = `<p class="error" id="view-error">${esc(error.message)}</p>`;
    }
  }

  async function main() {
    charting().catch((error) => notice(error.message, "error"));
    // The overview's data is asked for at once, beside the session: the first
    // render waits for one round trip, not two (a 401 just leads to the login).
    if ((location.hash || "#/") === "#/") {
      state.prefetch = get("overview");
      state.prefetch.catch(() => null);
    }
    $("#logout").addEventListener("click", async () => {
      await attempt(() => post("logout"));
      await session();
      route();
    });
    await session();
    window.addEventListener("hashchange", route);
    // Close the event stream as the page goes: the browser alone may keep it open a while.
    window.addEventListener("pagehide", stopLive);
    await route();
  }

  document.addEventListener("DOMContentLoaded", main);
})();
