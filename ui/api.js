// The console's HTTP client: the session cookie authenticates, every
// change carries X-CSRF-Token, and GETs revalidate with If-None-Match.
// The admin token is only held for the sign-in request, never stored.

let csrf = null;
const cache = new Map(); // path -> {etag, data}
const CACHE_MAX = 200;
let unauthorized = () => {};

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export function onUnauthorized(callback) { unauthorized = callback; }

async function parse(res) {
  const text = await res.text();
  if (!text) return null;
  try { return JSON.parse(text); } catch { return text; }
}

function failure(res, data) {
  const e = data && typeof data === 'object' && data.error;
  if (e) return new ApiError(res.status, e.code, e.message);
  return new ApiError(res.status, 'HTTP ' + res.status, res.statusText || 'request failed');
}

// request(method, path, body) -> {data, changed}: changed is false when
// the server answered 304 for the ETag we hold.
export async function request(method, path, body) {
  const headers = { Accept: 'application/json' };
  if (method !== 'GET' && method !== 'HEAD' && csrf) headers['X-CSRF-Token'] = csrf;
  let payload;
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    payload = JSON.stringify(body);
  }
  const held = method === 'GET' ? cache.get(path) : undefined;
  if (held) headers['If-None-Match'] = held.etag;
  const res = await fetch(path, { method, headers, body: payload, credentials: 'same-origin', cache: 'no-store' });
  if (res.status === 304 && held) return { data: held.data, changed: false };
  const data = await parse(res);
  if (!res.ok) {
    if (res.status === 401 && path !== '/v1/session') { csrf = null; unauthorized(); }
    throw failure(res, data);
  }
  const etag = res.headers.get('ETag');
  if (method === 'GET' && etag) {
    if (cache.size >= CACHE_MAX) cache.delete(cache.keys().next().value);
    cache.set(path, { etag, data });
  }
  return { data, changed: true };
}

export const get = async (path) => (await request('GET', path)).data;
export const post = async (path, body) => (await request('POST', path, body)).data;
export const put = async (path, body) => (await request('PUT', path, body)).data;
export const del = async (path) => (await request('DELETE', path)).data;

// A query string. encodeURIComponent, not URLSearchParams: the latter
// writes a space as '+', which the server takes literally ("key in (a,b)").
export function q(params) {
  const parts = [];
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== '') parts.push(encodeURIComponent(k) + '=' + encodeURIComponent(String(v)));
  }
  return parts.length ? '?' + parts.join('&') : '';
}

export const seg = (s) => encodeURIComponent(String(s));

// Sessions (docs/api.md, "Sessions").
export async function signIn(token) {
  const data = await post('/v1/session', { token });
  csrf = data.csrf;
  return data;
}

export async function resume() {
  try {
    const data = await get('/v1/session');
    csrf = data.csrf;
    return data;
  } catch (err) {
    if (err.status === 401) return null;
    throw err;
  }
}

export async function signOut() {
  try { await del('/v1/session'); } finally { csrf = null; cache.clear(); }
}

export const signedIn = () => csrf !== null;

// An upload with real progress: XMLHttpRequest reports the bytes sent.
export function upload(path, file, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open('PUT', path);
    if (csrf) xhr.setRequestHeader('X-CSRF-Token', csrf);
    xhr.setRequestHeader('Content-Type', 'application/octet-stream');
    xhr.upload.addEventListener('progress', (e) => onProgress(e.loaded, e.lengthComputable ? e.total : file.size));
    xhr.addEventListener('load', () => {
      let data = null;
      try { data = JSON.parse(xhr.responseText); } catch { data = null; }
      if (xhr.status >= 200 && xhr.status < 300) resolve(data);
      else {
        const e = data && data.error;
        reject(new ApiError(xhr.status, e ? e.code : 'HTTP ' + xhr.status, e ? e.message : xhr.statusText || 'upload failed'));
      }
    });
    xhr.addEventListener('error', () => reject(new ApiError(0, 'NET', 'the connection to the server failed')));
    xhr.addEventListener('abort', () => reject(new ApiError(0, 'ABORTED', 'upload cancelled')));
    xhr.send(file);
  });
}
