// contextd chat: a small chat app over contextd's public JSON-RPC API.
//
// It is also the example for app developers. Everything it does, an app
// can do the same way (docs/protocols/rpc.md):
//
//   1. Log in: `contextd ui` prints http://HOST:PORT/#login=CODE. The page
//      POSTs the one-time CODE to /auth/login and gets an app token with
//      the scopes feeds:read, feeds:write, contexts:read, contexts:write.
//      It keeps the token in localStorage, so a reload stays logged in.
//   2. Open a WebSocket to ws://HOST:PORT/rpc?token=TOKEN (browsers cannot
//      set an Authorization header on a WebSocket) and send JSON-RPC 2.0
//      requests over it.
//   3. context.list / context.join / context.create manage rooms;
//      context.subscribe streams a room's history and then its live
//      messages as context.message notifications, each with a cursor;
//      context.publish sends. After a reconnection the page subscribes
//      again from the last cursor it saw: nothing is missed or doubled.
//
// Text from the network is only ever put in the page with textContent,
// never as HTML.

'use strict';

const TOKEN_KEY = 'contextd.token'; // localStorage: the app token
const ROOM_KEY = 'contextd.room';   // localStorage: the room last open
const HISTORY = 200;                // messages shown when a room opens

// ---------------------------------------------------------------------------
// JSON-RPC over WebSocket

// RPCError is an error the server answered: code and message as in
// docs/protocols/rpc.md ("Errors").
class RPCError extends Error {
  constructor(code, message) {
    super(message);
    this.code = code;
  }
}

// RPC is one WebSocket connection. call() sends a request and resolves with
// its result; notifications (requests from the server, without an id) go to
// onNotify; onClose runs once when the connection ends.
class RPC {
  constructor(url, onNotify, onClose) {
    this.nextID = 1;
    this.pending = new Map(); // request id → {resolve, reject}
    this.ws = new WebSocket(url);
    this.opened = new Promise((resolve, reject) => {
      this.ws.onopen = () => resolve();
      this.ws.onerror = () => reject(new Error('cannot connect to ' + url.split('?')[0]));
    });
    this.ws.onmessage = (ev) => {
      const msg = JSON.parse(ev.data);
      if (msg.id !== undefined && msg.id !== null && this.pending.has(msg.id)) {
        const p = this.pending.get(msg.id);
        this.pending.delete(msg.id);
        if (msg.error) p.reject(new RPCError(msg.error.code, msg.error.message));
        else p.resolve(msg.result);
      } else if (msg.method) {
        onNotify(msg.method, msg.params);
      }
    };
    this.ws.onclose = () => {
      for (const p of this.pending.values()) p.reject(new Error('connection lost'));
      this.pending.clear();
      onClose();
    };
  }

  call(method, params) {
    const id = this.nextID++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.ws.send(JSON.stringify({ jsonrpc: '2.0', id, method, params }));
    });
  }

  close() {
    this.ws.close();
  }
}

// ---------------------------------------------------------------------------
// State

const state = {
  token: null,
  me: null,          // this node's ID (node.info)
  rpc: null,         // the open connection, or null
  rooms: new Map(),  // context ID → api.Context, as context.list returns them
  room: null,        // the open room: {id, sub, cursor, opening}
  backoff: 500,      // ms before the next reconnection attempt
};

const $ = (id) => document.getElementById(id);

// ---------------------------------------------------------------------------
// Login

// login returns the app token: from a #login=CODE fragment (exchanged at
// /auth/login, then removed from the URL), else the one stored earlier.
async function login() {
  const m = /^#login=([0-9a-f]+)$/.exec(location.hash);
  if (m) {
    history.replaceState(null, '', location.pathname + location.search);
    const resp = await fetch('/auth/login', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ code: m[1] }),
    });
    if (resp.ok) {
      const tok = await resp.json();
      localStorage.setItem(TOKEN_KEY, tok.token);
    } else {
      showError('login failed: ' + (await errorText(resp)));
    }
  }
  return localStorage.getItem(TOKEN_KEY);
}

// whoami checks the token with one plain HTTP POST (node.info): a revoked
// or unknown token gets HTTP 401, which a WebSocket cannot tell apart from
// other failures. It returns the node's ID, or null after a 401.
async function whoami(token) {
  const resp = await fetch('/rpc', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', 'Authorization': 'Bearer ' + token },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'node.info' }),
  });
  if (resp.status === 401) return null;
  const msg = await resp.json();
  if (msg.error) throw new RPCError(msg.error.code, msg.error.message);
  return msg.result.id;
}

async function errorText(resp) {
  try {
    return (await resp.json()).error.message;
  } catch {
    return 'HTTP ' + resp.status;
  }
}

function showLogin() {
  localStorage.removeItem(TOKEN_KEY);
  $('login').hidden = false;
  setStatus('not logged in');
}

// ---------------------------------------------------------------------------
// Connection

// connect opens the WebSocket, loads the rooms and (re)subscribes to the
// open room from its cursor. A dropped connection reconnects with backoff.
async function connect() {
  try {
    state.me = await whoami(state.token);
    if (state.me === null) return showLogin();
    $('me').textContent = 'me: ' + shortID(state.me);
    $('me').title = state.me;
    // wss: when the page itself came over https (behind a TLS proxy).
    const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
    const rpc = new RPC(`${scheme}://${location.host}/rpc?token=${encodeURIComponent(state.token)}`, onNotify, onClose);
    await rpc.opened;
    state.rpc = rpc;
    state.backoff = 500;
    setStatus('connected');
    await refreshRooms();
    const id = state.room ? state.room.id : localStorage.getItem(ROOM_KEY);
    if (id && state.rooms.has(id)) await openRoom(id);
  } catch (err) {
    setStatus('offline: ' + err.message);
    state.rpc = null;
    retry();
  }
}

function onClose() {
  if (state.rpc === null) return; // never opened: connect() retries
  state.rpc = null;
  if (state.room) state.room.sub = null;
  enableCompose(false);
  setStatus('disconnected, reconnecting…');
  retry();
}

function retry() {
  setTimeout(connect, state.backoff);
  state.backoff = Math.min(state.backoff * 2, 10000);
}

// onNotify handles the server's notifications.
function onNotify(method, params) {
  const room = state.room;
  // Only the open room's subscription is wanted; a notification of one
  // just unsubscribed may still arrive. The subscribe response always comes
  // before the subscription's first notification, so room.sub is known.
  if (!room || params.subscription !== room.sub) return;
  if (method === 'context.message') {
    const m = params.message;
    if (m.cursor <= room.cursor) return; // shown already
    room.cursor = m.cursor; // resume from here after a reconnection
    appendMessage(m);
  } else if (method === 'context.end') {
    room.sub = null;
    showError('the room stopped streaming: ' + params.error.message);
  }
}

// ---------------------------------------------------------------------------
// Rooms

async function refreshRooms() {
  const res = await state.rpc.call('context.list');
  state.rooms = new Map(res.contexts.map((c) => [c.id, c]));
  renderRooms();
}

// openRoom shows room id: it subscribes from the room's cursor (the last
// HISTORY messages the first time), so history and live messages come as
// one stream with no gap and no duplicate. A room that is streaming, or
// about to, is left as it is: a second subscription would only take one
// more of the connection's few.
async function openRoom(id) {
  const rpc = state.rpc;
  let room = state.room;
  if (room && room.id === id && (room.sub || room.opening)) return;
  if (room && room.sub && room.id !== id) {
    const old = room.sub;
    room.sub = null;
    await rpc.call('context.unsubscribe', { subscription: old }).catch(() => {});
  }
  if (!room || room.id !== id) {
    room = state.room = { id, sub: null, cursor: 0, opening: false };
    $('messages').replaceChildren();
    localStorage.setItem(ROOM_KEY, id);
  }
  renderRooms();
  renderHeader();
  const params = { id, since: room.cursor };
  if (room.cursor === 0) params.last = HISTORY;
  room.opening = true;
  let res;
  try {
    res = await rpc.call('context.subscribe', params);
  } finally {
    room.opening = false;
  }
  if (state.room === room) {
    room.sub = res.subscription;
    enableCompose(true);
  } else {
    rpc.call('context.unsubscribe', { subscription: res.subscription }).catch(() => {});
  }
}

async function joinRoom(id) {
  const c = await state.rpc.call('context.join', { id });
  await refreshRooms();
  await openRoom(c.id);
}

async function createRoom(name) {
  const c = await state.rpc.call('context.create', { name });
  await refreshRooms();
  await openRoom(c.id);
}

async function send(text) {
  // The message shows up through the subscription, like everyone else's:
  // once the node stored it, with its cursor.
  await state.rpc.call('context.publish', { id: state.room.id, text });
}

// ---------------------------------------------------------------------------
// Rendering (textContent only)

function el(tag, className, text) {
  const e = document.createElement(tag);
  if (className) e.className = className;
  if (text !== undefined) e.textContent = text;
  return e;
}

// shortID is the tail of an ID, as the CLI prints it.
function shortID(id) {
  return id.slice(-8);
}

function roomName(c) {
  return c.name || 'room ' + shortID(c.id);
}

function renderRooms() {
  const list = $('rooms');
  list.replaceChildren();
  for (const c of state.rooms.values()) {
    const li = el('li');
    li.dataset.id = c.id;
    li.title = c.id;
    if (state.room && state.room.id === c.id) li.classList.add('active');
    li.append(el('span', 'name', roomName(c)), el('span', 'short', shortID(c.id)));
    li.addEventListener('click', () => guard(openRoom(c.id)));
    list.append(li);
  }
}

function renderHeader() {
  const c = state.rooms.get(state.room.id);
  $('room-name').textContent = c ? roomName(c) : 'room ' + shortID(state.room.id);
  $('room-id').textContent = state.room.id;
}

function appendMessage(m) {
  const list = $('messages');
  const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
  const li = el('li', m.author === state.me ? 'msg mine' : 'msg');
  li.dataset.cursor = m.cursor;
  const when = new Date(m.timestamp);
  const author = el('span', 'author', shortID(m.author));
  author.title = m.author;
  const today = when.toDateString() === new Date().toDateString();
  const time = el('time', 'time', today ? when.toLocaleTimeString() : when.toLocaleString());
  time.dateTime = when.toISOString();
  const meta = el('div', 'meta');
  meta.append(author, time);
  const text = m.text !== undefined
    ? el('div', 'text', m.text)
    : el('div', 'text binary', `(${atob(m.body || '').length} bytes, not text)`);
  li.append(meta, text);
  list.append(li);
  if (atBottom) list.scrollTop = list.scrollHeight;
}

function enableCompose(on) {
  $('compose-text').disabled = !on;
  $('send-btn').disabled = !on;
}

function setStatus(s) {
  $('status').textContent = s;
}

let errorTimer;
function showError(msg) {
  const e = $('error');
  e.textContent = msg;
  e.hidden = false;
  clearTimeout(errorTimer);
  errorTimer = setTimeout(() => { e.hidden = true; }, 8000);
}

// guard reports a failed action instead of leaving an unhandled rejection.
function guard(promise) {
  promise.catch((err) => showError(err.message));
}

// ---------------------------------------------------------------------------
// Wiring

function onSubmit(formID, inputID, action) {
  $(formID).addEventListener('submit', (ev) => {
    ev.preventDefault();
    const input = $(inputID);
    const value = input.value.trim();
    if (!value || !state.rpc) return;
    input.disabled = true;
    action(value)
      .then(() => { input.value = ''; })
      .catch((err) => showError(err.message))
      .finally(() => { input.disabled = false; input.focus(); });
  });
}

async function main() {
  onSubmit('join-form', 'join-id', joinRoom);
  onSubmit('create-form', 'create-name', createRoom);
  onSubmit('compose', 'compose-text', send);
  state.token = await login();
  if (!state.token) return showLogin();
  await connect();
  // Names of joined rooms arrive with their history: refresh now and then.
  setInterval(() => {
    if (state.rpc) guard(refreshRooms().then(() => state.room && renderHeader()));
  }, 10000);
}

guard(main());
