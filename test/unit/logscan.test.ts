// SPDX-License-Identifier: GPL-2.0-only
// The VM harness's kernel-log scanner: what makes a VM case fail.
import { describe, expect, it } from 'vitest';
import { allowMarker, scanKernelLog } from '../vm/lib/logscan.js';

const kinds = (log: string): string[] => scanKernelLog(log).map((p) => p.kind);

describe('kernel log scanner', () => {
  it('reports oopses, warnings and hung tasks', () => {
    expect(kinds('[ 1.0] BUG: unable to handle page fault for address: 0000')).toEqual(['oops']);
    expect(kinds('[ 1.0] WARNING: CPU: 0 PID: 1 at x.c:1 f+0x1/0x2')).toEqual(['WARNING']);
    expect(kinds('[ 9.0] INFO: task sync:300 blocked for more than 30 seconds.')).toEqual(['hung task']);
  });

  it('reports lost writes on real disks and filesystem errors', () => {
    expect(kinds('[ 2.0] I/O error, dev vda, sector 2048 op 0x1:(WRITE) flags 0x0 phys_seg 1 prio class 2')).toEqual(['I/O error']);
    expect(kinds('[ 2.0] Buffer I/O error on dev loop0, logical block 7, lost async page write')).toEqual(['I/O error']);
    expect(kinds('[ 2.0] EXT4-fs error (device vda1): ext4_find_entry:1686: inode #2: comm ls: reading directory lblock 0')).toEqual(['I/O error']);
  });

  it('reports the debug kernel\'s lockdep and KASAN reports, not its RCU-debug boot line', () => {
    expect(kinds('[ 5.0] WARNING: possible recursive locking detected')).toEqual(['WARNING']);
    expect(kinds('[ 5.0] BUG: KASAN: slab-use-after-free in dbd_snap_release+0x1c/0x40 [dattobd]')).toEqual(['BUG']);
    expect(kinds('[ 0.1] rcu: \tRCU callback double-/use-after-free debug is enabled.')).toEqual([]);
  });

  it('accepts the EIO a failed snapshot device returns, and the command line', () => {
    expect(kinds('[ 3.0] Buffer I/O error on dev datto0, logical block 0, async page read')).toEqual([]);
    expect(kinds('[ 0.0] Kernel command line: panic=-1 oops=panic')).toEqual([]);
    expect(kinds('[ 3.0] datto: device 0 failed: -27')).toEqual([]);
  });

  it('skips the problems a case declared for its faulty device, only until that case ends', () => {
    const allow = `[ 1.1] dbd-vm: ${allowMarker('I/O error', /\bdm-3\b/)}`;
    const lost = (dev: string): string => `Buffer I/O error on dev ${dev}, logical block 9, lost async page write`;
    const at = (log: string[]): string[] => scanKernelLog(log.join('\n')).map((p) => `${p.kind} ${p.lineNo}`);
    expect(at(['[ 1.0] dbd-vm: case t.vm.ts a begin', allow, `[ 1.2] ${lost('dm-3')}`, '[ 1.5] dbd-vm: case t.vm.ts a end', `[ 2.0] ${lost('dm-3')}`]))
      .toEqual(['I/O error 5']);
    expect(at([allow, `[ 1.2] ${lost('vda1')}`])).toEqual(['I/O error 2']);
    expect(at([allow, '[ 1.4] WARNING: CPU: 0 PID: 1 at x.c:1 f+0x1/0x2 dm-3'])).toEqual(['WARNING 2']);
  });
});
