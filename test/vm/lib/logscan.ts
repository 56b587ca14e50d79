// SPDX-License-Identifier: GPL-2.0-only
// Kernel-log scanning: find oopses, BUGs, WARNINGs, "scheduling while
// atomic", hung tasks, lockups and panics in a guest's dmesg or serial log,
// and cut a readable excerpt around each hit.

export interface KernelProblem {
  kind: string;
  line: string;
  lineNo: number;
  excerpt: string;
}

// Order matters: the first pattern that matches a line names its kind.
const PATTERNS: ReadonlyArray<readonly [string, RegExp]> = [
  ['panic', /Kernel panic - not syncing/],
  ['oops', /\bOops:|general protection fault|BUG: unable to handle|Unable to handle kernel/],
  ['BUG', /\bBUG:|kernel BUG at|\bBUG\b.*\bbad page\b/],
  ['WARNING', /\bWARNING:|------------\[ cut here \]------------/],
  ['scheduling while atomic', /scheduling while atomic|sleeping function called from invalid context/],
  ['hung task', /blocked for more than \d+ seconds|hung_task/],
  ['lockup', /soft lockup|hard LOCKUP|rcu_(sched|preempt) (self-)?detected (stall|.*stalls)|rcu: INFO: .* stall/i],
  ['memory corruption', /list_(add|del) corruption|refcount_t: |KFENCE: |UBSAN: |slab-out-of-bounds|use-after-free/],
  // a lost write on a real disk (the snapshot device's own EIO is expected in some tests)
  ['I/O error', /I\/O error, dev (?!datto)|Buffer I\/O error on dev(ice)? (?!datto)|EXT4-fs error|XFS \(.*\): (Corruption|metadata I\/O error)/],
  ['call trace', /^\s*(\[\s*[\d.]+\]\s*)?Call Trace:/],
];

/** Strip a dmesg/kmsg line to its message for matching. */
function classify(line: string): string | null {
  // the kernel echoes its command line (which may say oops=panic, panic_on_warn=1)
  if (/\b(Kernel c|C)ommand line: /.test(line)) return null;
  // a debug kernel's boot line about its RCU debugging, not a report
  if (/RCU callback double-\/use-after-free debug is enabled/.test(line)) return null;
  for (const [kind, re] of PATTERNS) if (re.test(line)) return kind;
  return null;
}

/**
 * The marker a case writes into the kernel log (VmContext.allowKernelLog)
 * before it injects a fault: problems of that kind whose line matches the
 * pattern are expected until the case's end marker.
 */
export function allowMarker(kind: string, pattern: RegExp): string {
  return `allow kernel log [${kind}] ${pattern.source}`;
}
const ALLOW_RE = /dbd-vm: allow kernel log \[([^\]]+)\] (.*)$/;
const CASE_END_RE = /dbd-vm: case .* end$/;

/**
 * Scan a kernel log. A "Call Trace" that belongs to an already reported
 * problem (within the excerpt window) is not reported twice. Problems a
 * case declared with an allow marker are skipped until that case ends.
 */
export function scanKernelLog(text: string, context = 6, after = 28): KernelProblem[] {
  const lines = text.split('\n');
  const out: KernelProblem[] = [];
  let coveredUntil = -1;
  let allowed: Array<{ kind: string; re: RegExp }> = [];
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i] ?? '';
    const a = ALLOW_RE.exec(line);
    if (a) {
      try {
        allowed.push({ kind: a[1] ?? '', re: new RegExp(a[2] ?? '') });
      } catch {
        // a malformed pattern allows nothing
      }
      continue;
    }
    if (CASE_END_RE.test(line)) allowed = [];
    const kind = classify(line);
    if (!kind) continue;
    if (allowed.some((x) => x.kind === kind && x.re.test(line))) continue;
    if (i <= coveredUntil) continue;
    const from = Math.max(0, i - context);
    const to = Math.min(lines.length, i + after);
    coveredUntil = to - 1;
    out.push({ kind, line: line.trim(), lineNo: i + 1, excerpt: lines.slice(from, to).join('\n') });
  }
  return out;
}

export function formatProblems(problems: readonly KernelProblem[], max = 3): string {
  const shown = problems.slice(0, max).map(
    (p) => `--- kernel ${p.kind} (log line ${p.lineNo}): ${p.line}\n${p.excerpt}`,
  );
  if (problems.length > max) shown.push(`... and ${problems.length - max} more kernel problem(s)`);
  return shown.join('\n');
}
