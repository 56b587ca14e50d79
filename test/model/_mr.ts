import fc from 'fast-check';
import { applyModel, applyReal, makeReal, opArb, type Op } from './commands.js';
import { checkCommand } from './checks.js';
import { Model } from './model.js';
const seqs: Op[][] = fc.sample(fc.array(opArb(), { minLength: 10, maxLength: 50 }), { numRuns: 400, seed: 42 });
for (const withModel of [true]) {
const t0 = process.cpuUsage();
let n = 0;
for (let k = 0; k < 8; k++) for (const seq of seqs) { const e = makeReal(1); const m = withModel ? new Model() : undefined; for (const op of seq) { if (m) { const pb = e.ctl.procInfo(); const exp = applyModel(m, op); const r = applyReal(e, op); checkCommand(m, e, op, r, exp, pb); } else applyReal(e, op); n++; } }
const u = process.cpuUsage(t0);
console.log(withModel ? 'model runner' : 'emulator', n, 'cmds', n / ((u.user + u.system) / 1e6), 'cmds/cpu-s');
}
