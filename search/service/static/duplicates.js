// The duplicates view: groups of files that are one recording, each member with its similarity to the
// group's first (longest) file and where it starts in it. Plain script, nothing fetched from elsewhere.
"use strict";

const $ = (selector, root = document) => root.querySelector(selector);

function setStatus(text, isError = false) {
  const status = $("#status");
  status.textContent = text;
  status.classList.toggle("error", isError);
}

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function play(member) {
  const player = $("#player");
  player.src = member.audio_url;
  $("#now-playing").textContent = member.name;
  player.play().catch(() => {});
}

function renderGroups(data) {
  const list = $("#groups");
  list.replaceChildren();
  for (const group of data.groups) {
    const li = element("li", "duplicate-group");
    const members = element("ul", "duplicate-members");
    group.members.forEach((member, i) => {
      const row = element("li", "duplicate-member");
      const button = element("button", "play", "▶");
      button.type = "button";
      button.title = "play";
      button.addEventListener("click", () => play(member));
      row.append(button,
        element("span", "score", i === 0 ? "reference" : member.match === null
          ? `similarity ${member.similarity.toFixed(3)}`
          : `similarity ${member.similarity.toFixed(3)} · match ${member.match.toFixed(3)}`),
        element("span", "span muted", i === 0 ? `${member.duration.toFixed(2)} s`
          : `starts at ${member.offset >= 0 ? "+" : ""}${member.offset.toFixed(2)} s`),
        element("span", "name", member.name),
        element("span", "path muted", member.path));
      members.append(row);
    });
    li.append(element("strong", null, `${group.members.length} files`), members);
    list.append(li);
  }
  const n = data.groups.length;
  const rule = `window similarity ≥ ${data.threshold}` + (data.min_match === null ? "" : `, match ≥ ${data.min_match}`);
  setStatus(n ? `${n} group${n === 1 ? "" : "s"} at ${rule} (${data.took_ms.toFixed(0)} ms)` : `no duplicates at ${rule}`);
}

async function findDuplicates(event) {
  if (event) event.preventDefault();
  const params = new URLSearchParams();
  for (const [id, name] of [["#threshold", "threshold"], ["#min-match", "min_match"]]) {
    const value = $(id).value.trim();
    if (value) params.set(name, value);
  }
  setStatus("comparing files…");
  try {
    const response = await fetch(`/api/duplicates?${params}`);
    const body = await response.json().catch(() => null);
    if (!response.ok) throw new Error(`${response.status}: ${body && typeof body.detail === "string" ? body.detail : response.statusText}`);
    renderGroups(body);
  } catch (error) {
    setStatus(error.message, true);
  }
}

$("#duplicates-form").addEventListener("submit", findDuplicates);
findDuplicates();
