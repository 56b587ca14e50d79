// SPDX-License-Identifier: GPL-2.0-only
// Non-blocking reader of /dev/kmsg: returns the kernel log records written
// since the last call, formatted like `dmesg` ("[   12.345678] message").
import { closeSync, constants, openSync, readSync, writeFileSync } from 'node:fs';

export class KmsgReader {
  private fd: number;
  private readonly buf = Buffer.alloc(16384);

  constructor() {
    this.fd = openSync('/dev/kmsg', constants.O_RDONLY | constants.O_NONBLOCK);
  }

  /** Drain all records available now. */
  read(): string[] {
    const out: string[] = [];
    for (;;) {
      let n: number;
      try {
        n = readSync(this.fd, this.buf, 0, this.buf.length, null);
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if (code === 'EAGAIN') break;
        if (code === 'EPIPE') continue; // records were overwritten; continue with the next
        throw e;
      }
      if (n <= 0) break;
      const rec = this.buf.toString('utf8', 0, n);
      const semi = rec.indexOf(';');
      const head = rec.slice(0, semi).split(',');
      const usec = Number(head[2] ?? 0);
      const body = rec.slice(semi + 1).split('\n');
      const msg = (body[0] ?? '').replace(/\\x([0-9a-f]{2})/g, (_, h: string) => String.fromCharCode(parseInt(h, 16)));
      const ts = `[${(usec / 1e6).toFixed(6).padStart(12)}]`;
      out.push(`${ts} ${msg}`);
    }
    return out;
  }

  close(): void {
    closeSync(this.fd);
  }
}

/** Write a marker line into the kernel log (shows up in dmesg). */
export function kmsgMark(text: string): void {
  try {
    writeFileSync('/dev/kmsg', `<6>dbd-vm: ${text}\n`); // KERN_INFO: in dmesg, not on the console
  } catch {
    /* the marker is an aid, not a requirement */
  }
}
