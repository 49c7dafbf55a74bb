// The play page: draws what the server says. Chess rules, move probabilities and win
// probabilities all come from the server (python-chess and the engine's policy).
import { Chessground } from './vendor/chessground/chessground.min.js';

const $ = (id) => document.getElementById(id);
const ENGINE_PAUSE_MS = 350; // between engine moves when engines play each other, to watch

let state = null; // the server's last answer for this tab's game
let info = { stockfish: false };
let review = null; // rows of the last review, while the line is unchanged
let orientation = 'white';
let pendingPromotion = null;
let analysisTicket = 0;
let replying = false;
let failedAt = ''; // the game and ply where an engine's move failed: not retried by itself

const board = Chessground($('board'), {
  movable: { free: false, showDests: true, events: { after: onBoardMove } },
  premovable: { enabled: false },
  highlight: { lastMove: true, check: true },
  animation: { duration: 150 },
});

// -- talking to the server ------------------------------------------------------------------

async function api(route, body) {
  const options = body === undefined ? {} : {
    method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body),
  };
  let response;
  try {
    response = await fetch(`/api/${route}`, options);
  } catch (err) {
    throw new Error('the server does not answer: is `transcend play` still running?');
  }
  let data;
  try {
    data = await response.json();
  } catch (err) {
    throw new Error(`the server answered ${response.status} without JSON`);
  }
  if (!response.ok) throw new Error(data.error || `error ${response.status}`);
  return data;
}

function showError(err) {
  $('message').textContent = err.message || String(err);
  $('message').hidden = false;
}

function clearError() {
  $('message').hidden = true;
}

async function call(route, body) {
  try {
    const data = await api(route, body);
    clearError();
    return data;
  } catch (err) {
    showError(err);
    if (state) draw(); // put a refused move's piece back
    return null;
  }
}

function settingsBody() {
  const [white, black] = $('players').value.split(',');
  return {
    white, black, temperature: $('temperature').value, mode: $('mode').value,
    seed: $('seed').value || 0, level: $('level').value,
  };
}

async function newGame(extra = {}) {
  const data = await call('new', { ...settingsBody(), ...extra });
  if (data) accept(data, true);
  return data;
}

// -- drawing -------------------------------------------------------------------------------

function accept(data, fresh = false) {
  const lineChanged = !state || fresh || JSON.stringify(state.line) !== JSON.stringify(data.line);
  state = data;
  sessionStorage.setItem('transcend-game', data.id);
  if (lineChanged) review = null;
  draw();
  // When the model is about to answer a move, the panel waits for its move (which shows the
  // same position with the move played): one model call instead of two.
  const lastBy = state.ply > 0 ? state.played[state.ply - 1].by : '';
  if (!(engineDue() && state.to_move === 'model' && lastBy !== 'model')) refreshAnalysis();
  scheduleEngine();
}

function dests() {
  const map = new Map();
  for (const uci of state.legal) {
    const from = uci.slice(0, 2);
    const to = uci.slice(2, 4);
    if (!map.has(from)) map.set(from, []);
    if (!map.get(from).includes(to)) map.get(from).push(to);
  }
  return map;
}

function draw() {
  const last = state.last_move;
  const humanMoves = state.to_move === 'human';
  board.set({
    fen: state.fen,
    orientation,
    turnColor: state.turn,
    lastMove: last ? [last.slice(0, 2), last.slice(2, 4)] : undefined,
    check: state.check ? state.turn : false,
    movable: { color: humanMoves ? state.turn : undefined, dests: humanMoves ? dests() : new Map() },
  });
  $('download').href = `/api/pgn?id=${state.id}`;
  $('takeback').disabled = state.ply === 0;
  $('back').disabled = $('first').disabled = state.ply === 0;
  $('forward').disabled = $('last').disabled = state.ply === state.line.length;
  const s = state.settings;
  const values = { players: `${s.white},${s.black}`, temperature: s.temperature, mode: s.mode,
    seed: s.seed, level: s.level };
  for (const [id, value] of Object.entries(values)) {
    // Not the field being edited: engines playing each other redraw several times a second.
    if (document.activeElement !== $(id)) $(id).value = value;
  }
  $('model-name').textContent = `model ${state.model}`;
  drawMoves();
  drawReview();
  let status = '';
  if (state.ply < state.line.length) {
    status = `move ${state.ply} of ${state.line.length}: step with the arrows or play from here`;
  } else if (state.result !== '*') status = `${state.result} (${state.termination})`;
  else if (state.to_move === 'model' || state.to_move === 'stockfish') {
    status = `${state.to_move} to move`;
  } else status = `${state.turn} to move`;
  $('status').textContent = status;
  $('result').textContent = state.result !== '*' ? `${state.result}, ${state.termination}` : '';
}

function drawMoves() {
  const list = $('moves');
  list.replaceChildren();
  const first = state.first_ply;
  let li = null;
  state.line.forEach((move, i) => {
    const ply = first + i;
    if (ply % 2 === 0 || i === 0) {
      li = document.createElement('li');
      const num = document.createElement('span');
      num.className = 'num';
      num.textContent = `${Math.floor(ply / 2) + 1}.`;
      li.append(num);
      if (ply % 2 === 1) li.append(document.createElement('span')); // black starts: empty cell
      list.append(li);
    }
    const span = document.createElement('span');
    span.className = 'mv';
    if (state.played[i].by === 'model') span.classList.add('model');
    if (i + 1 === state.ply) span.classList.add('current');
    span.textContent = move.san;
    span.dataset.ply = i + 1;
    span.title = state.played[i].by === 'model'
      ? `the model, p = ${(state.played[i].p * 100).toFixed(1)}%` : state.played[i].by;
    span.addEventListener('click', () => goto(i + 1));
    li.append(span);
  });
  const current = list.querySelector('.current');
  if (current) current.scrollIntoView({ block: 'nearest' });
}

function percent(p) {
  return p >= 0.995 ? `${(p * 100).toFixed(0)}%` : `${(p * 100).toFixed(1)}%`;
}

function barCell(p, kind) {
  const td = document.createElement('td');
  td.className = 'bar';
  td.innerHTML = `<div class="bar-track"><div class="bar-fill ${kind}"></div>` +
    '<span class="bar-text"></span></div>';
  td.querySelector('.bar-fill').style.width = `${(p * 100).toFixed(2)}%`;
  td.querySelector('.bar-text').textContent = percent(p);
  return td;
}

// The position whose distribution the panel shows: before the last move when an engine played
// it (so its draw is visible), else the position on the board.
function analysisPly() {
  if (state.ply > 0 && state.played[state.ply - 1].by === 'model' &&
      state.ply === state.line.length) return state.ply - 1;
  return state.ply;
}

async function refreshAnalysis() {
  const ticket = ++analysisTicket;
  const ply = analysisPly();
  let data;
  try {
    data = await api('analysis', { id: state.id, ply, stockfish: info.stockfish });
  } catch (err) {
    if (ticket === analysisTicket) showError(err);
    return;
  }
  if (ticket !== analysisTicket) return; // a newer position is on its way
  drawAnalysis(data);
}

function drawAnalysis(data) {
  const moveNumber = Math.floor((state.first_ply + data.ply) / 2) + 1;
  const side = (state.first_ply + data.ply) % 2 === 0 ? 'white' : 'black';
  $('prob-title').textContent = `The model's moves: move ${moveNumber}, ${side} to play`;
  $('head-t').textContent = `T = ${data.temperature} (${data.mode})`;
  $('head-win').hidden = !data.stockfish;
  const rows = $('prob-rows');
  rows.replaceChildren();
  for (const c of data.candidates) {
    const tr = document.createElement('tr');
    tr.dataset.uci = c.uci;
    if (data.played && data.played.uci === c.uci) tr.className = 'played';
    const name = document.createElement('td');
    name.textContent = c.san;
    tr.append(name, barCell(c.p1, 't1'), barCell(c.pT, 'tt'));
    if (data.stockfish) {
      const win = document.createElement('td');
      win.textContent = c.win === null ? '' : percent(c.win);
      tr.append(win);
    }
    rows.append(tr);
  }
  let note = `${data.legal} legal moves; the top ${data.candidates.length} shown.`;
  if (data.played) note += ` Played: ${data.played.san} (${data.played.by}).`;
  if (data.mode === 'paper') note += ' Paper mode: the token distribution it falls back on.';
  if (!data.stockfish && !info.stockfish) note += ' Install Stockfish for win probabilities.';
  if (data.legal === 0) note = 'No legal move: the game is over.';
  $('prob-note').textContent = note;
}

// -- review --------------------------------------------------------------------------------

async function runReview() {
  if (!state.line.length) {
    showError(new Error('no moves to review yet'));
    return;
  }
  $('review').disabled = true;
  $('review').textContent = 'Reviewing...';
  const data = await call('review', { id: state.id, stockfish: info.stockfish });
  $('review').disabled = false;
  $('review').textContent = 'Review the game';
  if (!data) return;
  review = data.rows;
  drawReview();
}

function drawReview() {
  const shown = review !== null;
  // toggleAttribute: an <svg> has no `hidden` property.
  for (const id of ['chart', 'chart-legend', 'review-table']) $(id).toggleAttribute('hidden', !shown);
  if (!shown) return;
  const rows = $('review-rows');
  rows.replaceChildren();
  for (const r of review) {
    const tr = document.createElement('tr');
    if (r.ply === state.ply) tr.className = 'current';
    const number = Math.floor((state.first_ply + r.ply) / 2) + 1;
    const dots = (state.first_ply + r.ply) % 2 === 0 ? '.' : '...';
    const cells = [`${number}${dots}`, r.san, r.by, percent(r.p1), percent(r.pT),
      `${r.best_san} ${percent(r.best_p1)}`, r.loss === null ? '' : `${(r.loss * 100).toFixed(1)}`];
    for (const text of cells) {
      const td = document.createElement('td');
      td.textContent = text;
      tr.append(td);
    }
    if (r.loss !== null && r.loss > 0.1) tr.lastChild.className = 'bad';
    // The position the move was chosen in: the panel then shows it against the model's.
    tr.addEventListener('click', () => goto(r.ply));
    rows.append(tr);
  }
  drawChart();
}

function drawChart() {
  const svg = $('chart');
  const n = review.length;
  const w = 400 / Math.max(n, 1);
  const h = 100;
  let bars = '';
  let points = '';
  review.forEach((r, i) => {
    const bh = r.p1 * h;
    bars += `<rect class="p" x="${i * w + w * 0.15}" y="${105 - bh}" width="${w * 0.7}" height="${bh}"></rect>`;
    if (r.loss !== null) points += `${i * w + w / 2},${105 - Math.max(0, r.loss) * h} `;
  });
  const x = (state.ply + 0.5) * w;
  svg.innerHTML = bars + (points ? `<polyline class="loss" points="${points}"></polyline>` : '') +
    (state.ply < n ? `<line class="cursor" x1="${x}" x2="${x}" y1="0" y2="110"></line>` : '');
}

// -- moves ---------------------------------------------------------------------------------

function onBoardMove(from, to) {
  const uci = from + to;
  if (state.legal.includes(`${uci}q`)) {
    pendingPromotion = uci;
    $('promotion').hidden = false;
    return;
  }
  sendMove(uci);
}

async function sendMove(uci) {
  const data = await call('move', { id: state.id, uci });
  if (data) accept(data);
}

function choosePromotion(piece) {
  $('promotion').hidden = true;
  const uci = pendingPromotion;
  pendingPromotion = null;
  if (piece && uci) sendMove(uci + piece);
  else draw();
}

// Whether an engine plays the next move by itself: not while paused, stepping through a game
// (ply before the end of the line), or after its last attempt here failed.
function engineDue() {
  if (!state || $('pause').checked || state.result !== '*') return false;
  if (state.to_move !== 'model' && state.to_move !== 'stockfish') return false;
  return state.ply === state.line.length && failedAt !== `${state.id}:${state.ply}`;
}

function scheduleEngine() {
  if (replying || !engineDue()) return;
  const id = state.id;
  const key = `${id}:${state.ply}`;
  const watching = state.settings.white !== 'human' && state.settings.black !== 'human';
  replying = true;
  setTimeout(async () => {
    const data = state && state.id === id ? await call('reply', { id }) : null;
    replying = false;
    if (data === null && state && state.id === id) {
      failedAt = key;
      refreshAnalysis();
    }
    if (data && state.id === id) accept(data);
    else scheduleEngine(); // another game started meanwhile: its engine may be due
  }, watching ? ENGINE_PAUSE_MS : 0);
}

async function goto(ply) {
  const data = await call('goto', { id: state.id, ply });
  if (data) accept(data);
}

// -- controls ------------------------------------------------------------------------------

async function changeSettings() {
  const data = await call('settings', { id: state.id, ...settingsBody() });
  if (data) accept(data);
}

function readPgnFile() {
  const file = $('pgn-file').files[0];
  if (!file) return;
  const reader = new FileReader();
  reader.onload = () => { $('pgn').value = reader.result; };
  reader.readAsText(file);
}

function setUp() {
  for (let level = 0; level <= 20; level++) {
    const option = document.createElement('option');
    option.value = option.textContent = level;
    $('level').append(option);
  }
  $('new-game').addEventListener('click', () => newGame());
  $('takeback').addEventListener('click', async () => {
    $('pause').checked = $('pause').checked || (state.settings.white !== 'human' &&
      state.settings.black !== 'human'); // watching: stop the engines so the take-back holds
    const data = await call('takeback', { id: state.id });
    if (data) accept(data);
  });
  $('flip').addEventListener('click', () => {
    orientation = orientation === 'white' ? 'black' : 'white';
    draw();
  });
  $('first').addEventListener('click', () => goto(0));
  $('back').addEventListener('click', () => goto(Math.max(0, state.ply - 1)));
  $('forward').addEventListener('click', () => goto(Math.min(state.line.length, state.ply + 1)));
  $('last').addEventListener('click', () => goto(state.line.length));
  document.addEventListener('keydown', (event) => {
    if (event.target.closest('input, textarea, select')) return;
    if (event.key === 'ArrowLeft') $('back').click();
    if (event.key === 'ArrowRight') $('forward').click();
  });
  $('players').addEventListener('change', () => {
    orientation = $('players').value.startsWith('model,human') ? 'black' : 'white';
    changeSettings();
  });
  for (const id of ['temperature', 'mode', 'seed', 'level']) {
    $(id).addEventListener('change', changeSettings);
  }
  $('pause').addEventListener('change', () => {
    refreshAnalysis();
    scheduleEngine();
  });
  $('set-fen').addEventListener('click', () => newGame({ fen: $('fen').value }));
  $('pgn-file').addEventListener('change', readPgnFile);
  $('load-pgn').addEventListener('click', async () => {
    // A loaded game is for stepping through and review: nobody plays until Play is changed.
    $('players').value = 'human,human';
    const data = await newGame({ pgn: $('pgn').value });
    if (data) $('load').open = false;
  });
  $('review').addEventListener('click', runReview);
  for (const button of $('promotion').querySelectorAll('button')) {
    button.addEventListener('click', () => choosePromotion(button.dataset.piece));
  }
}

async function start() {
  setUp();
  try {
    info = await api('info');
  } catch (err) {
    showError(err);
  }
  if (!info.stockfish) {
    for (const option of $('players').options) {
      if (option.value.includes('stockfish')) {
        option.disabled = true;
        option.textContent += ' (needs Stockfish)';
      }
    }
  }
  const saved = sessionStorage.getItem('transcend-game');
  if (saved) {
    try {
      const data = await api('state', { id: saved });
      orientation = data.settings.white === 'model' && data.settings.black === 'human'
        ? 'black' : 'white';
      accept(data, true);
      return;
    } catch (err) {
      // the server restarted: a new game below
    }
  }
  await newGame();
}

start();
