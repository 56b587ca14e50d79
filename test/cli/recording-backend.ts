// SPDX-License-Identifier: GPL-2.0-only
/**
 * A Backend that records every control call and answers with configured
 * results, to check exactly what dbdctl sends (units, defaults) and how it
 * reports each errno — independent of any driver's state machine.
 */
import { DriverError } from '../../src/driver/errors.js';
import type { Backend, DeviceInfo, DriverControl } from '../../src/driver/types.js';

export interface Call {
  method: keyof DriverControl;
  args: unknown[];
}

export function recordingBackend(o: { fail?: Partial<Record<keyof DriverControl, string>>; proc?: string; free?: number } = {}): Backend & { calls: Call[] } {
  const calls: Call[] = [];
  const rec =
    (method: keyof DriverControl) =>
    (...args: unknown[]): unknown => {
      calls.push({ method, args });
      const code = o.fail?.[method];
      if (code) throw DriverError.of(code, method);
      if (method === 'getFreeMinor') return o.free ?? 0;
      if (method === 'procInfo') return o.proc ?? '{\n\t"version": "0.12.1",\n\t"devices": [\n\n\t]\n}\n';
      if (method === 'info') throw DriverError.of('ENOENT', 'info');
      return undefined;
    };
  const methods: (keyof DriverControl)[] = [
    'setupSnapshot', 'reloadSnapshot', 'reloadIncremental', 'destroy', 'transitionToIncremental',
    'transitionToSnapshot', 'reconfigure', 'info', 'getFreeMinor', 'expandCowFile', 'reconfigureAutoExpand', 'procInfo',
  ];
  const ctl = Object.fromEntries(methods.map((m) => [m, rec(m)])) as unknown as DriverControl;
  const io = {
    openRead: () => {
      throw DriverError.of('ENOENT', 'open');
    },
    openReadWrite: () => {
      throw DriverError.of('ENOENT', 'open');
    },
    realpath: (p: string) => p,
    exists: () => true,
  };
  return { name: 'emulator', ctl, io, calls };
}

export type { DeviceInfo };
