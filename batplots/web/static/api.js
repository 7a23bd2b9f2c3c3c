// Batplots page: talking to the JSON API (loaded before app.js; plain scripts, no build step).
"use strict";

class ApiError extends Error {
  constructor(status, message, body) { super(message); this.status = status; this.body = body || {}; }
}

// The server did not answer, or the connection broke mid-answer (the server stopped).
class ConnectionLost extends Error {
  constructor() { super("The server stopped answering."); this.name = "ConnectionLost"; }
}

// fetch, with a network failure (a TypeError: "Failed to fetch", "network error") as ConnectionLost.
async function reach(path, init) {
  try {
    return await fetch(path, init);
  } catch (err) {
    if (err instanceof TypeError) throw new ConnectionLost();
    throw err;  // AbortError: Stop
  }
}

async function api(method, path, body) {
  const init = { method, headers: { Accept: "application/json" } };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const res = await reach(path, init);
  if (res.status === 204) return null;
  const data = await res.json().catch(() => ({}));
  if (!res.ok) throw new ApiError(res.status, data.detail || `request failed (${res.status})`, data);
  return data;
}

// A page of a list: {data, next} where next is the URL of the next page (Link: rel="next") or null.
async function apiPage(path) {
  const res = await reach(path, { headers: { Accept: "application/json" } });
  const data = await res.json().catch(() => ({}));
  if (!res.ok) throw new ApiError(res.status, data.detail || `request failed (${res.status})`, data);
  const link = (res.headers.get("Link") || "").match(/<([^>]+)>;\s*rel="next"/);
  return { data, next: link ? link[1] : null };
}

// --- server-sent events over fetch (EventSource cannot POST) -------------------------
async function streamEvents(path, body, onEvent, signal) {
  const res = await reach(path, {
    method: "POST", signal,
    headers: { "Content-Type": "application/json", Accept: "text/event-stream" },
    body: JSON.stringify(body),
  });
  if (!res.ok) {
    const data = await res.json().catch(() => ({}));
    throw new ApiError(res.status, data.detail || `request failed (${res.status})`, data);
  }
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    let value, done;
    try {
      ({ value, done } = await reader.read());
    } catch (err) {
      if (err instanceof TypeError) throw new ConnectionLost();  // the server went away mid-stream
      throw err;
    }
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      let event = "message", data = "";
      for (const line of block.split("\n")) {
        if (line.startsWith("event: ")) event = line.slice(7);
        else if (line.startsWith("data: ")) data += line.slice(6);
      }
      onEvent(event, data ? JSON.parse(data) : {});
    }
  }
}
