// resound's listening page: search by text, by dropped clip, classify a clip, play results from their segment.
// Plain script, no build step and nothing fetched from elsewhere (the service's CSP allows only 'self').
"use strict";

const $ = (selector, root = document) => root.querySelector(selector);
const state = { info: null, playing: null };

function setStatus(text, isError = false) {
  const status = $("#status");
  status.textContent = text;
  status.classList.toggle("error", isError);
}

// fetch + JSON, turning the API's {"detail": ...} refusals into one readable error line.
async function api(url, options) {
  const response = await fetch(url, options);
  let body = null;
  try { body = await response.json(); } catch { /* not JSON: use the status text */ }
  if (!response.ok) {
    let detail = response.statusText;
    if (body && typeof body.detail === "string") detail = body.detail;
    else if (body && Array.isArray(body.detail)) {
      detail = body.detail.map((d) => `${(d.loc || []).slice(1).join(".")}: ${d.msg}`).join("; ");
    }
    throw new Error(`${response.status}: ${detail}`);
  }
  return body;
}

async function run(action, ...args) {
  try {
    await action(...args);
  } catch (error) {
    setStatus(error.message, true);
  }
}

function seconds(s) {
  if (s < 60) return s.toFixed(2);
  const m = Math.floor(s / 60);
  return `${m}:${(s - 60 * m).toFixed(2).padStart(5, "0")}`;
}

async function loadInfo() {
  const info = await api("/api/info");
  state.info = info;
  $("#index-info").textContent =
    `${info.counts.segments.toLocaleString()} segments of ${info.counts.files.toLocaleString()} files` +
    ` · model ${info.model.id} · ${info.faiss_factory}`;
  const labelSet = $("#label-set");
  labelSet.replaceChildren(...info.label_sets.map((name) => new Option(name, name, false, name === info.default_label_set)));
  if (info.modalities.length > 1) {
    const modality = $("#modality");
    modality.replaceChildren(new Option("sound and picture", ""), ...info.modalities.filter((m) => m !== "av")
      .map((m) => new Option(m === "audio" ? "sound only" : "picture only", m)));
    modality.hidden = false;
  }
}

function modalityParam() {
  const modality = $("#modality");
  return modality.hidden ? "" : modality.value;
}

// The filter fields as [name, value] pairs, the same names the API takes (repeated for lists).
function filterParams() {
  const pairs = [];
  const text = (id) => $(id).value.trim();
  for (const [name, id] of [["under", "#f-under"], ["glob", "#f-glob"], ["min_duration", "#f-min-duration"],
    ["max_duration", "#f-max-duration"], ["has", "#f-has"], ["modified_after", "#f-modified-after"],
    ["modified_before", "#f-modified-before"]]) {
    if (text(id)) pairs.push([name, text(id)]);
  }
  for (const ext of text("#f-ext").split(/[\s,]+/)) if (ext) pairs.push(["ext", ext]);
  for (const tag of text("#f-tag").split(";")) if (tag.trim()) pairs.push(["tag", tag.trim()]);
  return pairs;
}

function withFilters(params) {
  for (const [name, value] of filterParams()) params.append(name, value);
  return params;
}

// -- results ----------------------------------------------------------------------------------------
function renderHits(data, title) {
  const list = $("#results");
  list.replaceChildren();
  $("#results-title").textContent = title;
  const template = $("#hit-template");
  for (const hit of data.hits) {
    const li = template.content.firstElementChild.cloneNode(true);
    li.dataset.segment = hit.segment_id;
    li.dataset.file = hit.file_id;
    li.dataset.start = hit.start;
    li.dataset.end = hit.end;
    $(".rank", li).textContent = hit.rank;
    $(".name", li).textContent = hit.name;
    $(".span", li).textContent = `${seconds(hit.start)}–${seconds(hit.end)} s`;
    $(".path", li).textContent = hit.path;
    $(".score", li).textContent = hit.score.toFixed(3);
    $(".score-bar", li).style.width = `${Math.max(0, Math.min(1, hit.score)) * 100}%`;
    const image = $(".waveform", li);
    image.src = hit.waveform_url;
    // Clicking the waveform plays from that point of the segment.
    image.addEventListener("click", (event) => {
      const box = image.getBoundingClientRect();
      const fraction = Math.max(0, Math.min(1, (event.clientX - box.left) / box.width));
      play(hit, li, hit.start + fraction * (hit.end - hit.start));
    });
    $(".play", li).addEventListener("click", () => play(hit, li));
    $(".more", li).addEventListener("click", () => run(similarToSegment, hit));
    // One hit per file: the file's other matching windows, each a button that plays from its start.
    const others = (hit.windows || []).slice(1);
    const windows = $(".hit-windows", li);
    windows.hidden = others.length === 0;
    for (const w of others) {
      const button = document.createElement("button");
      button.type = "button";
      button.className = "window";
      button.title = `score ${w.score.toFixed(3)}`;
      button.textContent = `${seconds(w.start)}–${seconds(w.end)} s`;
      button.addEventListener("click", () => play({ ...hit, start: w.start, end: w.end }, li, w.start));
      windows.append(" ", button);
    }
    // What the file says of itself: its description, comment, notes, names.
    const tags = Object.entries(hit.tags || {});
    const tagLine = $(".hit-tags", li);
    const matched = (hit.matched_words || []).length ? [`words: ${hit.matched_words.join(", ")}`] : [];
    tagLine.hidden = tags.length + matched.length === 0;
    tagLine.textContent = matched.concat(tags.map(([key, value]) => `${key}: ${value}`)).join(" · ");
    list.append(li);
  }
  $("#results-section").hidden = false;
  const notes = (data.notes || []).join(" ");
  setStatus((data.hits.length ? `${data.hits.length} files in ${Math.round(data.took_ms)} ms` : "no results") + (notes ? ` (${notes})` : ""));
}

async function search(text) {
  const q = text.trim();
  if (!q) return;
  const params = withFilters(new URLSearchParams({ q, k: $("#k").value }));
  if (modalityParam()) params.set("modality", modalityParam());
  params.set("mode", $("#mode").value);
  setStatus(`searching for “${q}”…`);
  const data = await api(`/api/query?${params}`);
  history.replaceState(null, "", `?${new URLSearchParams({ q })}`);
  renderHits(data, `Results for “${q}”`);
}

async function similarToSegment(hit) {
  setStatus(`searching for segments like ${hit.name}…`);
  const params = withFilters(new URLSearchParams({ k: $("#k").value }));
  const data = await api(`/api/segments/${hit.segment_id}/similar?${params}`);
  renderHits(data, `Like ${hit.name} ${seconds(hit.start)}–${seconds(hit.end)} s`);
}

function checkSize(file) {
  const limit = state.info && state.info.limits.max_upload_bytes;
  if (limit && file.size > limit) {
    throw new Error(`${file.name} is ${(file.size / 2 ** 20).toFixed(1)} MiB; the service takes at most ` +
                    `${(limit / 2 ** 20).toFixed(1)} MiB`);
  }
}

async function findSimilar(file) {
  checkSize(file);
  const form = new FormData();
  form.append("file", file);
  form.append("k", $("#k").value);
  if (modalityParam()) form.append("modality", modalityParam());
  withFilters(form);
  setStatus(`searching for sounds like ${file.name}…`);
  renderHits(await api("/api/similar", { method: "POST", body: form }), `Sounds like ${file.name}`);
}

// -- classification -----------------------------------------------------------------------------------
async function classify(file) {
  checkSize(file);
  const form = new FormData();
  form.append("file", file);
  form.append("k", "10");
  const own = $("#labels").value.trim();
  if (own) form.append("labels", own);
  else form.append("label_set", $("#label-set").value);
  setStatus(`classifying ${file.name}…`);
  const data = await api("/api/classify", { method: "POST", body: form });
  renderLabels(data, file.name);
  setStatus(`classified ${file.name} in ${Math.round(data.took_ms)} ms`);
}

function labelRow(label) {
  const row = document.createElement("li");
  row.className = "label-row";
  const name = document.createElement("span");
  name.className = "label";
  name.textContent = label.label;
  const track = document.createElement("div");
  track.className = "bar-track";
  const bar = document.createElement("div");
  bar.className = "bar";
  bar.style.width = `${(100 * label.probability).toFixed(1)}%`;
  track.append(bar);
  const probability = document.createElement("span");
  probability.className = "probability";
  probability.textContent = `${(100 * label.probability).toFixed(1)}%`;
  row.append(name, track, probability);
  return row;
}

function renderLabels(data, fileName) {
  $("#classification-title").textContent =
    `Labels for ${fileName} (${data.label_set}: ${data.n_labels} labels, ${data.prompts} prompts)`;
  $("#label-bars").replaceChildren(...data.labels.map(labelRow));
  const timeline = $("#timeline");
  timeline.replaceChildren();
  if (data.timeline.length) {
    const list = document.createElement("ol");
    list.className = "windows";
    for (const span of data.timeline) {
      const item = document.createElement("li");
      const top = span.labels[0];
      item.textContent = `${seconds(span.start)}–${seconds(span.end)} s: ${top.label} (${(100 * top.probability).toFixed(0)}%)`;
      list.append(item);
    }
    timeline.append(list);
  }
  $("#classification").hidden = false;
}

// -- the player ---------------------------------------------------------------------------------------
function play(hit, li, at) {
  const player = $("#player");
  const start = at ?? hit.start;
  for (const other of document.querySelectorAll(".hit.playing")) {
    other.classList.remove("playing");
    $(".cursor", other).hidden = true;
  }
  li.classList.add("playing");
  state.playing = { hit, li };
  $("#now-playing").textContent = `${hit.name} from ${seconds(start)} s`;
  if (player.dataset.file === String(hit.file_id) && player.readyState >= 1) {
    player.currentTime = start; // the same file is loaded: seek (a Range request), do not reload
  } else {
    player.dataset.file = hit.file_id;
    // The media fragment starts playback at the segment; setting currentTime once the metadata is in
    // covers a browser that ignores #t=.
    player.src = `${hit.audio_url}#t=${start.toFixed(3)}`;
    player.addEventListener("loadedmetadata", () => {
      if (Math.abs(player.currentTime - start) > 0.25) player.currentTime = start;
    }, { once: true });
  }
  player.play().catch((error) => setStatus(`cannot play ${hit.name}: ${error.message}`, true));
}

function followPlayback() {
  const playing = state.playing;
  if (!playing) return;
  const { hit, li } = playing;
  const cursor = $(".cursor", li);
  const fraction = ($("#player").currentTime - hit.start) / (hit.end - hit.start);
  cursor.hidden = !(fraction >= 0 && fraction <= 1);
  cursor.style.left = `${(100 * fraction).toFixed(2)}%`;
}

// -- wiring -------------------------------------------------------------------------------------------
function dropZone(zone, input, action) {
  const take = (file) => { if (file) run(action, file); };
  zone.addEventListener("click", () => input.click());
  zone.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") { event.preventDefault(); input.click(); }
  });
  input.addEventListener("click", (event) => event.stopPropagation());
  input.addEventListener("change", () => {
    const file = input.files[0];
    input.value = ""; // choosing the same file again must fire `change` again
    take(file);
  });
  zone.addEventListener("dragover", (event) => { event.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("over");
    take(event.dataTransfer && event.dataTransfer.files[0]);
  });
}

document.addEventListener("DOMContentLoaded", () => {
  $("#search-form").addEventListener("submit", (event) => {
    event.preventDefault();
    run(search, $("#q").value);
  });
  dropZone($("#drop-similar"), $("#file-similar"), findSimilar);
  dropZone($("#drop-classify"), $("#file-classify"), classify);
  // A file dropped next to a zone must not make the browser navigate away to it.
  for (const type of ["dragover", "drop"]) window.addEventListener(type, (event) => event.preventDefault());
  $("#player").addEventListener("timeupdate", followPlayback);
  run(async () => {
    await loadInfo();
    const q = new URLSearchParams(location.search).get("q");
    if (q) {
      $("#q").value = q;
      await search(q);
    }
  });
});
