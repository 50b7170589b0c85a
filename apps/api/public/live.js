// The live page of the demo api: starts a build or a report, follows its events with EventSource
// (which resumes with Last-Event-ID on its own, on whichever instance the balancer picks), shows
// its state and cancels it. The bearer token never goes into a URL: API calls send it as a
// header, and the event stream is opened with a short-lived stream ticket for that one job.
(() => {
  'use strict';
  const $ = (id) => document.getElementById(id);
  const TERMINAL = ['completed', 'failed', 'cancelled'];
  const TYPES = ['started', 'step', 'token', 'progress', 'log', 'gap', 'completed', 'failed', 'cancelled', 'message'];

  // The token comes from #token=... (never sent to a server) or ?token=...; it is then kept for
  // this tab only and removed from the address bar.
  const params = new URLSearchParams(location.hash.slice(1) || location.search);
  const given = params.get('token');
  if (given) sessionStorage.setItem('token', given);
  if (given || location.search) history.replaceState(null, '', location.pathname);
  $('token').value = sessionStorage.getItem('token') || '';
  $('token').addEventListener('change', () => sessionStorage.setItem('token', $('token').value));

  let job = null; // { kind, id, source, done }
  let stateTimer = null;

  const headers = () => {
    const token = $('token').value.trim();
    return token ? { Authorization: `Bearer ${token}` } : {};
  };
  const say = (text) => ($('message').textContent = text);

  async function api(method, path, body) {
    const init = { method, headers: { ...headers(), ...(body ? { 'Content-Type': 'application/json' } : {}) } };
    if (body) init.body = JSON.stringify(body);
    const response = await fetch(path, init);
    const json = response.status === 204 ? null : await response.json().catch(() => null);
    if (!response.ok) throw new Error((json && json.message) || `${method} ${path}: HTTP ${response.status}`);
    return json;
  }

  $('kind').addEventListener('change', () => {
    for (const part of document.querySelectorAll('[data-kind]')) part.hidden = part.dataset.kind !== $('kind').value;
  });

  $('start').addEventListener('submit', async (submit) => {
    submit.preventDefault();
    const kind = $('kind').value;
    const number = (id) => Number($(id).value);
    const body =
      kind === 'builds'
        ? { steps: number('steps'), stepMs: number('stepMs'), tokensPerStep: number('tokensPerStep') }
        : { pages: number('pages'), pageMs: number('pageMs') };
    stop();
    try {
      const { jobId } = await api('POST', `/${kind}`, body);
      await start(kind, jobId);
    } catch (error) {
      say(error.message);
    }
  });

  $('cancel').addEventListener('click', async () => {
    if (!job) return;
    try {
      await api('POST', `/${job.kind}/${encodeURIComponent(job.id)}/cancel`);
      say('Cancel sent');
    } catch (error) {
      say(error.message);
    }
  });

  function stop() {
    if (job && job.source) job.source.close();
    clearInterval(stateTimer);
    job = null;
  }

  async function start(kind, id) {
    stop();
    job = { kind, id, source: null, done: false, lastId: null };
    $('events').replaceChildren();
    $('event-count').textContent = '0';
    $('reconnects').textContent = '0';
    $('job-id').textContent = id;
    $('job-id').classList.remove('muted');
    $('cancel').disabled = false;
    say('');
    await refreshState();
    stateTimer = setInterval(refreshState, 1000);
    await openStream(job);
  }

  async function openStream(current) {
    const query = new URLSearchParams();
    if ($('token').value.trim()) {
      const { ticket } = await api('POST', `/${current.kind}/${encodeURIComponent(current.id)}/ticket`);
      query.set('ticket', ticket);
    }
    // A new EventSource sends no Last-Event-ID: it resumes with ?after= instead.
    if (current.lastId) query.set('after', current.lastId);
    if (job !== current) return;
    const url = `/${current.kind}/${encodeURIComponent(current.id)}/events${query.size ? `?${query}` : ''}`;
    const source = new EventSource(url);
    current.source = source;
    let opened = 0;
    source.onopen = () => {
      $('connection').textContent = 'open';
      if (opened++) $('reconnects').textContent = String(opened - 1);
    };
    source.onerror = () => {
      // Open again: the browser reconnects by itself with Last-Event-ID. Closed: it gave up
      // (204 at the terminal event, or a refusal such as a ticket that expired meanwhile): unless
      // the job is over, start a new stream with a new ticket from the last event seen.
      if (source.readyState !== EventSource.CLOSED) {
        $('connection').textContent = 'reconnecting';
        return;
      }
      $('connection').textContent = 'closed';
      if (job !== current || current.done) return;
      setTimeout(() => {
        if (job !== current || current.done) return;
        $('reconnects').textContent = String(Number($('reconnects').textContent) + 1);
        openStream(current).catch((error) => say(error.message));
      }, 1000);
    };
    for (const type of TYPES) source.addEventListener(type, (event) => show(current, event));
  }

  function show(current, event) {
    if (job !== current) return;
    current.lastId = event.lastEventId;
    const item = document.createElement('li');
    item.dataset.id = event.lastEventId;
    item.dataset.type = event.type;
    item.textContent = `${event.type} ${event.data}`;
    $('events').append(item);
    item.scrollIntoView({ block: 'nearest' });
    $('event-count').textContent = String($('events').children.length);
    if (TERMINAL.includes(event.type)) {
      current.done = true;
      current.source.close();
      $('connection').textContent = 'closed';
      $('cancel').disabled = true;
      void refreshState();
    }
  }

  async function refreshState() {
    const current = job;
    if (!current) return;
    try {
      const info = await api('GET', `/${current.kind}/${encodeURIComponent(current.id)}`);
      if (job !== current) return;
      $('job-state').textContent = info.state;
      $('job-attempt').textContent = String(info.attempt);
      if (['completed', 'failed', 'cancelled'].includes(info.state) && current.done) clearInterval(stateTimer);
    } catch (error) {
      say(error.message);
    }
  }
})();
