// BullMQ's driver for bench/_claims_peers.py: the same modes and JSON lines as _peer_common.py
// says for the Python peers. node bullmq_run.mjs MODE URL [--tasks N --agents K --lease S
// --role victim|rescuer --hold S --job ID]; bullmq is loaded from $CLAIMROOM_PEER_ENV (setup).
import { createRequire } from 'node:module';
import readline from 'node:readline';

const require = createRequire(`${process.env.CLAIMROOM_PEER_ENV}/package.json`);
const { Queue, Worker, Job } = require('bullmq');
const version = require('bullmq/package.json').version;

const [mode, url, ...rest] = process.argv.slice(2);
const opt = { tasks: 20000, agents: 10, lease: 2, role: 'rescuer', hold: 0, job: '' };
for (let i = 0; i < rest.length; i += 2) opt[rest[i].replace(/^--/, '')] = rest[i + 1];
const u = new URL(url);
// maxRetriesPerRequest null: what BullMQ requires of a Worker's connection.
const connection = { host: u.hostname, port: Number(u.port), maxRetriesPerRequest: null };
const emit = (o) => process.stdout.write(JSON.stringify(o) + '\n');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
// The recovery runs: the lock (BullMQ's lease) and the stalled-job check both at --lease s
// (defaults 30 s each); a stalled job goes back to wait once (maxStalledCount 1, the default).
const leaseMs = Math.round(Number(opt.lease) * 1000);
const recovery = { lockDuration: leaseMs, stalledInterval: leaseMs };

async function throughput() {
  const n = Number(opt.tasks);
  const queue = new Queue('bench', { connection });
  for (let i = 0; i < n; i += 1000) {
    const size = Math.min(1000, n - i);
    await queue.addBulk(Array.from({ length: size }, () => ({ name: 'noop', data: {} })));
  }
  emit({ event: 'ready' });
  await new Promise((r) => readline.createInterface({ input: process.stdin }).once('line', r));
  let t0 = null, cpu0 = null, done = 0;
  const finished = new Promise((resolve) => {
    // One Worker, --agents jobs at a time, BullMQ's defaults otherwise.
    const worker = new Worker('bench', async () => {
      if (t0 === null) { t0 = performance.now(); cpu0 = process.cpuUsage(); }
      return null;
    }, { connection, concurrency: Number(opt.agents) });
    worker.on('completed', () => { if (++done === n) resolve(worker); });
  });
  const worker = await finished;
  const seconds = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  emit({ peer: 'bullmq', version, tasks: n, seconds, cycles_per_s: n / seconds,
    worker_cpu_s: (cpu.user + cpu.system) / 1e6,
    note: `one Worker, concurrency ${opt.agents}; node ${process.versions.node}` });
  await worker.close();
  await queue.close();
}

async function enqueue() {
  const queue = new Queue('rec', { connection });
  const job = await queue.add('held', {}, { attempts: 3 });
  emit({ job: job.id });
  await queue.close();
}

async function work() {
  const role = opt.role;
  const worker = new Worker('rec', async (job) => {
    emit({ event: 'started', job: job.id, role, t: Date.now() / 1000 });
    await sleep(Number(opt.hold) * 1000);
    return role === 'victim' ? 'zombie' : 'fresh';
  }, { connection, concurrency: 1, ...recovery });
  worker.on('completed', (job) => emit({ event: 'completed', job: job.id, role }));
  worker.on('failed', (job, err) => emit({ event: 'error', job: job?.id, role, error: String(err) }));
  worker.on('error', (err) => emit({ event: 'error', role, error: String(err) }));
  await worker.waitUntilReady();
  emit({ event: 'ready', role });
}

async function inspect() {
  const queue = new Queue('rec', { connection });
  const job = await Job.fromId(queue, opt.job);
  emit({ state: job ? await job.getState() : 'missing', result: job?.returnvalue ?? null,
    completions: null, attempts: job?.attemptsMade ?? null });
  await queue.close();
}

await { throughput, enqueue, worker: work, inspect }[mode]();
if (mode !== 'worker') process.exit(0);
