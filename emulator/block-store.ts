// SPDX-License-Identifier: GPL-2.0-only
/**
 * A sparse byte store in 4 KiB pages (a Map of blocks, never one giant
 * buffer). Unwritten bytes read as zero. Offsets are absolute disk offsets,
 * so a partition that does not start on a 4 KiB boundary straddles pages.
 */
const PAGE = 4096;
const ZERO = Buffer.alloc(PAGE);

export class BlockStore {
  private readonly pages = new Map<number, Uint8Array>();

  /** Number of resident pages (for tests and memory figures). */
  get residentPages(): number {
    return this.pages.size;
  }

  read(offset: number, out: Uint8Array): void {
    let done = 0;
    while (done < out.length) {
      const pos = offset + done;
      const pg = Math.floor(pos / PAGE);
      const inPg = pos - pg * PAGE;
      const n = Math.min(PAGE - inPg, out.length - done);
      const page = this.pages.get(pg);
      if (page) out.set(page.subarray(inPg, inPg + n), done);
      else out.fill(0, done, done + n);
      done += n;
    }
  }

  write(offset: number, data: Uint8Array): void {
    let done = 0;
    while (done < data.length) {
      const pos = offset + done;
      const pg = Math.floor(pos / PAGE);
      const inPg = pos - pg * PAGE;
      const n = Math.min(PAGE - inPg, data.length - done);
      let page = this.pages.get(pg);
      if (!page) {
        page = new Uint8Array(PAGE);
        this.pages.set(pg, page);
      }
      page.set(data.subarray(done, done + n), inPg);
      done += n;
    }
  }

  /**
   * Compare `expected` with the bytes at `offset`; returns the first
   * differing index or -1. Fast path for whole pages (tests, verification).
   */
  compare(offset: number, expected: Uint8Array): number {
    let done = 0;
    while (done < expected.length) {
      const pos = offset + done;
      const pg = Math.floor(pos / PAGE);
      const inPg = pos - pg * PAGE;
      const n = Math.min(PAGE - inPg, expected.length - done);
      const page = this.pages.get(pg);
      const want = Buffer.from(expected.buffer, expected.byteOffset + done, n);
      const have = page ? Buffer.from(page.buffer, page.byteOffset + inPg, n) : ZERO.subarray(0, n);
      if (!want.equals(have)) {
        for (let i = 0; i < n; i++) if (want[i] !== have[i]) return done + i;
      }
      done += n;
    }
    return -1;
  }

  /** Zero a range; whole pages are dropped (sparse again). */
  zero(offset: number, length: number): void {
    if (length <= 0) return;
    const firstPg = Math.floor(offset / PAGE);
    const lastPg = Math.floor((offset + length - 1) / PAGE);
    if (lastPg - firstPg + 1 > 2 * this.pages.size) {
      // huge range over a sparse store: visit resident pages only
      for (const pg of [...this.pages.keys()]) {
        if (pg >= firstPg && pg <= lastPg) this.zeroInPage(pg, offset, length);
      }
      return;
    }
    for (let pg = firstPg; pg <= lastPg; pg++) this.zeroInPage(pg, offset, length);
  }

  private zeroInPage(pg: number, offset: number, length: number): void {
    const start = Math.max(offset, pg * PAGE) - pg * PAGE;
    const end = Math.min(offset + length, (pg + 1) * PAGE) - pg * PAGE;
    if (start === 0 && end === PAGE) this.pages.delete(pg);
    else this.pages.get(pg)?.fill(0, start, end);
  }
}
