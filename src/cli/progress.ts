// SPDX-License-Identifier: GPL-2.0-only
/** A one-line progress bar for a terminal: bytes, rate and ETA. */
import { formatBytes } from './info-format.js';

export interface ProgressState {
  doneBytes: number;
  totalBytes: number;
}

function clock(seconds: number): string {
  if (!Number.isFinite(seconds)) return '--:--';
  const s = Math.max(0, Math.round(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, '0');
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${ss}` : `${m}:${ss}`;
}

/** e.g. '[#########-----------]  45%  9.0 MiB / 20.0 MiB  3.0 MiB/s  ETA 0:04' */
export function renderProgress(p: ProgressState, elapsedSeconds: number, barWidth = 24): string {
  const frac = p.totalBytes > 0 ? Math.min(1, p.doneBytes / p.totalBytes) : 1;
  const filled = Math.round(frac * barWidth);
  const rate = elapsedSeconds > 0 ? p.doneBytes / elapsedSeconds : 0;
  const eta = rate > 0 ? (p.totalBytes - p.doneBytes) / rate : Infinity;
  const pct = `${Math.floor(frac * 100)}%`.padStart(4);
  return (
    `[${'#'.repeat(filled)}${'-'.repeat(barWidth - filled)}] ${pct}  ` +
    `${formatBytes(p.doneBytes)} / ${formatBytes(p.totalBytes)}  ${formatBytes(Math.round(rate))}/s  ETA ${clock(eta)}`
  );
}

/** Redraws at most every `intervalMs` on a TTY stream; `finish()` ends the line. */
export class ProgressBar {
  private last = 0;
  private readonly start = performance.now();
  private drawn = false;

  constructor(
    private readonly write: (s: string) => void,
    private readonly intervalMs = 100,
  ) {}

  update(p: ProgressState, force = false): void {
    const now = performance.now();
    if (!force && now - this.last < this.intervalMs) return;
    this.last = now;
    this.drawn = true;
    this.write(`\r${renderProgress(p, (now - this.start) / 1000)}\x1b[K`);
  }

  finish(p: ProgressState): void {
    this.update(p, true);
    if (this.drawn) this.write('\n');
  }
}
